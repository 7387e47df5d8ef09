// The statistic / preconditioner kernels against float64:
//   accumulateInputGram: K += scale * X_j^T X_j per column block j (f32 and bf16 X, default
//     scale 1/tokens, explicit scale, blocks 4, accumulation onto an existing K);
//   choleskyInverse: (K + ridge I)^-1 with ridge = ridge * trace(K)/d + ridgeEps per matrix,
//     batched; a factorisation failure gets info > 0 and I, a non-finite matrix info -1 and I,
//     without disturbing the rest of the batch;
//   rightPrecondition: G @ Kinv, plain and block-diagonal.
//
// Tolerances: GEMM-like results per entry rtol * sum |terms| with rtol = max(1e-5, (k+2) 2^-24)
// on the CPU, 1e-4 on CUDA (1e-2 with bf16 operands), as in gemm.test.ts. Inverses: the f32
// error of a Cholesky inverse grows with d * cond, so 8 d cond 2^-24 (at least 1e-5).
import { accumulateInputGram, choleskyInverse, empty, rightPrecondition, tensor, zeros } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import {
  batchItem, check, choleskyInverseRef, colSlice, expectRelFrob, identity, mat, Mat, matmul, normals, normalsF32,
  scaleMat, spdCondition, stack, transpose,
} from './helpers/optim-reference';
import { expectClose, HostRng } from './helpers/reference';

const device = TEST_DEVICE;
const CUDA = device === 'cuda';
const { abs, max } = Math;

function gemmRtol(k: number, bf16 = false): number {
  if (CUDA) return bf16 ? 1e-2 : 1e-4;
  return max(1e-5, (k + 2) * 2 ** -24);
}

function inverseTol(d: number, cond: number): number {
  return max(1e-5, 8 * d * cond * 2 ** -24);
}

/** A symmetric positive definite d x d matrix: X^T X / n for X with unequal column scales. */
function spdMatrix(rng: HostRng, d: number, scale = 1): Mat {
  const n = 3 * d;
  const x = mat(n, d, normals(rng, n * d));
  for (let j = 0; j < d; j++) {
    const s = 0.3 + 2 * rng.next();
    for (let i = 0; i < n; i++) x.data[i * d + j] *= s;
  }
  const k = scaleMat(matmul(transpose(x), x), scale / n);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < i; j++) k.data[i * d + j] = k.data[j * d + i]; // exactly symmetric
  }
  return { rows: d, cols: d, data: Float64Array.from(Float32Array.from(k.data)) }; // f32 values
}

// ---- accumulateInputGram -----------------------------------------------------------------------

interface GramCase {
  tokens: number;
  d: number;
  blocks?: number;
  dtype?: 'f32' | 'bf16';
  scale?: number;
  /** K shape [1, d, d] for blocks 1. */
  batchedK?: boolean;
}

async function gramCase(c: GramCase): Promise<void> {
  const seed = freshSeed();
  const rng = new HostRng(seed);
  const blocks = c.blocks ?? 1;
  const features = blocks * c.d;
  const k0 = normalsF32(rng, blocks * c.d * c.d);
  const kShape = blocks === 1 && !c.batchedK ? [c.d, c.d] : [blocks, c.d, c.d];
  const k = tensor(k0, kShape, { device });
  const x = tensor(normalsF32(rng, c.tokens * features, 1.5), [c.tokens, features], { dtype: c.dtype ?? 'f32', device });
  const hx = await x.read(); // bf16 values exactly as stored
  const r = accumulateInputGram(k, x, { blocks: c.blocks, scale: c.scale });
  expect(r).toBe(k);
  const scale = c.scale ?? 1 / c.tokens;
  const X = mat(c.tokens, features, hx);
  const expected = new Float64Array(k0.length);
  const absScale = new Float64Array(k0.length);
  for (let j = 0; j < blocks; j++) {
    const xj = colSlice(X, j * c.d, c.d);
    const g = matmul(transpose(xj), xj);
    const ga = matmul(transpose({ ...xj, data: xj.data.map(abs) }), { ...xj, data: xj.data.map(abs) });
    for (let i = 0; i < c.d * c.d; i++) {
      const at = j * c.d * c.d + i;
      expected[at] = k0[at] + scale * g.data[i];
      absScale[at] = abs(k0[at]) + abs(scale) * ga.data[i];
    }
  }
  expectClose(await k.read(), expected, {
    what: `accumulateInputGram tokens=${c.tokens} d=${c.d} blocks=${blocks} ${c.dtype ?? 'f32'} scale=${c.scale ?? 'default'}`,
    seed, rtol: gemmRtol(c.tokens, c.dtype === 'bf16'), scale: absScale,
  });
  expect(Array.from(await x.read())).toEqual(Array.from(hx)); // x untouched
  k.dispose();
  x.dispose();
}

