// ArrayNewtonMuon / ArrayMuon (weights and gradients as host Float32Arrays) equal NewtonMuon /
// Muon run on the same data as device tensors, bit for bit, after every step: both layouts
// ([out, in] and [in, out]), the synchronous and the awaitable step, row blocks, a block-
// diagonal statistic, a shared input, observeInput and observeGram (full or diagonal blocks),
// weight decay, several refreshes, state save / restore. observeGram(X^T X) matches
// observeInput(X) to f32 rounding. Bad input is refused before anything changes.
import { ArrayMuon, ArrayNewtonMuon, copy, Muon, NewtonMuon, tensor, Tensor } from '../lib/index';
import type { ArrayMatrix, MatrixLayout, MatrixParam, NewtonMuonOptions } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { normalsF32 } from './helpers/optim-reference';
import { expectSameBits, HostRng } from './helpers/reference';

const device = TEST_DEVICE;

interface Spec {
  name: string;
  out: number;
  in: number;
  rowBlocks?: number;
  inputBlocks?: number;
  inputKey?: string;
}

const SPECS: Spec[] = [
  { name: 'square', out: 12, in: 12 },
  { name: 'wide', out: 6, in: 20, inputBlocks: 4 },
  { name: 'qkv', out: 18, in: 12, rowBlocks: 3, inputKey: 'square' }, // reads square's input
];

function transpose(src: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[c * rows + r] = src[r * cols + c];
  return out;
}

/** X^T X summed over the rows of x ([tokens, width]), in float64, rounded once to f32. */
function gram(x: Float32Array, tokens: number, width: number): Float32Array {
  const out = new Float32Array(width * width);
  for (let i = 0; i < width; i++) {
    for (let j = 0; j < width; j++) {
      let s = 0;
      for (let t = 0; t < tokens; t++) s += x[t * width + i] * x[t * width + j];
      out[i * width + j] = s;
    }
  }
  return out;
}

/** The array optimizer under test and NewtonMuon / Muon on device tensors, fed the same data. */
class Pair {
  readonly rng: HostRng;
  readonly arrays: ArrayMatrix[];
  readonly params: Tensor[];
  readonly grads: Tensor[];
  readonly mine: ArrayNewtonMuon | ArrayMuon;
  readonly ref: NewtonMuon | Muon;

  constructor(readonly kind: 'newton-muon' | 'muon', readonly layout: MatrixLayout, options: NewtonMuonOptions, seed: number) {
    this.rng = new HostRng(seed);
    this.arrays = [];
    this.params = [];
    this.grads = [];
    const refParams: MatrixParam[] = [];
    for (const s of SPECS) {
      const w = normalsF32(this.rng, s.out * s.in, 0.5);
      const stored = layout === 'out-in' ? w.slice() : transpose(w, s.out, s.in);
      this.arrays.push({
        weight: stored, shape: layout === 'out-in' ? [s.out, s.in] : [s.in, s.out], layout, name: s.name,
        rowBlocks: s.rowBlocks, inputBlocks: s.inputBlocks, inputKey: s.inputKey,
      });
      const param = tensor(w, [s.out, s.in], { device });
      const grad = tensor(new Float32Array(s.out * s.in), [s.out, s.in], { device });
      this.params.push(param);
      this.grads.push(grad);
      refParams.push({ param, grad, name: s.name, rowBlocks: s.rowBlocks, inputBlocks: s.inputBlocks, inputKey: s.inputKey });
    }
    const opts = { ...options, onWarning: () => {} };
    if (kind === 'muon') {
      this.mine = new ArrayMuon(this.arrays, { ...opts, device });
      this.ref = new Muon(refParams, opts);
    } else {
      this.mine = new ArrayNewtonMuon(this.arrays, { ...opts, device });
      this.ref = new NewtonMuon(refParams, opts);
    }
  }

