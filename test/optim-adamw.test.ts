// AdamW against a float64 PyTorch-semantics reference (w *= 1 - lr wd; m, v moments; bias
// corrections; w -= lr/bias1 * m / (sqrt(v)/sqrt(bias2) + eps)): several steps with weight decay,
// the defaults, tiny gradients where eps matters, 1-D / 3-D params; the first step's size is lr
// per element (bias correction); lr setter; stateDict round trip bit-identical.
//
// Tolerance per element: 5e-5 of the most the weight can have moved (t steps of lr: Adam's
// per-step move is ~lr) plus a few f32 roundings of w per step (the update is computed in f32
// from f32 state and f32 hyperparameters).
import { AdamW, AdamWOptions, copy, OptimizerState, Tensor, tensor } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { check, normalsF32, RefAdamW } from './helpers/optim-reference';
import { expectClose, expectSameBits, HostRng } from './helpers/reference';

const device = TEST_DEVICE;
const { abs } = Math;

interface PSpec {
  name: string;
  shape: number[];
}

const PARAMS: PSpec[] = [
  { name: 'wte', shape: [20, 16] },
  { name: 'ln.bias', shape: [37] },
  { name: 'cube', shape: [2, 3, 4] },
  { name: 'one', shape: [1] },
];

const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

class AdamHarness {
  readonly params = new Map<string, Tensor>();
  readonly grads = new Map<string, Tensor>();
  readonly w0 = new Map<string, Float32Array>();
  readonly opt: AdamW;
  readonly ref: RefAdamW;
  readonly rng: HostRng;

  constructor(readonly specs: PSpec[], options: AdamWOptions, readonly seed: number, init?: Map<string, Float32Array>, readonly gradStd = 1) {
    this.rng = new HostRng(seed);
    for (const s of specs) {
      const w = init?.get(s.name) ?? normalsF32(this.rng, numel(s.shape), 0.5);
      this.w0.set(s.name, w);
      this.params.set(s.name, tensor(w, s.shape, { device }));
      this.grads.set(s.name, tensor(new Float32Array(numel(s.shape)).fill(NaN), s.shape, { device }));
    }
    this.opt = new AdamW(specs.map((s) => ({ name: s.name, param: this.params.get(s.name)!, grad: this.grads.get(s.name)! })), options);
    this.ref = new RefAdamW(Object.fromEntries(this.w0), options);
  }

  setGrads(rng: HostRng = this.rng): Record<string, Float32Array> {
    const out: Record<string, Float32Array> = {};
    for (const s of this.specs) {
      const g = normalsF32(rng, numel(s.shape), this.gradStd);
      const tmp = tensor(g, s.shape, { device });
      copy(this.grads.get(s.name)!, tmp);
      tmp.dispose();
      out[s.name] = g;
    }
    return out;
  }

  /** Sum of the lr of every step taken (the scale of how far a weight can have moved). */
  lrSum = 0;

  async step(): Promise<void> {
    const g = this.setGrads();
    await this.opt.step();
    this.ref.step(g);
    this.lrSum += this.ref.lr;
  }

  async compare(what: string): Promise<void> {
    for (const s of this.specs) {
      const got = await this.params.get(s.name)!.read();
      const ref = this.ref.w.get(s.name)!;
      const w0 = this.w0.get(s.name)!;
      const t = this.ref.steps;
      const moved = this.lrSum;
      const scale = Float64Array.from(ref, (v, i) => 5e-5 * moved + 2 * t * 2 ** -24 * (abs(v) + abs(w0[i])));
      expectClose(got, ref, { what: `${what}: ${s.name} after ${t} step(s)`, seed: this.seed, rtol: 1, scale });
    }
  }

  async readParams(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const [name, p] of this.params) out.set(name, (await p.read()) as Float32Array);
    return out;
  }

  dispose(): void {
    this.opt.dispose();
    for (const t of [...this.params.values(), ...this.grads.values()]) t.dispose();
  }
}

