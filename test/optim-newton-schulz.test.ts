// newtonSchulz5 against the float64 quintic Newton-Schulz reference (spec: X = G / (||G||_F +
// eps), transpose when rows > cols, 5 x { A = X X^T; B = bA + cA^2; X = aX + BX }), for square,
// wide, tall, odd and batched inputs; the defining property (output = U f^5(S/||G||) V^T: the
// singular values are the quintic's iterates of the input's, inside its band, the singular
// vectors are kept, so G O^T is symmetric positive definite); the steps / eps / out options;
// argument errors.
//
// Tolerance (relative Frobenius error per matrix): CPU computes in f32, whose error measured
// against float64 on these sizes is ~1e-6, so 2e-5. CUDA rounds X, A, B to bf16 at every GEMM:
// a float64 emulation of exactly that rounding is 1.6e-2..2.5e-2 away from the exact iteration
// on these shapes (2.5e-2 for a 1 x n vector), so 5e-2.
import { empty, newtonSchulz5, randn, Tensor, tensor, zeros } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import {
  asymmetry, check, expectRelFrob, frobenius, mat, matmul, normalsF32, ns5, ns5Batch, quintic,
  singularValues, symmetricEigenvalues, transpose, withSingularValues, spread,
} from './helpers/optim-reference';
import { HostRng } from './helpers/reference';

const device = TEST_DEVICE;
const CUDA = device === 'cuda';
const TOL = CUDA ? 5e-2 : 2e-5;
// Singular values and the symmetry of G O^T: absolute / relative to the largest entry.
const SV_TOL = CUDA ? 6e-2 : 1e-4;

/** Host data and its tensor on the test device. */
function upload(data: Float32Array, shape: number[]): Tensor {
  return tensor(data, shape, { device });
}

async function runAgainstReference(shape: number[], opts: { steps?: number; eps?: number; scales?: number[] } = {}): Promise<void> {
  const seed = freshSeed();
  const rng = new HostRng(seed);
  const [batch, rows, cols] = shape.length === 2 ? [1, shape[0], shape[1]] : shape;
  const host = normalsF32(rng, batch * rows * cols);
  if (opts.scales) {
    for (let b = 0; b < batch; b++) for (let i = 0; i < rows * cols; i++) host[b * rows * cols + i] *= opts.scales[b];
  }
  const x = upload(host, shape);
  const out = newtonSchulz5(x, { steps: opts.steps, eps: opts.eps });
  expect(out.shape).toEqual(shape);
  expect(out.dtype).toBe('f32');
  expect(out.device).toBe(device);
  const got = await out.read();
  const before = await x.read();
  expect(Array.from(before)).toEqual(Array.from(host)); // x is not modified
  const ref = ns5Batch(host, batch, rows, cols, { steps: opts.steps, eps: opts.eps });
  for (let b = 0; b < batch; b++) {
    const n = rows * cols;
    expectRelFrob(got.subarray(b * n, (b + 1) * n), ref.subarray(b * n, (b + 1) * n), TOL,
      `newtonSchulz5 ${shape.join('x')} steps=${opts.steps ?? 5} eps=${opts.eps ?? 1e-7} matrix ${b}`, seed);
  }
  x.dispose();
  out.dispose();
}

describe('newtonSchulz5 vs the float64 reference', () => {
  test.each([
    [[32, 32]], [[24, 40]], [[40, 24]], [[17, 33]], [[33, 17]], [[48, 8]], [[1, 16]], [[16, 1]], [[13, 13]],
  ])('2-D %p', (shape) => runAgainstReference(shape));

  test('batched [3, 24, 40]: every matrix normalised by its own norm (scales 1e-3, 1, 1e3)', () =>
    runAgainstReference([3, 24, 40], { scales: [1e-3, 1, 1e3] }));
  test('batched tall [4, 40, 24]', () => runAgainstReference([4, 40, 24], { scales: [2, 0.5, 1, 7] }));
  test('batched odd [2, 17, 9]', () => runAgainstReference([2, 17, 9]));
  test('batch of one [1, 20, 12]', () => runAgainstReference([1, 20, 12]));
});

