// sum / sumOfSquares: f32 and bf16 inputs of several sizes (around the CPU backend's 16384
// reduction chunk, and 1e6) against float64, and determinism (same input -> same bits).
import { copy, empty, randn, sum, sumOfSquares, Tensor, tensor } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { expectClose, sumRef } from './helpers/reference';

const device = TEST_DEVICE;
const SIZES = [0, 1, 2, 16383, 16384, 16385, 1_000_000];
// Relative to sum |term|: covers f32 accumulation in any order over 1e6 terms on either backend.
const RTOL = 1e-5;

async function scalar(t: Tensor): Promise<number> {
  expect(t.shape).toEqual([]);
  expect(t.dtype).toBe('f32');
  expect(t.device).toBe(device);
  const [v] = await t.read();
  t.dispose();
  return v;
}

describe.each(['f32', 'bf16'] as const)('%s input', (dtype) => {
  test.each(SIZES)('sum and sumOfSquares, n = %i', async (n) => {
    const seed = freshSeed();
    // A non-zero mean so the sum is not a cancellation to ~0.
    const x = randn([n], { seed, mean: 0.3, dtype, device });
    const hx = await x.read();
    const s = sumRef(hx);
    const q = sumRef(hx, true);
    expectClose([await scalar(sum(x))], [s.value], { what: `sum of ${n} ${dtype}`, seed, rtol: RTOL, scale: [s.absScale], atol: 0 });
    expectClose([await scalar(sumOfSquares(x))], [q.value], { what: `sumOfSquares of ${n} ${dtype}`, seed, rtol: RTOL, scale: [q.absScale] });
    if (n === 0) {
      // An empty sum is exactly 0 (the output buffer must be written, not left uninitialised).
      expect(Object.is(s.value, 0)).toBe(true);
    }
    x.dispose();
  });

  test('empty input writes 0 into previously used memory', async () => {
    // Recycle memory holding garbage so an unwritten output would show.
    const junk = tensor([123.5, 123.5, 123.5, 123.5], [4], { device });
    junk.dispose();
    const x = empty([0, 3], { dtype, device });
    expect(await scalar(sum(x))).toBe(0);
    expect(await scalar(sumOfSquares(x))).toBe(0);
    x.dispose();
  });

  test('deterministic: the same input (and a copy of it) reduce to the same bits', async () => {
    const seed = freshSeed();
    const n = 250_007;
    const x = randn([n], { seed, dtype, device });
    const y = copy(empty([n], { dtype, device }), x);
    const sums = await Promise.all([sum(x), sum(x), sum(y), sum(x)].map(scalar));
    const squares = await Promise.all([sumOfSquares(x), sumOfSquares(y), sumOfSquares(x)].map(scalar));
    expect(new Set(sums).size).toBe(1);
    expect(new Set(squares).size).toBe(1);
    x.dispose();
    y.dispose();
  });

  test('reduces only the slice it is given', async () => {
    const seed = freshSeed();
    const x = randn([40, 1000], { seed, dtype, device });
    const hx = await x.read();
    const part = x.slice(17, 33);
    const ref = sumRef(hx.subarray(17 * 1000, 33 * 1000));
    expectClose([await scalar(sum(part))], [ref.value], { what: 'sum of a slice', seed, rtol: RTOL, scale: [ref.absScale] });
    const refSq = sumRef(hx.subarray(17 * 1000, 33 * 1000), true);
    expectClose([await scalar(sumOfSquares(part))], [refSq.value], { what: 'sumOfSquares of a slice', seed, rtol: RTOL, scale: [refSq.absScale] });
    x.dispose();
    part.dispose();
  });
});

test('a scalar tensor reduces to itself and its square', async () => {
  const t = tensor([-2.5], [], { device });
  expect(await scalar(sum(t))).toBe(-2.5);
  expect(await scalar(sumOfSquares(t))).toBe(6.25);
  t.dispose();
});
