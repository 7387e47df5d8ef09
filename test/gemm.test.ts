// GEMM through matmul() and gemm(): every transpose combination, f32/bf16 operands and outputs,
// alpha/beta (beta = 0 must not read C, so NaN in C cannot leak), batched 3-D, odd and larger
// sizes, k = 0, operands that are slices. Reference: float64 product of the operands' host
// copies (read back, so bf16 rounding of the inputs is accounted for).
//
// Tolerance per entry: rtol * sum_k |a_ik b_kj| (the scale of f32 rounding in any summation
// order), with rtol = max(1e-5, (k + 2) * 2^-24) on the CPU (the second term is the worst-case
// bound for k-term f32 accumulation); 1e-4 on CUDA (1e-2 when bf16 is involved), per
// ARCHITECTURE.md. A bf16 output adds its own rounding: 2^-8 |c|.
import { full, gemm, matmul, randn, Tensor } from '../lib/index';
import { native, NativeGemmArgs } from '../lib/native';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { expectClose, expectSameBits, matmulRef } from './helpers/reference';

const device = TEST_DEVICE;
const CUDA = device === 'cuda';
const { abs } = Math;
type Float = 'f32' | 'bf16';
const TRANS: Array<[boolean, boolean]> = [[false, false], [true, false], [false, true], [true, true]];

function rtolFor(k: number, ab: Float, out: Float): number {
  if (CUDA) return ab === 'bf16' || out === 'bf16' ? 1e-2 : 1e-4;
  return Math.max(1e-5, (k + 2) * 2 ** -24);
}

interface Case {
  m: number; n: number; k: number;
  transA?: boolean; transB?: boolean;
  batch?: number; // 3-D when given
  ab?: Float; out?: Float;
  alpha?: number; beta?: number;
  /** gemm(): 'random' C (read back for the reference) or 'nan' (beta must be 0). matmul() when absent. */
  c?: 'random' | 'nan';
}

function label(c: Case): string {
  const t = `${c.transA ? 'T' : 'N'}${c.transB ? 'T' : 'N'}`;
  const b = c.batch === undefined ? '' : `${c.batch}x`;
  const ab = `${c.ab ?? 'f32'}->${c.out ?? c.ab ?? 'f32'}`;
  const coeffs = c.c === undefined ? 'matmul' : `gemm alpha=${c.alpha ?? 1} beta=${c.beta ?? 0} c=${c.c}`;
  return `${b}${c.m}x${c.n}x${c.k} ${t} ${ab} ${coeffs}`;
}

async function runCase(c: Case): Promise<void> {
  const seed = freshSeed();
  const ab = c.ab ?? 'f32';
  const out = c.out ?? ab;
  const transA = c.transA ?? false;
  const transB = c.transB ?? false;
  const batched = c.batch !== undefined;
  const batch = c.batch ?? 1;
  const lead = batched ? [batch] : [];
  const aShape = [...lead, ...(transA ? [c.k, c.m] : [c.m, c.k])];
  const bShape = [...lead, ...(transB ? [c.n, c.k] : [c.k, c.n])];
  const cShape = [...lead, c.m, c.n];
  const a = randn(aShape, { seed: seed * 3, dtype: ab, device });
  const b = randn(bShape, { seed: seed * 3 + 1, dtype: ab, device });
  const ha = await a.read();
  const hb = await b.read();
  const ref = matmulRef(ha, hb, { m: c.m, n: c.n, k: c.k, transA, transB, batch });
  const alpha = c.alpha ?? 1;
  const beta = c.beta ?? 0;
  let result: Tensor;
  let hc: Float32Array | undefined;
  if (c.c === undefined) {
    result = matmul(a, b, { transA, transB, outDtype: c.out });
  } else {
    const cInit = c.c === 'nan' ? full(cShape, NaN, { dtype: out, device }) : randn(cShape, { seed: seed * 3 + 2, dtype: out, device });
    if (c.c === 'random') hc = (await cInit.read()) as Float32Array;
    result = gemm(cInit, a, b, { transA, transB, alpha, beta });
    expect(result).toBe(cInit);
  }
  expect(result.shape).toEqual(cShape);
  expect(result.dtype).toBe(out);
  expect(result.device).toBe(device);
  const expected = new Float64Array(ref.value.length);
  const absScale = new Float64Array(ref.value.length);
  for (let i = 0; i < expected.length; i++) {
    const prior = beta !== 0 && hc !== undefined ? beta * hc[i] : 0;
    expected[i] = alpha * ref.value[i] + prior;
    absScale[i] = abs(alpha) * ref.absScale[i] + abs(prior);
  }
  const rtol = rtolFor(c.k, ab, out);
  const tol = new Float64Array(expected.length);
  for (let i = 0; i < tol.length; i++) {
    tol[i] = rtol * absScale[i] * (out === 'bf16' ? 1.01 : 1) + (out === 'bf16' ? 2 ** -8 * abs(expected[i]) : 0);
  }
  expectClose(await result.read(), expected, { what: label(c), seed, rtol: 1, scale: tol });
  for (const t of [a, b, result]) t.dispose();
}

