// Optimizer argument and state errors: every one is refused with a message naming what was wrong,
// before any work is enqueued. Covers params (shapes, dims, dtypes, names, devices), observed
// inputs, hyperparameters (non-positive / NaN / Infinity / out of range), checkFinite (a NaN or
// Infinity gradient rejects step() naming the parameter and leaves every param and all optimizer
// state untouched), loadStateDict (missing / extra / misshaped tensors, wrong kind, bad step),
// and use after dispose().
import { AdamW, copy, devices, Muon, NewtonMuon, OptimizerState, Tensor, tensor, zeros } from '../lib/index';
import type { MatrixParam } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { expectRelFrob, normalsF32, RefAdamW, RefMatrixOptimizer } from './helpers/optim-reference';
import { expectSameBits, HostRng } from './helpers/reference';

const device = TEST_DEVICE;
const CUDA = device === 'cuda';
// CUDA runs Newton-Schulz in bf16, whose rounding the quintic amplifies in the small singular
// directions (up to ~3.4x per iteration): over many fresh seeds in the emulated suite the update's
// relative Frobenius distance from the float64 reference was mostly 1e-2..3e-2 with a tail past
// 5e-2 (worst seen 5.7e-2), so 1e-1 bounds it; a wrong update is off by O(1).
const TOL = CUDA ? 1e-1 : 2e-5;
const cudaAvailable = devices().some((d) => d.name === 'cuda' && d.available);
const owned: Tensor[] = [];

/** A random f32 tensor on the test device, freed after each test. */
function rand(shape: number[], seed = freshSeed()): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const t = tensor(normalsF32(new HostRng(seed), n), shape, { device });
  owned.push(t);
  return t;
}

afterEach(() => {
  for (const t of owned.splice(0)) t.dispose();
});

const pair = (shape: number[], extra: Partial<MatrixParam> = {}): MatrixParam => ({ param: rand(shape), grad: rand(shape), ...extra });