  /** One step on both, with fresh gradients and (on refresh steps) fresh inputs; then compares. */
  async step(how: 'sync' | 'async', statistics: 'input' | 'gram' | 'blocks'): Promise<void> {
    expect(this.mine.collectsStatistics()).toBe(this.ref.collectsStatistics());
    const collects = this.ref.collectsStatistics();
    for (const s of SPECS.filter((x) => x.inputKey === undefined)) {
      const tokens = 7 + Math.floor(this.rng.next() * 9);
      const x = normalsF32(this.rng, tokens * s.in);
      const xt = tensor(x, [tokens, s.in], { device });
      if (statistics === 'input') {
        expect(this.mine.observeInput(s.name, x, tokens)).toBe(collects && this.kind === 'newton-muon');
        this.ref.observeInput(s.name, xt);
      } else {
        const full = gram(x, tokens, s.in);
        const blocks = s.inputBlocks ?? 1;
        const d = s.in / blocks;
        const diagonal = new Float32Array(blocks * d * d);
        for (let b = 0; b < blocks; b++) for (let r = 0; r < d; r++) for (let c = 0; c < d; c++) diagonal[(b * d + r) * d + c] = full[(b * d + r) * s.in + b * d + c];
        // 'gram' hands the full X^T X (the optimizer keeps the diagonal blocks); 'blocks' only those.
        expect(this.mine.observeGram(s.name, statistics === 'gram' ? full : diagonal, tokens)).toBe(collects && this.kind === 'newton-muon');
        const g = tensor(diagonal, blocks === 1 ? [d, d] : [blocks, d, d], { device });
        this.ref.observeGram(s.name, g, tokens);
        g.dispose();
      }
      xt.dispose();
    }
    const grads: Record<string, Float32Array> = {};
    SPECS.forEach((s, i) => {
      const g = normalsF32(this.rng, s.out * s.in);
      const t = tensor(g, [s.out, s.in], { device });
      copy(this.grads[i], t);
      t.dispose();
      grads[s.name] = this.layout === 'out-in' ? g : transpose(g, s.out, s.in);
    });
    if (how === 'sync') this.mine.stepSync(grads);
    else await this.mine.step(grads);
    await this.ref.step();
    for (let i = 0; i < SPECS.length; i++) {
      const s = SPECS[i];
      const want = (await this.params[i].read()) as Float32Array;
      const got = this.layout === 'out-in' ? this.arrays[i].weight : transpose(this.arrays[i].weight, s.in, s.out);
      expectSameBits(got, want, `${s.name} (${this.layout}, ${how}, ${statistics}) after step ${this.ref.steps}`);
    }
  }

  dispose(): void {
    this.mine.dispose();
    this.ref.dispose();
    for (const t of [...this.params, ...this.grads]) t.dispose();
  }
}