describe('matmul: every transpose combination, odd sizes (f32)', () => {
  const sizes: Array<[number, number, number]> = [[1, 1, 1], [7, 33, 65], [65, 7, 130], [33, 130, 7], [1, 65, 33], [130, 1, 7], [17, 19, 1]];
  for (const [transA, transB] of TRANS) {
    test.each(sizes)(`${transA ? 'T' : 'N'}${transB ? 'T' : 'N'} m=%i n=%i k=%i`, (m, n, k) => runCase({ m, n, k, transA, transB }));
  }
});

describe('operand and output dtypes', () => {
  for (const ab of ['f32', 'bf16'] as const) {
    for (const out of ['f32', 'bf16'] as const) {
      test.each(TRANS)(`${ab} operands, ${out} output, transA=%p transB=%p (33x65x130: several depth blocks)`, (transA, transB) =>
        runCase({ m: 33, n: 65, k: 130, transA, transB, ab, out }));
      test(`${ab} operands, ${out} output, tiny (7x5x3, the unpacked path)`, () => runCase({ m: 7, n: 5, k: 3, ab, out, transB: true }));
    }
  }
});

describe('gemm: alpha, beta and C', () => {
  for (const ab of ['f32', 'bf16'] as const) {
    for (const out of ['f32', 'bf16'] as const) {
      test(`${ab} -> ${out}: alpha 0.75, beta -1.5 with random C`, () =>
        runCase({ m: 65, n: 33, k: 70, transA: true, ab, out, alpha: 0.75, beta: -1.5, c: 'random' }));
      test(`${ab} -> ${out}: accumulate (alpha -2, beta 1), k spanning several depth blocks`, () =>
        runCase({ m: 40, n: 50, k: 300, transB: true, ab, out, alpha: -2, beta: 1, c: 'random' }));
    }
  }

  // beta = 0: C is overwritten without being read, so NaN already in C must not propagate,
  // on every code path (unpacked, packed full/edge tiles, bf16 scratch for k > one block).
  const nanCases: Case[] = [
    { m: 3, n: 4, k: 5 },
    { m: 65, n: 33, k: 70 },
    { m: 64, n: 64, k: 64 },
    { m: 40, n: 50, k: 300, transA: true, transB: true },
    { m: 2, n: 3, k: 4, batch: 3 },
  ];
  for (const out of ['f32', 'bf16'] as const) {
    test.each(nanCases)(`beta = 0 with NaN-filled ${out} C: %j`, (nc) => runCase({ ...nc, out, c: 'nan', alpha: 1.25, beta: 0 }));
  }

  test('default options: alpha 1, beta 0', async () => {
    const seed = freshSeed();
    const a = randn([4, 6], { seed, device });
    const b = randn([6, 5], { seed: seed + 1, device });
    const c = full([4, 5], NaN, { device });
    gemm(c, a, b);
    const ref = matmulRef(await a.read(), await b.read(), { m: 4, n: 5, k: 6 });
    expectClose(await c.read(), ref.value, { what: 'gemm defaults', seed, rtol: rtolFor(6, 'f32', 'f32'), scale: ref.absScale });
    for (const t of [a, b, c]) t.dispose();
  });

  test('alpha = 0, beta = 2 scales C', () => runCase({ m: 9, n: 11, k: 13, alpha: 0, beta: 2, c: 'random' }));
});