describe('accumulateInputGram', () => {
  test('f32, default scale 1/tokens', () => gramCase({ tokens: 40, d: 16 }));
  test('f32, odd sizes', () => gramCase({ tokens: 37, d: 13 }));
  test('f32, explicit scale 0.37', () => gramCase({ tokens: 25, d: 24, scale: 0.37 }));
  test('f32, negative scale -2', () => gramCase({ tokens: 9, d: 8, scale: -2 }));
  test('bf16 input', () => gramCase({ tokens: 48, d: 20, dtype: 'bf16' }));
  test('blocks 4 (block j reads column slice j)', () => gramCase({ tokens: 30, d: 8, blocks: 4 }));
  test('blocks 4, bf16, explicit scale', () => gramCase({ tokens: 19, d: 12, blocks: 4, dtype: 'bf16', scale: 0.5 }));
  test('blocks 1 with K as [1, d, d]', () => gramCase({ tokens: 20, d: 10, batchedK: true }));
  test('fewer tokens than features', () => gramCase({ tokens: 3, d: 24 }));

  test('accumulates: two calls add both statistics', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const d = 12;
    const k = zeros([d, d], { device });
    const h1 = normalsF32(rng, 10 * d);
    const h2 = normalsF32(rng, 30 * d);
    const x1 = tensor(h1, [10, d], { device });
    const x2 = tensor(h2, [30, d], { device });
    accumulateInputGram(k, x1);
    accumulateInputGram(k, x2);
    const a = mat(10, d, h1);
    const b = mat(30, d, h2);
    const expected = new Float64Array(d * d);
    const ga = matmul(transpose(a), a);
    const gb = matmul(transpose(b), b);
    for (let i = 0; i < d * d; i++) expected[i] = ga.data[i] / 10 + gb.data[i] / 30;
    expectClose(await k.read(), expected, { what: 'two accumulations', seed, rtol: gemmRtol(30) * 4, atol: gemmRtol(30) * 4 * 3 });
    for (const t of [k, x1, x2]) t.dispose();
  });

  test('zero tokens leave K unchanged', async () => {
    const seed = freshSeed();
    const host = normalsF32(new HostRng(seed), 64);
    const k = tensor(host, [8, 8], { device });
    const x = empty([0, 8], { device });
    accumulateInputGram(k, x);
    expect(Array.from(await k.read())).toEqual(Array.from(host));
    k.dispose();
    x.dispose();
  });

  test('errors: shapes, dtypes, blocks', () => {
    const k = zeros([8, 8], { device });
    const k4 = zeros([4, 8, 8], { device });
    const x = zeros([5, 32], { device });
    const x8 = zeros([5, 8], { device });
    expect(() => accumulateInputGram(k, x)).toThrow(/shape/); // needs [32, 32]
    expect(() => accumulateInputGram(k4, x8, { blocks: 4 })).toThrow(/needs \[4, 2, 2\]/);
    expect(() => accumulateInputGram(k, x, { blocks: 3 })).toThrow(/divisible/);
    expect(() => accumulateInputGram(k, x, { blocks: 0 })).toThrow(/blocks/);
    expect(() => accumulateInputGram(k4, x, { blocks: 2 })).toThrow(/shape/);
    const x3 = zeros([2, 5, 8], { device });
    expect(() => accumulateInputGram(k, x3)).toThrow(/tokens, features/);
    const xi = zeros([5, 8], { dtype: 'i32', device });
    expect(() => accumulateInputGram(k, xi)).toThrow(/f32 or bf16/);
    const kb = zeros([8, 8], { dtype: 'bf16', device });
    expect(() => accumulateInputGram(kb, x8)).toThrow(/f32/);
    expect(() => accumulateInputGram(k, x8, { scale: NaN })).toThrow(/scale/);
    for (const t of [k, k4, x, x8, x3, xi, kb]) t.dispose();
  });
});

// ---- choleskyInverse ---------------------------------------------------------------------------

