// copy() (same dtype and element count, any shapes, views) and copyRows() (a block of rows and
// columns between 2-D tensors, with offsets on both sides), checked against host-side copies.
import { copy, copyRows, Dtype, full, randn, RowBlock, Tensor, tensor } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { expectSameBits, HostRng } from './helpers/reference';

const device = TEST_DEVICE;

/** Random data of any dtype (never all zeros) as a device tensor plus its host copy. */
async function randomTensor(shape: number[], dtype: Dtype, seed: number): Promise<{ t: Tensor; host: ArrayLike<number> }> {
  const n = shape.reduce((a, b) => a * b, 1);
  const rng = new HostRng(seed);
  let t: Tensor;
  if (dtype === 'f32' || dtype === 'bf16') t = randn(shape, { seed, dtype, device });
  else if (dtype === 'i32') t = tensor(Int32Array.from({ length: n }, () => rng.int(-(2 ** 31), 2 ** 31 - 1)), shape, { device });
  else t = tensor(Uint16Array.from({ length: n }, () => rng.int(1, 65535)), shape, { device });
  return { t, host: await t.read() };
}

describe('copy', () => {
  test.each(['f32', 'bf16', 'i32', 'u16'] as const)('%s: between different shapes with the same element count', async (dtype) => {
    const seed = freshSeed();
    const { t: src, host } = await randomTensor([6, 35], dtype, seed);
    const { t: dst } = await randomTensor([5, 6, 7], dtype, seed + 1);
    expect(copy(dst, src)).toBe(dst);
    expectSameBits(await dst.read(), host, `copy ${dtype}`, seed);
    // src is untouched.
    expectSameBits(await src.read(), host, `copy ${dtype} source`, seed);
    src.dispose();
    dst.dispose();
  });

  test('between slices of the same storage (disjoint) and into a scalar', async () => {
    const seed = freshSeed();
    const { t, host } = await randomTensor([10, 3], 'f32', seed);
    copy(t.slice(7, 9), t.slice(1, 3));
    const got = await t.read();
    const want = Array.from(host);
    for (let i = 0; i < 6; i++) want[21 + i] = host[3 + i];
    expectSameBits(got, want, 'copy between slices', seed);
    const s = full([], 0, { device });
    copy(s, t.slice(4, 5).view([-1]).slice(2, 3).view([]));
    expect(Array.from(await s.read())).toEqual([host[14]]);
    t.dispose();
    s.dispose();
  });

  test('zero elements is a no-op', async () => {
    const a = full([0, 4], 1, { device });
    const b = full([2, 0], 1, { device });
    expect(copy(a, b)).toBe(a);
    a.dispose();
    b.dispose();
  });
});

/** Host copy of the block, for the expected dst contents. */
function hostCopyRows(dst: ArrayLike<number>, dstCols: number, src: ArrayLike<number>, srcCols: number, b: Required<RowBlock>): number[] {
  const out = Array.from(dst);
  for (let r = 0; r < b.rows; r++) {
    for (let c = 0; c < b.cols; c++) out[(b.dstRow + r) * dstCols + b.dstCol + c] = src[(b.srcRow + r) * srcCols + b.srcCol + c];
  }
  return out;
}