describe('AdamW vs the reference', () => {
  test.each([
    [{ lr: 0.01, weightDecay: 0.1, betas: [0.9, 0.99] }, 6],
    [{ lr: 0.003 }, 5],
    [{ lr: 0.02, weightDecay: 0, betas: [0.5, 0.9], eps: 1e-6 }, 4],
    [{ lr: 0.05, weightDecay: 0.5, betas: [0, 0.999] }, 3],
  ] as Array<[AdamWOptions, number]>)('%p, %i steps (matrices, 1-D, 3-D and one-element params)', async (options, n) => {
    const h = new AdamHarness(PARAMS, options, freshSeed());
    for (let i = 0; i < n; i++) {
      await h.step();
      await h.compare(`AdamW ${JSON.stringify(options)}`);
    }
    expect(h.opt.steps).toBe(n);
    h.dispose();
  });

  test('tiny gradients (~1e-8): eps sits outside the bias-corrected square root', async () => {
    // sqrt(v)/sqrt(bias2) is ~1e-8 here, as large as eps, so eps's placement moves the update a
    // lot: eps inside the square root, or added before the bias correction, fails.
    const h = new AdamHarness(PARAMS, { lr: 0.01, eps: 1e-8, weightDecay: 0 }, freshSeed(), undefined, 1e-8);
    for (let i = 0; i < 4; i++) {
      await h.step();
      await h.compare('tiny gradients');
    }
    h.dispose();
  });

  test('the first step moves every weight by lr (bias correction; no weight decay)', async () => {
    const seed = freshSeed();
    const h = new AdamHarness(PARAMS, { lr: 0.01, weightDecay: 0 }, seed);
    const g = h.setGrads();
    await h.opt.step();
    for (const s of PARAMS) {
      const got = await h.params.get(s.name)!.read();
      const w0 = h.w0.get(s.name)!;
      // |dw| = lr |g| / (|g| + eps): lr itself but for a gradient within a few thousand eps of 0
      // (|g| ~ 1e-4 moves it by 1e-6, the tolerance, which a fixed +-lr check failed on some seeds).
      got.forEach((v, i) => {
        const gi = abs(g[s.name][i]);
        const expected = (0.01 * gi) / (gi + 1e-8);
        check(abs(abs(v - w0[i]) - expected) <= 1e-6, `${s.name}[${i}] moved by ${v - w0[i]}, expected +-${expected}`, seed);
      });
    }
    h.dispose();
  });

  // PyTorch forms 1 - beta2 from the Python float (double) and bias2 = 1 - beta2^t likewise, so
  // on the first step v / bias2 = g^2 and |dw| = lr |g| / (|g| + eps) for every beta2. Taking
  // 1 - beta2 after rounding beta2 to f32 is off by 1.3e-5 (0.999), 1.7e-4 (0.9999), 1.4e-3
  // (0.99999) relative, which moves the step by half that.
  test.each([0.999, 0.9999, 0.99999])('the first step is lr * g / (|g| + eps) with beta2 = %p', async (beta2) => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const g = normalsF32(rng, 64);
    const w = tensor(new Float32Array(64).fill(0.0625), [64], { device }); // small |w|: its ulp is << lr
    const gt = tensor(g, [64], { device });
    const opt = new AdamW([{ param: w, grad: gt }], { lr: 0.01, betas: [0.9, beta2], weightDecay: 0 });
    await opt.step();
    const got = await w.read();
    got.forEach((v, i) => {
      const expected = 0.0625 - (0.01 * g[i]) / (abs(g[i]) + 1e-8);
      check(abs(v - expected) <= 2e-5 * 0.01, `beta2 ${beta2}: w[${i}] = ${v}, expected ${expected} (step off by ${((v - expected) / 0.01).toExponential(2)} lr)`, seed);
    });
    opt.dispose();
    w.dispose();
    gt.dispose();
  });

  test('defaults: betas [0.9, 0.999], eps 1e-8, weightDecay 0.01, checkFinite off', () => {
    const h = new AdamHarness(PARAMS.slice(0, 1), { lr: 0.001 }, freshSeed());
    expect([h.opt.beta1, h.opt.beta2, h.opt.eps, h.opt.weightDecay, h.opt.checkFinite, h.opt.lr]).toEqual([0.9, 0.999, 1e-8, 0.01, false, 0.001]);
    h.dispose();
  });

  test('lr setter takes effect on the next step; invalid values are refused', async () => {
    const h = new AdamHarness(PARAMS, { lr: 0.01 }, freshSeed());
    await h.step();
    h.opt.lr = 0.002;
    h.ref.lr = 0.002;
    for (const bad of [0, -1, NaN, Infinity]) expect(() => { h.opt.lr = bad; }).toThrow(RangeError);
    expect(h.opt.lr).toBe(0.002);
    await h.step();
    await h.step();
    await h.compare('after lr change');
    h.dispose();
  });
});

describe('AdamW stateDict / loadStateDict', () => {
  test('names and contents', async () => {
    const h = new AdamHarness(PARAMS, { lr: 0.01 }, freshSeed());
    await h.step();
    const state = h.opt.stateDict();
    expect(state.kind).toBe('adamw');
    expect(state.step).toBe(1);
    expect(Object.keys(state.tensors).sort()).toEqual(PARAMS.flatMap((p) => [`m/${p.name}`, `v/${p.name}`]).sort());
    for (const p of PARAMS) expect((state.tensors[`m/${p.name}`] as Tensor).shape).toEqual(p.shape);
    h.dispose();
  });

  test('save after 3 steps (host arrays), resume in a new optimizer: 3 more steps are bit-identical', async () => {
    const seed = freshSeed();
    const options: AdamWOptions = { lr: 0.01, weightDecay: 0.1 };
    const a = new AdamHarness(PARAMS, options, seed);
    const gradSeeds = [11, 12, 13, 14, 15, 16].map((i) => seed * 17 + i);
    const stepWith = async (h: AdamHarness, i: number) => {
      h.setGrads(new HostRng(gradSeeds[i]));
      await h.opt.step();
    };
    for (let i = 0; i < 3; i++) await stepWith(a, i);
    const live = a.opt.stateDict();
    const saved: OptimizerState = { kind: live.kind, step: live.step, tensors: {} };
    for (const [name, t] of Object.entries(live.tensors)) saved.tensors[name] = (await (t as Tensor).read()) as Float32Array;
    const savedParams = await a.readParams();
    for (let i = 3; i < 6; i++) await stepWith(a, i);
    const expected = await a.readParams();

    const b = new AdamHarness(PARAMS, options, seed, savedParams);
    await b.opt.loadStateDict(saved);
    expect(b.opt.steps).toBe(3);
    for (let i = 3; i < 6; i++) await stepWith(b, i);
    const got = await b.readParams();
    for (const p of PARAMS) expectSameBits(got.get(p.name)!, expected.get(p.name)!, `resumed AdamW ${p.name}`, seed);
    // The step count matters (bias corrections): resuming with step 0 gives other values.
    const c = new AdamHarness(PARAMS, options, seed, savedParams);
    await c.opt.loadStateDict({ ...saved, step: 0 });
    for (let i = 3; i < 6; i++) await stepWith(c, i);
    const wrong = await c.readParams();
    check(wrong.get('wte')!.some((v, i) => v !== expected.get('wte')![i]), 'resuming with step 0 gave the same result: the step count is not used', seed);
    a.dispose();
    b.dispose();
    c.dispose();
  });
});