/** Checks one inverse against the reference and by its residual (K + ridge I) inv - I. */
function checkInverse(got: Float32Array | Float64Array, k: Mat, ridge: number, ridgeEps: number, what: string, seed: number): void {
  const d = k.rows;
  const ref = choleskyInverseRef(k, ridge, ridgeEps);
  check(ref.info === 0, `${what}: the reference factorisation failed (info ${ref.info})`, seed);
  const a = mat(d, d, k.data);
  for (let i = 0; i < d; i++) a.data[i * d + i] += ref.ridge;
  const cond = spdCondition(a);
  const tol = inverseTol(d, cond);
  expectRelFrob(got, ref.inverse.data, tol, `${what}: inverse vs float64 (cond ${cond.toFixed(1)})`, seed);
  const residual = matmul(a, mat(d, d, got));
  let worst = 0;
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) worst = max(worst, abs(residual.data[i * d + j] - (i === j ? 1 : 0)));
  }
  check(worst <= tol, `${what}: max |(K + ridge I) inv - I| = ${worst.toExponential(3)} > ${tol.toExponential(3)}`, seed);
}

describe('choleskyInverse', () => {
  test.each([8, 24, 40])('d = %i, default ridge 0.2 * tr/d + 1e-8: (K + ridge I) inv = I; K unchanged; full symmetric matrix', async (d) => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const k = spdMatrix(rng, d);
    const kt = tensor(Float32Array.from(k.data), [d, d], { device });
    const { inverse, info } = choleskyInverse(kt);
    expect(inverse.shape).toEqual([d, d]);
    expect(info.shape).toEqual([1]);
    expect(info.dtype).toBe('i32');
    expect(Array.from(await info.read())).toEqual([0]);
    const got = (await inverse.read()) as Float32Array;
    checkInverse(got, k, 0.2, 1e-8, `choleskyInverse d=${d}`, seed);
    // Both triangles are written (and agree).
    let asym = 0;
    for (let i = 0; i < d; i++) for (let j = 0; j < i; j++) asym = max(asym, abs(got[i * d + j] - got[j * d + i]));
    const scale = got.reduce((m, v) => max(m, abs(v)), 0);
    check(asym <= 1e-5 * scale, `inverse is not symmetric: ${asym}`, seed);
    expect(Array.from(await kt.read())).toEqual(Array.from(Float32Array.from(k.data)));
    for (const t of [kt, inverse, info]) t.dispose();
  });

  test('batched [3, 16, 16] with scales 1e-3, 1, 1e3: each matrix gets its own ridge', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const ks = [1e-3, 1, 1e3].map((s) => spdMatrix(rng, 16, s));
    const kt = tensor(Float32Array.from(stack(ks)), [3, 16, 16], { device });
    const { inverse, info } = choleskyInverse(kt);
    expect(Array.from(await info.read())).toEqual([0, 0, 0]);
    const got = await inverse.read();
    ks.forEach((k, b) => checkInverse(batchItem(got, b, 16, 16).data, k, 0.2, 1e-8, `batch item ${b}`, seed));
    for (const t of [kt, inverse, info]) t.dispose();
  });

  test.each([
    [0, 0, 'no ridge: the plain inverse'],
    [0.5, 0.3, 'ridgeEps comparable to the trace term'],
    [2, 0, 'a large multiplier'],
  ])('ridge %p, ridgeEps %p (%s) matches the reference formula', async (ridge, ridgeEps) => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const d = 12;
    const ks = [spdMatrix(rng, d, 0.2), spdMatrix(rng, d, 3)];
    const kt = tensor(Float32Array.from(stack(ks)), [2, d, d], { device });
    const { inverse, info } = choleskyInverse(kt, { ridge, ridgeEps });
    expect(Array.from(await info.read())).toEqual([0, 0]);
    const got = await inverse.read();
    ks.forEach((k, b) => checkInverse(batchItem(got, b, d, d).data, k, ridge, ridgeEps, `ridge ${ridge} eps ${ridgeEps} item ${b}`, seed));
    for (const t of [kt, inverse, info]) t.dispose();
  });

  test('a matrix that is not positive definite (-I) gets info > 0 and I; its neighbours are fine', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const d = 10;
    const good1 = spdMatrix(rng, d);
    const good2 = spdMatrix(rng, d, 5);
    const bad = identity(d, -1); // ridge = 0.2 * (-1) + 1e-8 < 0: K + ridge I = -1.2 I
    const kt = tensor(Float32Array.from(stack([good1, bad, good2])), [3, d, d], { device });
    const { inverse, info } = choleskyInverse(kt);
    const flags = Array.from(await info.read());
    expect(flags[0]).toBe(0);
    expect(flags[1]).toBe(1); // the leading minor of order 1 already fails
    expect(flags[2]).toBe(0);
    const got = await inverse.read();
    expect(Array.from(batchItem(got, 1, d, d).data)).toEqual(Array.from(identity(d).data));
    checkInverse(batchItem(got, 0, d, d).data, good1, 0.2, 1e-8, 'good neighbour 0', seed);
    checkInverse(batchItem(got, 2, d, d).data, good2, 0.2, 1e-8, 'good neighbour 2', seed);
    for (const t of [kt, inverse, info]) t.dispose();
  });

  test('info names the failing leading minor (diag(1, 1, 1, -1, 1, ...), no ridge -> 4)', async () => {
    const seed = freshSeed();
    const d = 8;
    const bad = identity(d);
    bad.data[3 * d + 3] = -1;
    const good = spdMatrix(new HostRng(seed), d);
    const kt = tensor(Float32Array.from(stack([bad, good])), [2, d, d], { device });
    const { inverse, info } = choleskyInverse(kt, { ridge: 0, ridgeEps: 0 });
    expect(Array.from(await info.read())).toEqual([4, 0]);
    const got = await inverse.read();
    expect(Array.from(batchItem(got, 0, d, d).data)).toEqual(Array.from(identity(d).data));
    checkInverse(batchItem(got, 1, d, d).data, good, 0, 0, 'good neighbour', seed);
    for (const t of [kt, inverse, info]) t.dispose();
  });

  test('NaN or Infinity in a matrix: info -1 and I; the others are fine', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const d = 8;
    const good = spdMatrix(rng, d);
    const withNaN = spdMatrix(rng, d);
    withNaN.data[2 * d + 5] = NaN; // off-diagonal, upper triangle
    const withInf = spdMatrix(rng, d);
    withInf.data[6 * d + 1] = Infinity; // lower triangle
    const kt = tensor(Float32Array.from(stack([withNaN, good, withInf])), [3, d, d], { device });
    const { inverse, info } = choleskyInverse(kt);
    expect(Array.from(await info.read())).toEqual([-1, 0, -1]);
    const got = await inverse.read();
    expect(Array.from(batchItem(got, 0, d, d).data)).toEqual(Array.from(identity(d).data));
    expect(Array.from(batchItem(got, 2, d, d).data)).toEqual(Array.from(identity(d).data));
    checkInverse(batchItem(got, 1, d, d).data, good, 0.2, 1e-8, 'finite neighbour', seed);
    for (const t of [kt, inverse, info]) t.dispose();
  });

  test('out and info options are written and returned', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const d = 9;
    const ks = [spdMatrix(rng, d), identity(d, -2)];
    const kt = tensor(Float32Array.from(stack(ks)), [2, d, d], { device });
    const out = tensor(new Float32Array(2 * d * d).fill(NaN), [2, d, d], { device });
    const infoIn = tensor(Int32Array.from([77, 77]), [2], { device });
    const r = choleskyInverse(kt, { out, info: infoIn });
    expect(r.inverse).toBe(out);
    expect(r.info).toBe(infoIn);
    const flags = Array.from(await infoIn.read());
    expect(flags[0]).toBe(0);
    expect(flags[1]).toBeGreaterThan(0);
    const got = await out.read();
    checkInverse(batchItem(got, 0, d, d).data, ks[0], 0.2, 1e-8, 'into out', seed);
    expect(Array.from(batchItem(got, 1, d, d).data)).toEqual(Array.from(identity(d).data));
    for (const t of [kt, out, infoIn]) t.dispose();
  });

  test('errors: shapes, dtypes, options', () => {
    const k = zeros([8, 8], { device });
    const rect = zeros([4, 5], { device });
    expect(() => choleskyInverse(rect)).toThrow(/square/);
    const v = zeros([8], { device });
    expect(() => choleskyInverse(v)).toThrow(/2-D|3-D/);
    const kb = zeros([8, 8], { dtype: 'bf16', device });
    expect(() => choleskyInverse(kb)).toThrow(/f32/);
    const badInfo = zeros([2], { dtype: 'i32', device });
    expect(() => choleskyInverse(k, { info: badInfo })).toThrow(/info/);
    const f32Info = zeros([1], { device });
    expect(() => choleskyInverse(k, { info: f32Info })).toThrow(/info/);
    const badOut = zeros([8, 9], { device });
    expect(() => choleskyInverse(k, { out: badOut })).toThrow(/shape/);
    expect(() => choleskyInverse(k, { ridge: NaN })).toThrow(/ridge/);
    expect(() => choleskyInverse(k, { ridgeEps: Infinity })).toThrow(/ridgeEps/);
    for (const t of [k, rect, v, kb, badInfo, f32Info, badOut]) t.dispose();
  });
});

