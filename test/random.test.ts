// randn / rand: deterministic from the seed (same seed -> identical bits on any device,
// different seed -> different values) and statistically sound (moments of 1e5 samples).
import { rand, randn, Tensor } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { expectSameBits, f32ThenBf16 } from './helpers/reference';

const device = TEST_DEVICE;
const N = 100_000;

async function readAndDispose(t: Tensor): Promise<Float32Array> {
  const v = (await t.read()) as Float32Array;
  t.dispose();
  return v;
}

function moments(x: Float32Array): { mean: number; std: number } {
  let s = 0;
  for (const v of x) s += v;
  const mean = s / x.length;
  let q = 0;
  for (const v of x) q += (v - mean) ** 2;
  return { mean, std: Math.sqrt(q / (x.length - 1)) };
}

describe.each(['randn', 'rand'] as const)('%s', (kind) => {
  const make = (shape: number[], seed: number, dtype: 'f32' | 'bf16' = 'f32', dev = device) =>
    kind === 'randn' ? randn(shape, { seed, dtype, device: dev }) : rand(shape, { seed, dtype, device: dev });

  test('the same seed gives identical values; another seed different ones', async () => {
    const seed = freshSeed();
    const a = await readAndDispose(make([257, 3], seed));
    const b = await readAndDispose(make([257, 3], seed));
    const c = await readAndDispose(make([257, 3], seed + 1));
    expectSameBits(b, a, `${kind} twice with one seed`, seed);
    let same = 0;
    for (let i = 0; i < a.length; i++) if (a[i] === c[i]) same++;
    expect(same).toBeLessThan(3);
  });

  test('the seed also fixes values across shapes, dtypes and devices', async () => {
    const seed = freshSeed();
    const flat = await readAndDispose(make([60], seed, 'f32', 'cpu'));
    const shaped = await readAndDispose(make([3, 4, 5], seed, 'f32', device));
    expectSameBits(shaped, flat, `${kind} [3, 4, 5] on ${device} vs [60] on cpu`, seed);
    const narrow = await readAndDispose(make([60], seed, 'bf16', device));
    expectSameBits(narrow, Float32Array.from(flat, (v) => f32ThenBf16(v)), `${kind} bf16 vs f32 rounded`, seed);
  });

  test('seed 0 is the default', async () => {
    const a = await readAndDispose(kind === 'randn' ? randn([50], { device }) : rand([50], { device }));
    const b = await readAndDispose(make([50], 0));
    expect(a).toEqual(b);
  });

  test('large seeds are distinct (the high word counts)', async () => {
    const base = 2 ** 40 + freshSeed();
    const a = await readAndDispose(make([16], base));
    const b = await readAndDispose(make([16], base + 2 ** 33));
    expect(a).not.toEqual(b);
  });

  test('seeds that differ only in sign or word order give different values', async () => {
    const s = freshSeed() % 1000 + 1;
    const seeds = [0, s, -s, -1, 2 ** 32 * s, 2 ** 32 + 1, 2 ** 32 * s + s];
    const streams = await Promise.all(seeds.map((seed) => readAndDispose(make([8], seed))));
    for (let i = 0; i < seeds.length; i++) {
      for (let j = i + 1; j < seeds.length; j++) {
        if (streams[i].every((v, k) => v === streams[j][k])) {
          throw new Error(`${kind}: seeds ${seeds[i]} and ${seeds[j]} give identical values`);
        }
      }
    }
  });

  test('zero-size and odd sizes', async () => {
    expect((await readAndDispose(make([0, 4], freshSeed()))).length).toBe(0);
    const odd = await readAndDispose(make([7], freshSeed()));
    expect(odd.length).toBe(7);
    expect(odd.every((v) => Number.isFinite(v))).toBe(true);
  });
});

describe('statistics of 1e5 samples', () => {
  test('randn: mean 0, std 1, 68.3% within one sigma, symmetric', async () => {
    const seed = freshSeed();
    const x = await readAndDispose(randn([N], { seed, device }));
    const { mean, std } = moments(x);
    // Standard errors: mean 1/sqrt(N) = 0.0032, std 1/sqrt(2N) = 0.0022; allow ~6 of them.
    expect({ seed, meanOk: Math.abs(mean) < 0.02 }).toEqual({ seed, meanOk: true });
    expect({ seed, stdOk: Math.abs(std - 1) < 0.015 }).toEqual({ seed, stdOk: true });
    const within = x.filter((v) => Math.abs(v) < 1).length / N;
    expect({ seed, withinOk: Math.abs(within - 0.6827) < 0.01 }).toEqual({ seed, withinOk: true });
    const positive = x.filter((v) => v > 0).length / N;
    expect({ seed, positiveOk: Math.abs(positive - 0.5) < 0.01 }).toEqual({ seed, positiveOk: true });
    // Tails exist but are not absurd: |x| > 3 about 0.27% of the time, nothing beyond 7 sigma.
    const tail = x.filter((v) => Math.abs(v) > 3).length / N;
    expect({ seed, tail, tailOk: tail > 0.001 && tail < 0.0045 }).toMatchObject({ tailOk: true });
    expect(x.every((v) => Math.abs(v) < 7)).toBe(true);
  });

  test('randn with mean and std', async () => {
    const seed = freshSeed();
    const x = await readAndDispose(randn([N], { seed, mean: 3, std: 0.5, device }));
    const m = moments(x);
    expect({ seed, ok: Math.abs(m.mean - 3) < 0.01 && Math.abs(m.std - 0.5) < 0.0075 }).toEqual({ seed, ok: true });
  });

  test('rand: uniform on [low, high)', async () => {
    const seed = freshSeed();
    const low = -2;
    const high = 5;
    const x = await readAndDispose(rand([N], { seed, low, high, device }));
    expect(x.every((v) => v >= low && v < high)).toBe(true);
    const m = moments(x);
    const wantStd = (high - low) / Math.sqrt(12);
    expect({ seed, meanOk: Math.abs(m.mean - 1.5) < 0.04 }).toEqual({ seed, meanOk: true });
    expect({ seed, stdOk: Math.abs(m.std - wantStd) < 0.02 }).toEqual({ seed, stdOk: true });
    // Each tenth of the range holds about a tenth of the samples (sd of a bin count: ~95).
    const bins = new Array(10).fill(0);
    for (const v of x) bins[Math.min(9, Math.floor(((v - low) / (high - low)) * 10))]++;
    for (const count of bins) expect({ seed, bins, ok: Math.abs(count - N / 10) < 600 }).toMatchObject({ ok: true });
  });

  test('rand default range is [0, 1)', async () => {
    const x = await readAndDispose(rand([1000], { seed: freshSeed(), device }));
    expect(x.every((v) => v >= 0 && v < 1)).toBe(true);
    expect(Math.max(...x)).toBeGreaterThan(0.9);
    expect(Math.min(...x)).toBeLessThan(0.1);
  });
});