describe('the defining property: O = U f^5(S / ||G||_F) V^T', () => {
  // With ||G||_F normalisation the top singular value is <= 1, and 5 quintic steps take every
  // value of a moderately conditioned input into the quintic's band; the reference gives
  // [0.68, 1.135] on these inputs (the band's ceiling is max f = 1.2024).
  const BAND: [number, number] = [0.65, 1.22];

  test.each([[24, 40], [40, 24], [17, 33], [12, 48]])('random %ix%i: singular values are the quintic iterates, inside the band; G O^T is SPD', async (rows, cols) => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const g = mat(rows, cols, normalsF32(rng, rows * cols));
    const x = upload(Float32Array.from(g.data), [rows, cols]);
    const out = newtonSchulz5(x);
    const o = mat(rows, cols, await out.read());
    // Singular values: the input's, normalised, mapped by f five times (f is not monotone, so
    // compare sorted lists).
    const norm = frobenius(g) + 1e-7;
    const expected = Array.from(singularValues(g)).map((s) => {
      let v = s / norm;
      for (let i = 0; i < 5; i++) v = quintic(v);
      return v;
    }).sort((a, b) => a - b);
    const got = Array.from(singularValues(o));
    for (let i = 0; i < got.length; i++) {
      check(Math.abs(got[i] - expected[i]) <= SV_TOL, `singular value ${i}: got ${got[i]}, expected ${expected[i]}`, seed);
      check(got[i] >= BAND[0] && got[i] <= BAND[1], `singular value ${i} = ${got[i]} outside [${BAND}]`, seed);
    }
    // Polar property: G = U S V^T and O = U g(S) V^T give G O^T = U S g(S) U^T (wide) or
    // G^T O = V S g(S) V^T (tall): symmetric, eigenvalues s_i g(s_i) > 0.
    const p = rows <= cols ? matmul(g, transpose(o)) : matmul(transpose(g), o);
    check(asymmetry(p) <= SV_TOL, `G O^T is not symmetric: asymmetry ${asymmetry(p)}`, seed);
    const eig = symmetricEigenvalues(p);
    const sv = singularValues(g);
    check(eig[0] >= 0.6 * sv[0], `G O^T has eigenvalue ${eig[0]} < 0.6 * smallest singular value ${sv[0]}`, seed);
    check(eig[eig.length - 1] <= 1.25 * sv[sv.length - 1], `G O^T has eigenvalue ${eig[eig.length - 1]} > 1.25 * largest singular value`, seed);
    x.dispose();
    out.dispose();
  });

  test('prescribed singular values (24x40, condition 4): output singular values match f^5 of the input\'s', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const s = spread(rng, 24, 0.25, 1).map((v) => v * 3);
    const g = withSingularValues(rng, 24, 40, s);
    const host = Float32Array.from(g.data);
    const x = upload(host, [24, 40]);
    const out = newtonSchulz5(x);
    const o = mat(24, 40, await out.read());
    const norm = frobenius(mat(24, 40, host)) + 1e-7;
    const expected = s.map((v) => {
      let t = v / norm;
      for (let i = 0; i < 5; i++) t = quintic(t);
      return t;
    }).sort((a, b) => a - b);
    const got = singularValues(o);
    for (let i = 0; i < 24; i++) check(Math.abs(got[i] - expected[i]) <= SV_TOL, `singular value ${i}: got ${got[i]}, expected ${expected[i]}`, seed);
    // And the full matrix: U f^5 V^T, i.e. the reference.
    expectRelFrob(o.data, ns5(mat(24, 40, host)).data, TOL, 'prescribed-spectrum NS5', seed);
    x.dispose();
    out.dispose();
  });
});