// ---- rightPrecondition -------------------------------------------------------------------------

async function preconditionCase(rows: number, d: number, blocks: number, kinv3d: boolean, useOut: boolean): Promise<void> {
  const seed = freshSeed();
  const rng = new HostRng(seed);
  const cols = blocks * d;
  const hg = normalsF32(rng, rows * cols);
  const hk = normalsF32(rng, blocks * d * d);
  const g = tensor(hg, [rows, cols], { device });
  const kinv = tensor(hk, kinv3d || blocks > 1 ? [blocks, d, d] : [d, d], { device });
  const out = useOut ? tensor(new Float32Array(rows * cols).fill(NaN), [rows, cols], { device }) : undefined;
  const r = rightPrecondition(g, kinv, { out });
  if (out) expect(r).toBe(out);
  expect(r.shape).toEqual([rows, cols]);
  const G = mat(rows, cols, hg);
  const expected = new Float64Array(rows * cols);
  const absScale = new Float64Array(rows * cols);
  for (let j = 0; j < blocks; j++) {
    const gj = colSlice(G, j * d, d);
    const kj = batchItem(hk, j, d, d);
    const p = matmul(gj, kj);
    const pa = matmul({ ...gj, data: gj.data.map(abs) }, { ...kj, data: kj.data.map(abs) });
    for (let i = 0; i < rows; i++) {
      for (let c = 0; c < d; c++) {
        expected[i * cols + j * d + c] = p.data[i * d + c];
        absScale[i * cols + j * d + c] = pa.data[i * d + c];
      }
    }
  }
  expectClose(await r.read(), expected, { what: `rightPrecondition ${rows}x${cols} blocks=${blocks}`, seed, rtol: gemmRtol(d), scale: absScale });
  expect(Array.from(await g.read())).toEqual(Array.from(hg));
  for (const t of [g, kinv, r]) t.dispose();
}

