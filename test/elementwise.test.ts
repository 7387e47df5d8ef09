// Elementwise ops (add, sub, mul, scale, axpy) in f32 and bf16 against float64, fill for every
// dtype, and the integer casts (u16 -> i32, i32 -> f32).
import { add, axpy, cast, fill, mul, randn, scale, sub, Tensor, tensor } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import { bf16BitsRef, bf16UlpDistance, expectClose, expectSameBits, f32ThenBf16, HostRng, mapRef } from './helpers/reference';

const device = TEST_DEVICE;
const { abs, fround } = Math;
// 1, odd, and past the CPU backend's 65536-element parallel chunk.
const SIZES = [1, 7, 1000, 70001];
const F32_RTOL = 1e-6;

/** Fresh random inputs on the device (nonzero, mixed magnitudes) and their host copies. */
async function inputs(n: number, dtype: 'f32' | 'bf16', count: number): Promise<{ seed: number; ts: Tensor[]; hs: Float32Array[] }> {
  const seed = freshSeed();
  const ts: Tensor[] = [];
  const hs: Float32Array[] = [];
  for (let i = 0; i < count; i++) {
    const t = randn([n], { seed: seed * 7 + i, std: i === 0 ? 1 : 3, dtype, device });
    ts.push(t);
    hs.push((await t.read()) as Float32Array);
  }
  return { seed, ts, hs };
}

/**
 * bf16 results: the exact (float64) result, rounded to f32 then to bf16, must be within one
 * bf16 ulp of what the op stored (it computes in f32 and rounds once more).
 */
async function expectBf16Within1Ulp(out: Tensor, exact: Float64Array, what: string, seed: number): Promise<void> {
  const bits = (await out.readRaw()) as Uint16Array;
  for (let i = 0; i < exact.length; i++) {
    const want = bf16BitsRef(fround(exact[i]));
    const d = bf16UlpDistance(bits[i], want);
    if (d > 1) {
      throw new Error(`${what} (bf16): element ${i} is 0x${bits[i].toString(16)}, expected 0x${want.toString(16)} ` +
        `(exact ${exact[i]}), ${d} ulps apart (seed ${seed})`);
    }
  }
}

describe.each(['f32', 'bf16'] as const)('%s elementwise', (dtype) => {
  const check = async (out: Tensor, exact: Float64Array, scaleOfTerms: Float64Array, what: string, seed: number) => {
    expect(out.dtype).toBe(dtype);
    expect(out.device).toBe(device);
    if (dtype === 'f32') expectClose(await out.read(), exact, { what, seed, rtol: F32_RTOL, scale: scaleOfTerms });
    else await expectBf16Within1Ulp(out, exact, what, seed);
  };

  test.each(SIZES)('add / sub / mul, n = %i', async (n) => {
    const { seed, ts: [a, b], hs: [ha, hb] } = await inputs(n, dtype, 2);
    const terms = mapRef(n, (i) => abs(ha[i]) + abs(hb[i]));
    const sum = add(a, b);
    const diff = sub(a, b);
    const prod = mul(a, b);
    await check(sum, mapRef(n, (i) => ha[i] + hb[i]), terms, 'add', seed);
    await check(diff, mapRef(n, (i) => ha[i] - hb[i]), terms, 'sub', seed);
    const exactProd = mapRef(n, (i) => ha[i] * hb[i]);
    await check(prod, exactProd, exactProd.map(abs), 'mul', seed);
    // Inputs are unchanged.
    expectSameBits(await a.read(), ha, 'add/sub/mul input a after the ops', seed);
    for (const t of [a, b, sum, diff, prod]) t.dispose();
  });

  test.each(SIZES)('scale, n = %i', async (n) => {
    const { seed, ts: [x], hs: [hx] } = await inputs(n, dtype, 1);
    for (const alpha of [0.1, -3, 0]) {
      const out = scale(x, alpha);
      // alpha is passed to the kernel as f32.
      const exact = mapRef(n, (i) => fround(alpha) * hx[i]);
      await check(out, exact, exact.map(abs), `scale(${alpha})`, seed);
      out.dispose();
    }
    x.dispose();
  });

  test.each(SIZES)('axpy in place, n = %i', async (n) => {
    const { seed, ts: [y, x], hs: [hy, hx] } = await inputs(n, dtype, 2);
    const alpha = -0.7;
    const a32 = fround(alpha);
    const returned = axpy(y, x, alpha);
    expect(returned).toBe(y);
    const exact = mapRef(n, (i) => hy[i] + a32 * hx[i]);
    await check(y, exact, mapRef(n, (i) => abs(hy[i]) + abs(a32 * hx[i])), 'axpy', seed);
    expectSameBits(await x.read(), hx, 'axpy input x after the op', seed);
    // A second axpy accumulates on the first's result.
    const afterFirst = (await y.read()) as Float32Array;
    axpy(y, x, 2);
    await check(y, mapRef(n, (i) => afterFirst[i] + 2 * hx[i]), mapRef(n, (i) => abs(afterFirst[i]) + 2 * abs(hx[i])), 'axpy twice', seed);
    x.dispose();
    y.dispose();
  });

  test('axpy(y, y, alpha): x may be y itself', async () => {
    const { seed, ts: [y], hs: [hy] } = await inputs(1001, dtype, 1);
    axpy(y, y, 1); // fma(1, y, y) = 2y exactly
    expectSameBits(await y.read(), Float32Array.from(hy, (v) => 2 * v), 'axpy(y, y, 1)', seed);
    y.dispose();
  });

  test('ops on slices touch only the slice', async () => {
    const { seed, ts: [a, b], hs: [ha, hb] } = await inputs(40, dtype, 2);
    const a2 = a.view([8, 5]);
    const b2 = b.view([8, 5]);
    const s = add(a2.slice(1, 4), b2.slice(4, 7));
    await check(s, mapRef(15, (i) => ha[5 + i] + hb[20 + i]), mapRef(15, (i) => abs(ha[5 + i]) + abs(hb[20 + i])), 'add of slices', seed);
    axpy(a2.slice(6, 8), b2.slice(0, 2), 1);
    const after = await a.read();
    for (let i = 0; i < 40; i++) {
      if (i < 30 && after[i] !== ha[i]) throw new Error(`axpy on a slice changed element ${i} outside it (seed ${seed})`);
    }
    for (const t of [a, b, a2, b2, s]) t.dispose();
  });

  test('zero-size operands', async () => {
    const a = randn([0, 5], { dtype, device });
    const out = add(a, a);
    expect(out.shape).toEqual([0, 5]);
    expect((await out.read()).length).toBe(0);
    expect(axpy(a, a, 2)).toBe(a);
    a.dispose();
    out.dispose();
  });
});