describe('batched (3-D)', () => {
  test.each(TRANS)('3 small products, transA=%p transB=%p', (transA, transB) =>
    runCase({ m: 7, n: 9, k: 33, batch: 3, transA, transB }));
  test('bf16 operands, bf16 output, gemm with beta', () =>
    runCase({ m: 33, n: 17, k: 65, batch: 4, ab: 'bf16', out: 'bf16', alpha: 0.5, beta: 0.25, c: 'random', transA: true }));
  test('a batch of 1', () => runCase({ m: 5, n: 6, k: 7, batch: 1 }));
  test('2 large products (each parallelised on its own)', () =>
    runCase({ m: 200, n: 210, k: 220, batch: 2, transB: true }));
});

describe('larger and degenerate sizes', () => {
  test('256 x 384 x 200 (several row and depth blocks)', () => runCase({ m: 256, n: 384, k: 200 }));
  test('256 x 384 x 200, bf16 -> bf16, transposed', () => runCase({ m: 256, n: 384, k: 200, ab: 'bf16', out: 'bf16', transA: true, transB: true }));
  test('a wide product: 8 x 4100 x 24 (more columns than one column block)', () => runCase({ m: 8, n: 4100, k: 24 }));

  test('k = 0: matmul gives zeros; gemm gives beta * C, or zeros over NaN when beta = 0', async () => {
    const seed = freshSeed();
    for (const out of ['f32', 'bf16'] as const) {
      const a = randn([3, 0], { seed, dtype: out, device });
      const b = randn([0, 4], { seed, dtype: out, device });
      const z = matmul(a, b);
      expect(z.shape).toEqual([3, 4]);
      expect(Array.from(await z.read())).toEqual(new Array(12).fill(0));
      const c = randn([3, 4], { seed, dtype: out, device });
      const hc = await c.read();
      gemm(c, a, b, { alpha: 3, beta: 0.5 });
      // 0.5 * c is exact in f32 and bf16 (a power-of-two scaling of normal values).
      expectSameBits(await c.read(), Array.from(hc, (v) => 0.5 * v), `k = 0 gemm beta 0.5 (${out})`, seed);
      const nanC = full([3, 4], NaN, { dtype: out, device });
      gemm(nanC, a, b, { beta: 0 });
      expect(Array.from(await nanC.read())).toEqual(new Array(12).fill(0));
      for (const t of [a, b, z, c, nanC]) t.dispose();
    }
  });

  test('m = 0 or n = 0 give empty results', async () => {
    const a = randn([0, 5], { device });
    const b = randn([5, 3], { device });
    const z = matmul(a, b);
    expect(z.shape).toEqual([0, 3]);
    const z2 = matmul(b, randn([3, 0], { device }));
    expect(z2.shape).toEqual([5, 0]);
    expect((await z2.read()).length).toBe(0);
    for (const t of [a, b, z, z2]) t.dispose();
  });
});

describe('operands that are views', () => {
  test('row slices of larger tensors (offsets into the storage)', async () => {
    const seed = freshSeed();
    const bigA = randn([20, 9], { seed, device });
    const bigB = randn([30, 9], { seed: seed + 1, device });
    const bigC = full([10, 7], NaN, { device });
    const a = bigA.slice(5, 13); // [8, 9]
    const b = bigB.slice(11, 17); // [6, 9], used transposed
    // c: 48 contiguous elements of bigC starting at flat index 14, seen as [8, 6].
    const rows = bigC.slice(2, 10);
    const c = rows.view([-1]);
    const c48 = c.slice(0, 48);
    const cv = c48.view([8, 6]);
    gemm(cv, a, b, { transB: true });
    const ha = (await bigA.read()).subarray(5 * 9, 13 * 9);
    const hb = (await bigB.read()).subarray(11 * 9, 17 * 9);
    const ref = matmulRef(ha, hb, { m: 8, n: 6, k: 9, transB: true });
    expectClose(await cv.read(), ref.value, { what: 'gemm on slices', seed, rtol: rtolFor(9, 'f32', 'f32'), scale: ref.absScale });
    // Everything outside the written range is still NaN.
    const all = await bigC.read();
    for (let i = 0; i < 70; i++) {
      const inside = i >= 14 && i < 14 + 48;
      if (!inside && !Number.isNaN(all[i])) throw new Error(`gemm wrote outside c at flat index ${i} (seed ${seed})`);
    }
    for (const t of [bigA, bigB, bigC, a, b, rows, c, c48, cv]) t.dispose();
  });

  test('a slice of a batch', async () => {
    const seed = freshSeed();
    const a = randn([5, 4, 6], { seed, dtype: 'bf16', device });
    const b = randn([5, 6, 3], { seed: seed + 1, dtype: 'bf16', device });
    const out = matmul(a.slice(2, 4), b.slice(1, 3), { outDtype: 'f32' });
    expect(out.shape).toEqual([2, 4, 3]);
    const ha = (await a.read()).subarray(2 * 24, 4 * 24);
    const hb = (await b.read()).subarray(1 * 18, 3 * 18);
    const ref = matmulRef(ha, hb, { m: 4, n: 3, k: 6, batch: 2 });
    expectClose(await out.read(), ref.value, { what: 'matmul of batch slices', seed, rtol: rtolFor(6, 'bf16', 'f32'), scale: ref.absScale });
    for (const t of [a, b, out]) t.dispose();
  });
});