describe('copyRows', () => {
  test.each(['f32', 'bf16', 'i32', 'u16'] as const)('%s: blocks with offsets on both sides', async (dtype) => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    for (let trial = 0; trial < 6; trial++) {
      const srcRows = rng.int(1, 40);
      const srcCols = rng.int(1, 40);
      const dstRows = rng.int(1, 40);
      const dstCols = rng.int(1, 40);
      // rows >= 1 here; zero-row blocks have their own test below.
      const rows = rng.int(1, Math.min(srcRows, dstRows));
      const cols = rng.int(0, Math.min(srcCols, dstCols));
      const block = {
        srcRow: rng.int(0, srcRows - rows), srcCol: rng.int(0, srcCols - cols),
        dstRow: rng.int(0, dstRows - rows), dstCol: rng.int(0, dstCols - cols), rows, cols,
      };
      const { t: src, host: hs } = await randomTensor([srcRows, srcCols], dtype, seed * 10 + trial);
      const { t: dst, host: hd } = await randomTensor([dstRows, dstCols], dtype, seed * 10 + trial + 5);
      expect(copyRows(dst, src, block)).toBe(dst);
      const what = `copyRows ${dtype} src [${srcRows}, ${srcCols}] -> dst [${dstRows}, ${dstCols}] ${JSON.stringify(block)}`;
      expectSameBits(await dst.read(), hostCopyRows(hd, dstCols, hs, srcCols, block), what, seed);
      src.dispose();
      dst.dispose();
    }
  });

  test('defaults: all of src from (srcRow, srcCol), landing at (0, 0)', async () => {
    const seed = freshSeed();
    const { t: src, host: hs } = await randomTensor([5, 4], 'f32', seed);
    const { t: dst, host: hd } = await randomTensor([6, 7], 'f32', seed + 1);
    copyRows(dst, src);
    expectSameBits(await dst.read(), hostCopyRows(hd, 7, hs, 4, { srcRow: 0, srcCol: 0, dstRow: 0, dstCol: 0, rows: 5, cols: 4 }), 'copyRows defaults', seed);
    const before = await dst.read();
    copyRows(dst, src, { srcRow: 2, srcCol: 1, dstRow: 3, dstCol: 4 });
    expectSameBits(await dst.read(), hostCopyRows(before, 7, hs, 4, { srcRow: 2, srcCol: 1, dstRow: 3, dstCol: 4, rows: 3, cols: 3 }), 'copyRows partial defaults', seed);
    src.dispose();
    dst.dispose();
  });

  test('between slices (views with offsets)', async () => {
    const seed = freshSeed();
    const { t: src, host: hs } = await randomTensor([12, 6], 'bf16', seed);
    const { t: dst, host: hd } = await randomTensor([9, 5], 'bf16', seed + 1);
    const block = { srcRow: 1, srcCol: 2, dstRow: 2, dstCol: 1, rows: 3, cols: 4 };
    copyRows(dst.slice(3, 9), src.slice(4, 10), block);
    // In full-tensor coordinates: src rows 5..7, dst rows 5..7.
    const want = hostCopyRows(hd, 5, hs, 6, { ...block, srcRow: 5, dstRow: 5 });
    expectSameBits(await dst.read(), want, 'copyRows between slices', seed);
    src.dispose();
    dst.dispose();
  });

  test('an empty block changes nothing, even at the far edge', async () => {
    const seed = freshSeed();
    const { t: src } = await randomTensor([3, 4], 'u16', seed);
    const { t: dst, host: hd } = await randomTensor([2, 2], 'u16', seed + 1);
    copyRows(dst, src, { rows: 0, cols: 2 });
    copyRows(dst, src, { rows: 2, cols: 0 });
    copyRows(dst, src, { srcRow: 3, dstRow: 2, cols: 2 });
    expectSameBits(await dst.read(), hd, 'empty copyRows', seed);
    src.dispose();
    dst.dispose();
  });

  test('a zero-row block starting past the last row (with a column offset) is accepted and changes nothing', async () => {
    // srcRow == rows of src is a valid start for an empty block (srcRow + rows <= srcRows), so
    // it must not reach the native bounds check with an offset past the end of the buffer.
    const seed = freshSeed();
    const { t: src } = await randomTensor([4, 5], 'f32', seed);
    const { t: dst, host: hd } = await randomTensor([2, 3], 'f32', seed + 1);
    expect(() => copyRows(dst, src, { srcRow: 4, srcCol: 2, rows: 0 })).not.toThrow();
    expect(() => copyRows(dst, src, { dstRow: 2, dstCol: 1, rows: 0, cols: 2 })).not.toThrow();
    expectSameBits(await dst.read(), hd, 'dst after empty copyRows', seed);
    src.dispose();
    dst.dispose();
  });

  test('bounds: blocks reaching past either tensor throw before anything is written', async () => {
    const seed = freshSeed();
    const { t: src } = await randomTensor([4, 5], 'f32', seed);
    const { t: dst, host: hd } = await randomTensor([3, 6], 'f32', seed + 1);
    const bad: Array<[RowBlock, RegExp]> = [
      [{ rows: 4 }, /outside dst \[3, 6\]/],
      [{ srcRow: 2, rows: 3 }, /rows \[2, 5\).*outside src \[4, 5\]/],
      [{ srcCol: 3, cols: 3 }, /cols \[3, 6\) is outside src \[4, 5\]/],
      [{ dstCol: 2, rows: 1 }, /cols \[2, 7\) is outside dst \[3, 6\]/],
      [{ dstRow: 3, rows: 1, cols: 1 }, /rows \[3, 4\).*outside dst/],
      [{ srcRow: 5 }, /outside src/],
      [{ srcRow: -1 }, /copyRows: srcRow must be a non-negative integer, got -1/],
      [{ cols: 1.5 }, /copyRows: cols must be a non-negative integer, got 1\.5/],
    ];
    for (const [block, message] of bad) {
      expect(() => copyRows(dst, src, block)).toThrow(message);
    }
    expectSameBits(await dst.read(), hd, 'dst after rejected copyRows', seed);
    src.dispose();
    dst.dispose();
  });
});