describe('options', () => {
  test.each([0, 1, 3, 8])('steps: %i', (steps) => runAgainstReference([24, 40], { steps }));
  test('steps 0 on a tall batch is just the normalisation', () => runAgainstReference([2, 30, 10], { steps: 0, scales: [3, 0.01] }));
  test('eps is added to the norm (eps = 2.5, comparable to ||G||_F)', () => runAgainstReference([6, 10], { eps: 2.5 }));
  test('eps 0', () => runAgainstReference([20, 12], { eps: 0 }));

  test('out: written in place and returned; x unchanged', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const host = normalsF32(rng, 2 * 16 * 24);
    const x = upload(host, [2, 16, 24]);
    const out = zeros([2, 16, 24], { device });
    const r = newtonSchulz5(x, { out });
    expect(r).toBe(out);
    expectRelFrob(await out.read(), ns5Batch(host, 2, 16, 24), TOL, 'newtonSchulz5 out', seed);
    expect(Array.from(await x.read())).toEqual(Array.from(host));
    x.dispose();
    out.dispose();
  });

  test('out may be a view into a larger tensor (other rows untouched)', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const host = normalsF32(rng, 12 * 20);
    const x = upload(host, [12, 20]);
    const big = tensor(new Float32Array(3 * 12 * 20).fill(7), [3, 12, 20], { device });
    const view = big.slice(1, 2).view([12, 20]);
    newtonSchulz5(x, { out: view });
    const all = await big.read();
    expect(all.subarray(0, 240).every((v) => v === 7)).toBe(true);
    expect(all.subarray(480).every((v) => v === 7)).toBe(true);
    expectRelFrob(all.subarray(240, 480), ns5(mat(12, 20, host)).data, TOL, 'newtonSchulz5 into a view', seed);
    for (const t of [x, view, big]) t.dispose();
  });
});

describe('errors', () => {
  const x = () => randn([8, 12], { seed: freshSeed(), device });

  test('non-f32 input', () => {
    const b = randn([8, 12], { seed: freshSeed(), dtype: 'bf16', device });
    expect(() => newtonSchulz5(b)).toThrow(/f32/);
    const i = zeros([8, 12], { dtype: 'i32', device });
    expect(() => newtonSchulz5(i)).toThrow(/f32/);
    b.dispose();
    i.dispose();
  });

  test('1-D and 4-D inputs', () => {
    const v = randn([12], { seed: freshSeed(), device });
    expect(() => newtonSchulz5(v)).toThrow(/2-D|3-D/);
    const t4 = randn([2, 2, 3, 4], { seed: freshSeed(), device });
    expect(() => newtonSchulz5(t4)).toThrow(/2-D|3-D/);
    v.dispose();
    t4.dispose();
  });

  test('out aliasing x (itself, or a view of it)', () => {
    const a = x();
    expect(() => newtonSchulz5(a, { out: a })).toThrow(/share memory|alias/);
    const v = a.view([8, 12]);
    expect(() => newtonSchulz5(a, { out: v })).toThrow(/share memory|alias/);
    a.dispose();
    v.dispose();
  });

  test('out of the wrong shape or dtype', () => {
    const a = x();
    const wrong = empty([12, 8], { device });
    expect(() => newtonSchulz5(a, { out: wrong })).toThrow(/shape/);
    const bf = empty([8, 12], { dtype: 'bf16', device });
    expect(() => newtonSchulz5(a, { out: bf })).toThrow(/f32/);
    for (const t of [a, wrong, bf]) t.dispose();
  });

  test('bad steps / eps; disposed input', () => {
    const a = x();
    expect(() => newtonSchulz5(a, { steps: -1 })).toThrow(RangeError);
    expect(() => newtonSchulz5(a, { steps: 1.5 })).toThrow(RangeError);
    expect(() => newtonSchulz5(a, { eps: NaN })).toThrow(/eps/);
    expect(() => newtonSchulz5(a, { eps: Infinity })).toThrow(/eps/);
    a.dispose();
    expect(() => newtonSchulz5(a)).toThrow(/disposed/);
  });
});