// The backend's own argument rules (csrc/core/gemm_check.h), reached through the native binding
// that lib/optim uses for strided batches: both backends must accept and reject the same calls
// with the same words, before any work is queued.
describe('native gemm: the backends share one set of argument rules', () => {
  function call(over: Partial<NativeGemmArgs>, tensors: { a: Tensor; b: Tensor; c: Tensor }): void {
    native.gemm({
      a: tensors.a.handle('test'), aOffset: 0, b: tensors.b.handle('test'), bOffset: 0, c: tensors.c.handle('test'), cOffset: 0,
      transA: false, transB: false, m: 4, n: 3, k: 5, alpha: 1, beta: 0,
      lda: 5, ldb: 3, ldc: 3, strideA: 20, strideB: 15, strideC: 12, batch: 2, abDtype: 0, cDtype: 0,
      ...over,
    });
  }

  test('overlapping C batches, negative strides and short leading dimensions are refused, and C is untouched', async () => {
    const seed = freshSeed();
    const a = randn([2, 4, 5], { seed, device });
    const b = randn([2, 5, 3], { seed: seed + 1, device });
    const c = full([2, 4, 3], 7, { device });
    const tensors = { a, b, c };
    // stride 6 < (m-1)*ldc+n = 12, and (batch-1)*6+3 > ldc = 3: the second matrix starts on row 2 of the first.
    expect(() => call({ strideC: 6 }, tensors)).toThrow(
      'gemm: stride_c (6) makes the batches\' C matrices overlap: it must be >= (m-1)*ldc+n = 12 (one matrix after another), ' +
      'or >= n (3) with (batch-1)*stride_c+n <= ldc (3) (column blocks of the same rows)');
    expect(() => call({ strideC: 0 }, tensors)).toThrow(/gemm: stride_c \(0\) makes the batches' C matrices overlap/);
    expect(() => call({ strideA: -20 }, tensors)).toThrow('gemm: batch strides must be >= 0 (got -20, 15, 12)');
    expect(() => call({ lda: 4 }, tensors)).toThrow('gemm: lda (4) must be >= 5 (A is [m, k])');
    expect(() => call({ transB: true, ldb: 3 }, tensors)).toThrow('gemm: ldb (3) must be >= 5 (B is [n, k])');
    expect(Array.from(await c.read())).toEqual(new Array(24).fill(7));
    for (const t of [a, b, c]) t.dispose();
  });

  test('column blocks of the same rows are accepted: C[:, 3j:3j+3] = A[:, 5j:5j+5] @ B[j]', async () => {
    const seed = freshSeed();
    const a = randn([4, 10], { seed, device });
    const b = randn([2, 5, 3], { seed: seed + 1, device });
    const c = full([4, 6], NaN, { device });
    call({ lda: 10, ldc: 6, strideA: 5, strideC: 3 }, { a, b, c });
    const ha = await a.read();
    const hb = await b.read();
    const expected = new Float64Array(24);
    const scale = new Float64Array(24);
    for (let j = 0; j < 2; j++) {
      for (let i = 0; i < 4; i++) {
        for (let col = 0; col < 3; col++) {
          let s = 0;
          let sa = 0;
          for (let p = 0; p < 5; p++) {
            const term = ha[i * 10 + 5 * j + p] * hb[j * 15 + p * 3 + col];
            s += term;
            sa += abs(term);
          }
          expected[i * 6 + 3 * j + col] = s;
          scale[i * 6 + 3 * j + col] = sa;
        }
      }
    }
    expectClose(await c.read(), expected, { what: 'column-block batches', seed, rtol: rtolFor(5, 'f32', 'f32'), scale });
    for (const t of [a, b, c]) t.dispose();
  });
});