describe('params', () => {
  test.each(['Muon', 'NewtonMuon', 'AdamW'] as const)('%s: grad shape differs from param shape (named in the message)', (which) => {
    const spec = { name: 'attn.c_attn', param: rand([8, 12]), grad: rand([12, 8]) };
    const make = () => (which === 'AdamW' ? new AdamW([spec], { lr: 0.01 }) : which === 'Muon' ? new Muon([spec], { lr: 0.01 }) : new NewtonMuon([spec], { lr: 0.01 }));
    expect(make).toThrow(/attn\.c_attn.*grad has shape \[12, 8\] but param has \[8, 12\]/);
  });

  test.each(['Muon', 'NewtonMuon'] as const)('%s: non-2-D params are refused (1-D and 3-D), pointing at AdamW', (which) => {
    const Ctor = which === 'Muon' ? Muon : NewtonMuon;
    expect(() => new Ctor([pair([8, 8]), pair([16], { name: 'ln.weight' })], { lr: 0.01 })).toThrow(/ln\.weight.*2-D.*AdamW/);
    expect(() => new Ctor([pair([2, 4, 4])], { lr: 0.01 })).toThrow(/2-D/);
  });

  test('non-f32 params or grads; non-Tensor entries; empty or non-array params', () => {
    const bf = tensor(new Float32Array(64).fill(1), [8, 8], { dtype: 'bf16', device });
    owned.push(bf);
    expect(() => new Muon([{ param: bf, grad: rand([8, 8]) }], { lr: 0.01 })).toThrow(/f32/);
    expect(() => new AdamW([{ param: rand([8, 8]), grad: bf }], { lr: 0.01 })).toThrow(/f32/);
    expect(() => new Muon([{ param: new Float32Array(4) as unknown as Tensor, grad: rand([2, 2]) }], { lr: 0.01 })).toThrow(/Tensor/);
    expect(() => new Muon([], { lr: 0.01 })).toThrow(/non-empty/);
    expect(() => new AdamW([], { lr: 0.01 })).toThrow(/non-empty/);
    expect(() => new NewtonMuon(null as unknown as MatrixParam[], { lr: 0.01 })).toThrow(/non-empty/);
  });

  test('duplicate names, a param listed twice, a disposed param', () => {
    expect(() => new Muon([pair([8, 8], { name: 'w' }), pair([8, 8], { name: 'w' })], { lr: 0.01 })).toThrow(/"w" is not a unique/);
    expect(() => new AdamW([{ name: 'b', param: rand([4]), grad: rand([4]) }, { name: 'b', param: rand([4]), grad: rand([4]) }], { lr: 0.01 })).toThrow(/unique/);
    const p = pair([8, 8]);
    expect(() => new Muon([p, { param: p.param, grad: rand([8, 8]) }], { lr: 0.01 })).toThrow(/listed twice/);
    const dead = rand([8, 8]);
    dead.dispose();
    expect(() => new Muon([{ param: dead, grad: rand([8, 8]) }], { lr: 0.01 })).toThrow(/disposed/);
  });

  test('rowBlocks / inputBlocks that do not divide; inputKey shared by different input widths', () => {
    expect(() => new Muon([pair([10, 8], { rowBlocks: 3 })], { lr: 0.01 })).toThrow(/10 rows do not split into 3 row blocks/);
    expect(() => new Muon([pair([9, 8], { rowBlocks: 0 })], { lr: 0.01 })).toThrow(/rowBlocks/);
    expect(() => new NewtonMuon([pair([8, 10], { inputBlocks: 4 })], { lr: 0.01 })).toThrow(/10 input features do not split into 4 blocks/);
    expect(() => new NewtonMuon([pair([8, 12], { inputKey: 'x' }), pair([8, 16], { inputKey: 'x' })], { lr: 0.01 })).toThrow(/shares input 'x'/);
    expect(() => new NewtonMuon([pair([8, 16], { inputKey: 'x' }), pair([8, 16], { inputKey: 'x', inputBlocks: 2 })], { lr: 0.01 })).toThrow(/shares input 'x'/);
  });

  (cudaAvailable ? test : test.skip)(`mixed devices are refused${cudaAvailable ? '' : ' (skipped: no CUDA device here)'}`, async () => {
    const other = device === 'cuda' ? 'cpu' : 'cuda';
    const p = rand([8, 8]);
    const g = zeros([8, 8], { device: other });
    const q = zeros([8, 8], { device: other });
    const qg = zeros([8, 8], { device: other });
    try {
      expect(() => new Muon([{ name: 'w', param: p, grad: g }], { lr: 0.01 })).toThrow(/w.*grad is on/);
      expect(() => new AdamW([{ param: p, grad: g }], { lr: 0.01 })).toThrow(/expected every tensor on/);
      expect(() => new NewtonMuon([pair([8, 8], { name: 'first' }), { name: 'second', param: q, grad: qg }], { lr: 0.01 })).toThrow(/second.*share a device/);
      const opt = new NewtonMuon([pair([8, 8], { name: 'w' })], { lr: 0.01, refreshEvery: 1 });
      const x = zeros([4, 8], { device: other });
      expect(() => opt.observeInput('w', x)).toThrow(/is on/);
      opt.dispose();
      x.dispose();
    } finally {
      for (const t of [g, q, qg]) t.dispose();
    }
  });
});