describe('fill', () => {
  test.each([
    ['f32', [0.1, -7.5e-12, 3e38, -0, Infinity], (v: number) => fround(v)],
    ['bf16', [0.1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -1e-3, 3.39e38], (v: number) => f32ThenBf16(v)],
    ['i32', [-(2 ** 31), 2 ** 31 - 1, 0, -17], (v: number) => v],
    ['u16', [0, 65535, 257], (v: number) => v],
  ] as const)('%s', async (dtype, values, expected) => {
    const rng = new HostRng(freshSeed());
    const n = rng.int(1, 3000);
    const base = dtype === 'f32' || dtype === 'bf16' ? randn([n], { dtype, device, seed: freshSeed() }) : tensor(new Array(n).fill(1), [n], { dtype, device });
    for (const v of values) {
      expect(fill(base, v)).toBe(base);
      const got = Array.from(await base.read());
      const want = expected(v);
      if (!got.every((g) => Object.is(g, want))) throw new Error(`fill(${dtype}, ${v}) gave ${got.find((g) => !Object.is(g, want))}, expected ${want}`);
    }
    base.dispose();
  });

  test('fill of a slice leaves the rest alone (u16, odd offset)', async () => {
    const data = Uint16Array.from({ length: 21 }, (_, i) => i + 1);
    const t = tensor(data, [7, 3], { device });
    fill(t.slice(3, 5), 40000);
    const got = Array.from(await t.read());
    expect(got).toEqual(Array.from(data, (v, i) => (i >= 9 && i < 15 ? 40000 : v)));
    t.dispose();
  });
});

describe('integer casts', () => {
  test('u16 -> i32 zero-extends every value', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const data = Uint16Array.from({ length: 4099 }, (_, i) => (i < 3 ? [0, 65535, 32768][i] : rng.int(0, 65535)));
    const u = tensor(data, [4099], { device });
    const i32 = cast(u, 'i32');
    expect(i32.dtype).toBe('i32');
    expect(i32.shape).toEqual([4099]);
    expectSameBits(await i32.read(), Int32Array.from(data), 'cast u16 -> i32', seed);
    u.dispose();
    i32.dispose();
  });

  test('i32 -> f32 rounds to nearest even like Math.fround', async () => {
    const seed = freshSeed();
    const rng = new HostRng(seed);
    const special = [0, -1, 2 ** 31 - 1, -(2 ** 31), 16777217, 16777219, -16777217, 2 ** 25 + 2];
    const data = Int32Array.from({ length: 5000 }, (_, i) => (i < special.length ? special[i] : rng.int(-(2 ** 31), 2 ** 31 - 1)));
    const t = tensor(data, [50, 100], { device });
    const f = cast(t, 'f32');
    expect(f.shape).toEqual([50, 100]);
    expectSameBits(await f.read(), Float32Array.from(data, (v) => fround(v)), 'cast i32 -> f32', seed);
    t.dispose();
    f.dispose();
  });

  test('f32 -> bf16 -> f32 of random values equals the reference rounding', async () => {
    const seed = freshSeed();
    const x = randn([3001], { seed, std: 100, device });
    const hx = (await x.read()) as Float32Array;
    const narrow = cast(x, 'bf16');
    const wide = cast(narrow, 'f32');
    expectSameBits(await wide.read(), Float32Array.from(hx, (v) => f32ThenBf16(v)), 'cast f32 -> bf16 -> f32', seed);
    for (const t of [x, narrow, wide]) t.dispose();
  });
});