describe('rightPrecondition', () => {
  test('plain G [24, 16] @ Kinv [16, 16]', () => preconditionCase(24, 16, 1, false, false));
  test('plain, odd [7, 13], into out', () => preconditionCase(7, 13, 1, false, true));
  test('plain with Kinv as [1, d, d]', () => preconditionCase(10, 12, 1, true, false));
  test('block-diagonal: G [16, 4*8] with Kinv [4, 8, 8]', () => preconditionCase(16, 8, 4, true, false));
  test('block-diagonal, 3 blocks of 11, into out', () => preconditionCase(9, 11, 3, true, true));

  test('errors', () => {
    const g = zeros([6, 16], { device });
    const k8 = zeros([8, 8], { device });
    expect(() => rightPrecondition(g, k8)).toThrow(/does not fit/);
    const k3 = zeros([3, 4, 4], { device });
    expect(() => rightPrecondition(g, k3)).toThrow(/does not fit/);
    const kr = zeros([2, 8, 4], { device });
    expect(() => rightPrecondition(g, kr)).toThrow(/does not fit/);
    const k16 = zeros([16, 16], { device });
    expect(() => rightPrecondition(g, k16, { out: g })).toThrow(/must not be g/);
    const badOut = zeros([16, 6], { device });
    expect(() => rightPrecondition(g, k16, { out: badOut })).toThrow(/shape/);
    const g1 = zeros([16], { device });
    expect(() => rightPrecondition(g1, k16)).toThrow(/2-D/);
    const gb = zeros([6, 16], { dtype: 'bf16', device });
    expect(() => rightPrecondition(gb, k16)).toThrow(/f32/);
    for (const t of [g, k8, k3, kr, k16, badOut, g1, gb]) t.dispose();
  });
});

// Every inverse above is checked through the reference; this one pins the identity fallback's
// exact bits on a batch where every matrix fails (nothing to factorise at all).
test('choleskyInverse: an all-failing batch is all identity', async () => {
  const d = 5;
  const kt = tensor(Float32Array.from(stack([identity(d, -1), identity(d, NaN)])), [2, d, d], { device });
  const { inverse, info } = choleskyInverse(kt);
  const flags = Array.from(await info.read());
  expect(flags[0]).toBeGreaterThan(0);
  expect(flags[1]).toBe(-1);
  expect(Array.from(await inverse.read())).toEqual([...Array.from(identity(d).data), ...Array.from(identity(d).data)]);
  for (const t of [kt, inverse, info]) t.dispose();
});