describe(`ArrayNewtonMuon / ArrayMuon equal NewtonMuon / Muon bit for bit (${device})`, () => {
  test.each([
    ['out-in', 'sync', 'input'],
    ['in-out', 'async', 'input'],
    ['in-out', 'sync', 'gram'],
    ['out-in', 'async', 'blocks'],
  ] as const)('Newton-Muon, layout %s, %s steps, statistics from %s: 7 steps, 3 refreshes, weight decay', async (layout, how, statistics) => {
    const pair = new Pair('newton-muon', layout, { lr: 0.02, refreshEvery: 2, weightDecay: 0.1 }, freshSeed());
    for (let i = 0; i < 7; i++) await pair.step(how, statistics);
    expect(pair.mine.steps).toBe(7);
    pair.dispose();
  });

  test.each(['out-in', 'in-out'] as const)('Muon, layout %s', async (layout) => {
    const pair = new Pair('muon', layout, { lr: 0.02, weightDecay: 0.05, nesterov: false }, freshSeed());
    for (let i = 0; i < 3; i++) await pair.step(i % 2 ? 'sync' : 'async', 'input');
    pair.dispose();
  });

  test('registered grad arrays are read when step() gets none; the weights are updated in place', async () => {
    const rng = new HostRng(freshSeed());
    const weight = normalsF32(rng, 20);
    const grad = normalsF32(rng, 20);
    const before = weight.slice();
    const opt = new ArrayMuon([{ weight, grad, shape: [4, 5], name: 'w' }], { lr: 0.1, device });
    opt.stepSync();
    const param = tensor(before, [4, 5], { device });
    const g = tensor(grad, [4, 5], { device });
    const ref = new Muon([{ param, grad: g }], { lr: 0.1 });
    await ref.step();
    expectSameBits(weight, (await param.read()) as Float32Array, 'in place');
    ref.dispose();
    opt.dispose();
    param.dispose();
    g.dispose();
  });

  test('stateDict() / loadStateDict() resume exactly (momentum, K, Kinv, step)', async () => {
    const seed = freshSeed();
    const a = new Pair('newton-muon', 'in-out', { lr: 0.02, refreshEvery: 2 }, seed);
    for (let i = 0; i < 3; i++) await a.step('sync', 'input');
    const state = await a.mine.stateDict();
    expect(state.step).toBe(3);
    expect(Object.keys(state.tensors)).toEqual(['momentum/square', 'momentum/wide', 'momentum/qkv', 'K/square', 'Kinv/square', 'K/wide', 'Kinv/wide']);
    const weights = a.arrays.map((m) => m.weight.slice());
    const b = new ArrayNewtonMuon(SPECS.map((s, i) => ({ ...a.arrays[i], weight: weights[i], inputKey: s.inputKey })), { lr: 0.02, refreshEvery: 2, device });
    b.loadStateDict(state);
    expect(b.steps).toBe(3);
    const rng = new HostRng(seed + 1);
    for (let step = 0; step < 3; step++) {
      const grads: Record<string, Float32Array> = {};
      for (const s of SPECS) grads[s.name] = normalsF32(rng, s.out * s.in);
      for (const s of SPECS.filter((x) => x.inputKey === undefined)) {
        const x = normalsF32(rng, 9 * s.in);
        a.mine.observeInput(s.name, x, 9);
        b.observeInput(s.name, x, 9);
      }
      a.mine.stepSync(grads);
      b.stepSync(grads);
    }
    a.arrays.forEach((m, i) => expectSameBits(weights[i], m.weight, `${m.name} resumed`));
    a.dispose();
    b.dispose();
  });

  test('observeGram(X^T X, tokens) and observeInput(X, tokens) give the same statistic to f32 rounding', async () => {
    const rng = new HostRng(freshSeed());
    const make = () => new ArrayNewtonMuon([{ weight: normalsF32(new HostRng(5), 48), shape: [6, 8], name: 'w' }], { lr: 0.01, refreshEvery: 1, device });
    const [byInput, byGram] = [make(), make()];
    const x = normalsF32(rng, 30 * 8);
    byInput.observeInput('w', x, 30);
    byGram.observeGram('w', gram(x, 30, 8), 30);
    const grads = { w: normalsF32(rng, 48) };
    byInput.stepSync(grads);
    byGram.stepSync(grads);
    const [k1, k2] = [(await byInput.stateDict()).tensors['K/w'], (await byGram.stateDict()).tensors['K/w']] as Float32Array[];
    let worst = 0;
    let scale = 0;
    for (let i = 0; i < k1.length; i++) {
      worst = Math.max(worst, Math.abs(k1[i] - k2[i]));
      scale = Math.max(scale, Math.abs(k1[i]));
    }
    expect(worst).toBeLessThanOrEqual(1e-5 * scale);
    byInput.dispose();
    byGram.dispose();
  });

  test('bad input is refused, naming the matrix, before anything changes', () => {
    const w = new Float32Array(12);
    expect(() => new ArrayNewtonMuon([{ weight: new Float32Array(11), shape: [3, 4], name: 'fc' }], { lr: 0.1, device }))
      .toThrow("ArrayNewtonMuon: matrices[0] ('fc'): weight must be a Float32Array of 12 values (shape [3, 4]), got a Float32Array of length 11");
    expect(() => new ArrayNewtonMuon([{ weight: w, shape: [3, 4], layout: 'rows' as MatrixLayout }], { lr: 0.1, device }))
      .toThrow("layout must be 'out-in' or 'in-out'");
    expect(() => new ArrayMuon([{ weight: w, shape: [3, 4, 1] as unknown as [number, number] }], { lr: 0.1, device }))
      .toThrow('shape must be two positive integers [out, in], got [3,4,1]');
    const opt = new ArrayNewtonMuon([{ weight: w, shape: [4, 3], layout: 'in-out', name: 'fc' }], { lr: 0.1, refreshEvery: 1, device });
    expect(() => opt.observeInput('fc', new Float32Array(9), 2)).toThrow('observeInput(fc): x must be a Float32Array of 8 values ([2, 4] row-major), got a Float32Array of length 9');
    expect(() => opt.observeInput('nope', new Float32Array(8), 2)).toThrow("observeInput: no matrix or input key named 'nope' (matrices: fc)");
    expect(() => opt.observeGram('fc', new Float32Array(15), 3)).toThrow('observeGram(fc): gram must be a Float32Array of 16 values ([4, 4])');
    expect(() => opt.stepSync()).toThrow("ArrayNewtonMuon.step: no gradient for 'fc'");
    expect(() => opt.stepSync({ fc: new Float32Array(11) })).toThrow("ArrayNewtonMuon.step: the gradient of 'fc' must be a Float32Array of 12 values ([4, 3] row-major)");
    expect(() => opt.stepSync({ fc: new Float32Array(12), other: new Float32Array(12) })).toThrow("grads has 'other', which is not a matrix of this optimizer");
    expect(w.every((v) => v === 0)).toBe(true);
    expect(opt.steps).toBe(0);
    opt.dispose();
  });
});