describe('observeInput', () => {
  test('wrong-shaped inputs, unknown targets', () => {
    const a = pair([8, 12], { name: 'a' });
    const b = pair([8, 16], { name: 'b', inputBlocks: 4 });
    const opt = new NewtonMuon([a, b], { lr: 0.01, refreshEvery: 1 });
    expect(opt.collectsStatistics()).toBe(true);
    expect(() => opt.observeInput(a.param, rand([5, 8]))).toThrow(/x must be \[tokens, 12\], got Tensor\(\[5, 8\]/);
    expect(() => opt.observeInput('b', rand([5, 4]))).toThrow(/x must be \[tokens, 16\]/); // the whole width, not one block
    expect(() => opt.observeInput(a.param, rand([12]))).toThrow(/tokens, 12/);
    expect(() => opt.observeInput(a.param, rand([2, 5, 12]))).toThrow(/tokens, 12/);
    expect(() => opt.observeInput('nope', rand([5, 12]))).toThrow(/no input key 'nope'/);
    expect(() => opt.observeInput(rand([8, 12]), rand([5, 12]))).toThrow(/not a param of this optimizer/);
    expect(() => opt.observeInput(a.param, 'x' as unknown as Tensor)).toThrow(/Tensor/);
    const i32 = zeros([5, 12], { dtype: 'i32', device });
    owned.push(i32);
    expect(() => opt.observeInput(a.param, i32)).toThrow(/f32 or bf16/);
    // None of these reached the statistic: a valid observation is still the first one.
    expect(opt.observeInput(a.param, rand([5, 12]))).toBe(true);
    opt.dispose();
  });
});

describe('hyperparameters', () => {
  const m = () => [pair([8, 8])];
  test.each([
    ['lr 0', { lr: 0 }, /lr/],
    ['lr < 0', { lr: -0.1 }, /lr/],
    ['lr NaN', { lr: NaN }, /lr/],
    ['lr Infinity', { lr: Infinity }, /lr/],
    ['lr missing', {}, /lr/],
    ['momentum 1', { lr: 0.01, momentum: 1 }, /momentum/],
    ['momentum -0.1', { lr: 0.01, momentum: -0.1 }, /momentum/],
    ['momentum NaN', { lr: 0.01, momentum: NaN }, /momentum/],
    ['nsSteps 0', { lr: 0.01, nsSteps: 0 }, /nsSteps/],
    ['nsSteps 2.5', { lr: 0.01, nsSteps: 2.5 }, /nsSteps/],
    ['weightDecay -0.1', { lr: 0.01, weightDecay: -0.1 }, /weightDecay/],
    ['weightDecay Infinity', { lr: 0.01, weightDecay: Infinity }, /weightDecay/],
    ['nesterov "yes"', { lr: 0.01, nesterov: 'yes' }, /nesterov/],
    ['checkFinite 1', { lr: 0.01, checkFinite: 1 }, /checkFinite/],
    ['refreshEvery 0', { lr: 0.01, refreshEvery: 0 }, /refreshEvery/],
    ['refreshEvery 1.5', { lr: 0.01, refreshEvery: 1.5 }, /refreshEvery/],
    ['refreshEvery NaN', { lr: 0.01, refreshEvery: NaN }, /refreshEvery/],
    ['refreshEvery Infinity', { lr: 0.01, refreshEvery: Infinity }, /refreshEvery/],
    ['statsDecay 1', { lr: 0.01, statsDecay: 1 }, /statsDecay/],
    ['statsDecay NaN', { lr: 0.01, statsDecay: NaN }, /statsDecay/],
    ['ridge -1', { lr: 0.01, ridge: -1 }, /ridge/],
    ['ridge NaN', { lr: 0.01, ridge: NaN }, /ridge/],
    ['ridgeEps Infinity', { lr: 0.01, ridgeEps: Infinity }, /ridgeEps/],
    ['initDiag 0', { lr: 0.01, initDiag: 0 }, /initDiag/],
    ['initDiag NaN', { lr: 0.01, initDiag: NaN }, /initDiag/],
    ['onWarning not a function', { lr: 0.01, onWarning: 'log' }, /onWarning/],
  ] as Array<[string, Record<string, unknown>, RegExp]>)('NewtonMuon: %s', (_, options, message) => {
    expect(() => new NewtonMuon(m(), options as never)).toThrow(message);
  });

  test.each([
    ['lr 0', { lr: 0 }, /lr/],
    ['lr NaN', { lr: NaN }, /lr/],
    ['momentum 1', { lr: 0.01, momentum: 1 }, /momentum/],
    ['momentum Infinity', { lr: 0.01, momentum: Infinity }, /momentum/],
  ] as Array<[string, Record<string, unknown>, RegExp]>)('Muon: %s', (_, options, message) => {
    expect(() => new Muon(m(), options as never)).toThrow(message);
  });

  test.each([
    ['lr -1', { lr: -1 }, /lr/],
    ['lr Infinity', { lr: Infinity }, /lr/],
    ['beta1 1', { lr: 0.01, betas: [1, 0.999] }, /betas\[0\]/],
    ['beta2 1', { lr: 0.01, betas: [0.9, 1] }, /betas\[1\]/],
    ['beta1 -0.1', { lr: 0.01, betas: [-0.1, 0.999] }, /betas\[0\]/],
    ['beta2 NaN', { lr: 0.01, betas: [0.9, NaN] }, /betas\[1\]/],
    ['betas of length 1', { lr: 0.01, betas: [0.9] }, /betas/],
    ['betas not an array', { lr: 0.01, betas: 0.9 }, /betas/],
    ['eps 0', { lr: 0.01, eps: 0 }, /eps/],
    ['eps NaN', { lr: 0.01, eps: NaN }, /eps/],
    ['weightDecay NaN', { lr: 0.01, weightDecay: NaN }, /weightDecay/],
  ] as Array<[string, Record<string, unknown>, RegExp]>)('AdamW: %s', (_, options, message) => {
    expect(() => new AdamW([pair([4])], options as never)).toThrow(message);
  });

  test('options missing or not an object', () => {
    expect(() => new Muon(m(), undefined as never)).toThrow(/options/);
    expect(() => new AdamW([pair([4])], null as never)).toThrow(/options/);
  });
});

describe('checkFinite', () => {
  const SPECS = [
    { name: 'attn.c_attn', shape: [24, 8], rowBlocks: 3 },
    { name: 'attn.c_proj', shape: [8, 8] },
    { name: 'mlp.c_proj', shape: [8, 16], inputBlocks: 2 },
  ];

  async function snapshot(ts: Tensor[]): Promise<Float32Array[]> {
    return Promise.all(ts.map((t) => t.read() as Promise<Float32Array>));
  }

  test.each([
    ['NewtonMuon', NaN], ['NewtonMuon', Infinity], ['Muon', NaN], ['Muon', -Infinity], ['AdamW', NaN],
  ] as Array<['NewtonMuon' | 'Muon' | 'AdamW', number]>)('%s: a %p in one gradient rejects step() naming it; nothing changes; the next good step is exact',
    async (which, bad) => {
      const seed = freshSeed();
      const rng = new HostRng(seed);
      const w0 = SPECS.map((s) => normalsF32(rng, s.shape[0] * s.shape[1], 0.5));
      const params = SPECS.map((s, i) => tensor(w0[i], s.shape, { device }));
      const grads = SPECS.map((s) => tensor(new Float32Array(s.shape[0] * s.shape[1]), s.shape, { device }));
      owned.push(...params, ...grads);
      const specs = SPECS.map((s, i) => ({ name: s.name, param: params[i], grad: grads[i], rowBlocks: s.rowBlocks, inputBlocks: s.inputBlocks }));
      const refSpecs = SPECS.map((s, i) => ({ name: s.name, rows: s.shape[0], cols: s.shape[1], w: w0[i], rowBlocks: s.rowBlocks, inputBlocks: s.inputBlocks }));
      const options = { lr: 0.02, checkFinite: true, refreshEvery: 2 };
      const opt = which === 'AdamW' ? new AdamW(specs, options) : which === 'Muon' ? new Muon(specs, options) : new NewtonMuon(specs, options);
      const ref = which === 'AdamW' ? new RefAdamW(Object.fromEntries(SPECS.map((s, i) => [s.name, w0[i]])), options) : new RefMatrixOptimizer(which === 'NewtonMuon', refSpecs, options);
      const setGrads = (poison: boolean): Record<string, Float32Array> => {
        const out: Record<string, Float32Array> = {};
        SPECS.forEach((s, i) => {
          const g = normalsF32(rng, s.shape[0] * s.shape[1]);
          if (poison && i === 1) g[13] = bad;
          const tmp = tensor(g, s.shape, { device });
          copy(grads[i], tmp);
          tmp.dispose();
          out[s.name] = g;
        });
        return out;
      };
      const observe = () => {
        if (!(opt instanceof NewtonMuon) || !opt.collectsStatistics()) return;
        SPECS.forEach((s, i) => {
          const x = normalsF32(rng, 7 * s.shape[1]);
          const xt = tensor(x, [7, s.shape[1]], { device });
          opt.observeInput(params[i], xt);
          (ref as RefMatrixOptimizer).observeInput(s.name, x, 7);
          xt.dispose();
        });
      };
      // Step 0 is fine; step 1 (a refresh step for Newton-Muon) gets a bad gradient first.
      ref.step(setGrads(false));
      observe();
      await opt.step();
      observe();
      setGrads(true);
      const before = await snapshot([...params, ...Object.values(opt.stateDict().tensors) as Tensor[]]);
      await expect(opt.step()).rejects.toThrow(/'attn\.c_proj' is not finite.*no parameter was updated/);
      expect(opt.steps).toBe(1);
      const after = await snapshot([...params, ...Object.values(opt.stateDict().tensors) as Tensor[]]);
      after.forEach((a, i) => expectSameBits(a, before[i], `${which}: tensor ${i} after the rejected step`, seed));
      // The same step again with good gradients: the statistics observed for it are still there.
      ref.step(setGrads(false));
      await opt.step();
      expect(opt.steps).toBe(2);
      for (let i = 0; i < SPECS.length; i++) {
        const got = await params[i].read();
        const expected = which === 'AdamW' ? (ref as RefAdamW).w.get(SPECS[i].name)! : (ref as RefMatrixOptimizer).weights(SPECS[i].name);
        expectRelFrob(got.map((v, j) => v - w0[i][j]), expected.map((v, j) => v - w0[i][j]), which === 'AdamW' ? 1e-5 : TOL, `${which} after recovery: ${SPECS[i].name}`, seed);
      }
      opt.dispose();
    });

  // checkFinite promises to reject only gradients that are not finite. A finite gradient whose
  // sum of squares overflows f32 (entries ~1e20) must still be accepted.
  test('a large but finite gradient (1e20) is accepted', async () => {
    const p = rand([8, 8]);
    const g = tensor(new Float32Array(64).fill(1e20), [8, 8], { device });
    owned.push(g);
    const opt = new Muon([{ name: 'w', param: p, grad: g }], { lr: 0.01, checkFinite: true });
    await expect(opt.step()).resolves.toBeUndefined();
    expect(opt.steps).toBe(1);
    opt.dispose();
  });
});

describe('loadStateDict', () => {
  function setup(): { opt: NewtonMuon; state: OptimizerState } {
    const opt = new NewtonMuon([pair([8, 12], { name: 'a' }), pair([8, 16], { name: 'b', inputBlocks: 2 })], { lr: 0.01 });
    return { opt, state: opt.stateDict() };
  }

  async function host(state: OptimizerState): Promise<OptimizerState> {
    const tensors: OptimizerState['tensors'] = {};
    for (const [n, t] of Object.entries(state.tensors)) tensors[n] = (await (t as Tensor).read()) as Float32Array;
    return { ...state, tensors };
  }

  test('missing, extra, misshaped tensors; wrong kind; bad step; not a state', async () => {
    const { opt, state } = setup();
    const good = await host(state);
    const without = { ...good, tensors: { ...good.tensors } };
    delete without.tensors['Kinv/b'];
    await expect(opt.loadStateDict(without)).rejects.toThrow(/missing tensor 'Kinv\/b'/);
    await expect(opt.loadStateDict({ ...good, tensors: { ...good.tensors, 'momentum/c': new Float32Array(4) } })).rejects.toThrow(/unexpected tensor 'momentum\/c'/);
    await expect(opt.loadStateDict({ ...good, tensors: { ...good.tensors, 'K/b': new Float32Array(64) } })).rejects.toThrow(/K\/b has 64 values/);
    await expect(opt.loadStateDict({ ...good, tensors: { ...good.tensors, 'K/b': new Int32Array(128) } })).rejects.toThrow(/K\/b.*Int32Array/);
    const wrongShape = zeros([12, 8], { device });
    owned.push(wrongShape);
    await expect(opt.loadStateDict({ ...good, tensors: { ...good.tensors, 'momentum/a': wrongShape } })).rejects.toThrow(/momentum\/a is Tensor\(\[12, 8\]/);
    await expect(opt.loadStateDict({ ...good, kind: 'muon' })).rejects.toThrow(/state is for 'muon', this optimizer is 'newton-muon'/);
    await expect(opt.loadStateDict({ ...good, step: -1 })).rejects.toThrow(/step/);
    await expect(opt.loadStateDict({ ...good, step: 1.5 })).rejects.toThrow(/step/);
    await expect(opt.loadStateDict(null as never)).rejects.toThrow(/kind, step, tensors/);
    await expect(opt.loadStateDict({ kind: 'newton-muon', step: 0 } as never)).rejects.toThrow(/kind, step, tensors/);
    // A Muon state into a Muon optimizer of other params: names differ.
    const mu = new Muon([pair([8, 12], { name: 'z' })], { lr: 0.01 });
    await expect(mu.loadStateDict({ kind: 'muon', step: 0, tensors: { 'momentum/a': new Float32Array(96) } })).rejects.toThrow(/missing tensor 'momentum\/z'/);
    await expect(mu.loadStateDict({ kind: 'adamw', step: 0, tensors: {} })).rejects.toThrow(/'adamw'/);
    // After all those refusals the optimizer still loads a good state and steps.
    await opt.loadStateDict({ ...good, step: 5 });
    expect(opt.steps).toBe(5);
    await opt.step();
    expect(opt.steps).toBe(6);
    opt.dispose();
    mu.dispose();
  });

  test('AdamW: wrong kind and misshaped moments', async () => {
    const opt = new AdamW([{ name: 'b', param: rand([5]), grad: rand([5]) }], { lr: 0.01 });
    await expect(opt.loadStateDict({ kind: 'muon', step: 0, tensors: {} })).rejects.toThrow(/'muon'/);
    await expect(opt.loadStateDict({ kind: 'adamw', step: 0, tensors: { 'm/b': new Float32Array(5), 'v/b': new Float32Array(4) } })).rejects.toThrow(/v\/b has 4 values/);
    await expect(opt.loadStateDict({ kind: 'adamw', step: 0, tensors: { 'm/b': new Float32Array(5) } })).rejects.toThrow(/missing tensor 'v\/b'/);
    opt.dispose();
  });
});

describe('use after dispose', () => {
  test.each(['Muon', 'NewtonMuon'] as const)('%s: every method refuses; dispose() is idempotent', async (which) => {
    const a = pair([8, 8], { name: 'w' });
    const opt = which === 'Muon' ? new Muon([a], { lr: 0.01 }) : new NewtonMuon([a], { lr: 0.01, refreshEvery: 1 });
    const state = opt.stateDict();
    const saved = { ...state, tensors: { ...state.tensors } };
    opt.dispose();
    opt.dispose();
    await expect(opt.step()).rejects.toThrow(/disposed/);
    expect(() => opt.observeInput('w', rand([4, 8]))).toThrow(/disposed/);
    expect(() => opt.stateDict()).toThrow(/disposed/);
    await expect(opt.loadStateDict(saved)).rejects.toThrow(/disposed/);
  });

  test('AdamW: every method refuses; dispose() is idempotent', async () => {
    const opt = new AdamW([{ param: rand([4]), grad: rand([4]) }], { lr: 0.01 });
    opt.dispose();
    opt[Symbol.dispose]();
    await expect(opt.step()).rejects.toThrow(/disposed/);
    expect(() => opt.stateDict()).toThrow(/disposed/);
    await expect(opt.loadStateDict({ kind: 'adamw', step: 0, tensors: {} })).rejects.toThrow(/disposed/);
  });

  test('a param or grad disposed under a live optimizer: step() refuses naming it', async () => {
    const p = rand([8, 8]);
    const g = rand([8, 8]);
    const opt = new NewtonMuon([{ name: 'wq', param: p, grad: g }], { lr: 0.01 });
    g.dispose();
    await expect(opt.step()).rejects.toThrow(/wq\.grad.*disposed/);
    expect(() => new AdamW([{ name: 'emb', param: rand([8, 8]), grad: g }], { lr: 0.01 })).toThrow(/emb.*disposed/);
    const q = rand([4]);
    const adam = new AdamW([{ name: 'emb', param: q, grad: rand([4]) }], { lr: 0.01 });
    q.dispose();
    await expect(adam.step()).rejects.toThrow(/emb\.param.*disposed/);
    opt.dispose();
    adam.dispose();
  });
});
