// bf16 conversions: f32 -> bf16 rounds to nearest, ties to even (NaN stays NaN, overflow goes
// to infinity, subnormals round like any other value), bf16 -> f32 is exact. Checked against
// bf16RoundRef, an independent float64 derivation (see helpers/reference.ts), on hand-picked
// edge cases and on random bit patterns covering every class of f32.
import { cast, full, tensor } from '../lib/index';
import { freshSeed, TEST_DEVICE } from './helpers/device';
import {
  bf16BitsRef, bf16RoundRef, bf16Value, f32ArrayFromBits, f32Bits, f32FromBits, HostRng, isBf16NaN,
} from './helpers/reference';

const device = TEST_DEVICE;

/** f32 bit patterns on every rounding edge bf16 has. */
const EDGE_BITS = [
  0x00000000, 0x80000000, // +-0
  0x3f800000, 0x3f808000, 0x3f818000, 0x3f808001, 0x3f807fff, 0x3f80ffff, // around 1: ties, just above/below
  0xbf808000, 0xbf818000, 0xbf808001, 0xbf807fff,
  0x7f7f0000, 0x7f7f7fff, 0x7f7f8000, 0x7f7fffff, 0xff7f8000, 0xff7f7fff, // largest finite, overflow
  0x7f800000, 0xff800000, // +-inf
  0x00000001, 0x00008000, 0x00008001, 0x00010000, 0x00018000, 0x00028000, 0x007f8000, 0x007fffff, // subnormals
  0x80008000, 0x80008001, 0x807fffff, 0x80000001,
  0x00800000, 0x00808000, 0x00818000, // smallest normals
  0x7fc00000, 0x7f800001, 0x7fffffff, 0xff800001, 0xffffffff, 0x7fbfffff, // NaNs that naive rounding breaks
];

function randomBitPatterns(n: number, seed: number): number[] {
  const rng = new HostRng(seed);
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = rng.nextUint32();
    // A third of them: low 16 bits exactly at or next to the tie point, to hit ties often.
    const kind = i % 3;
    if (kind === 0) out.push(r);
    else if (kind === 1) out.push(((r & 0xffff0000) | 0x8000) >>> 0);
    else out.push(((r & 0xffff0000) | (0x8000 + (r & 1 ? 1 : -1))) >>> 0);
  }
  return out;
}

/** Checks bf16 bits against the reference for f32 inputs given by their bits. */
function expectBf16Bits(got: Uint16Array, f32BitsIn: number[], what: string, seed?: number): void {
  const tag = seed === undefined ? '' : ` (seed ${seed})`;
  for (let i = 0; i < f32BitsIn.length; i++) {
    const x = f32FromBits(f32BitsIn[i]);
    const hex = (v: number, w: number) => `0x${v.toString(16).padStart(w, '0')}`;
    if (Number.isNaN(x)) {
      if (!isBf16NaN(got[i])) throw new Error(`${what}: NaN ${hex(f32BitsIn[i], 8)} became ${hex(got[i], 4)}, not a NaN${tag}`);
      continue;
    }
    const want = bf16BitsRef(x);
    if (got[i] !== want) {
      throw new Error(`${what}: f32 ${hex(f32BitsIn[i], 8)} (${x}) -> ${hex(got[i], 4)} (${bf16Value(got[i])}), ` +
        `expected ${hex(want, 4)} (${bf16Value(want)})${tag}`);
    }
  }
}

describe('the float64 bf16 reference itself', () => {
  // Hand-derived: bf16 keeps 7 fraction bits, so around 1 the spacing is 2^-7.
  test.each([
    [1, 1],
    [1 + 2 ** -8, 1], // tie, 1 is even
    [1 + 3 * 2 ** -8, 1 + 2 ** -6], // tie, 1 + 2^-7 is odd
    [1 + 2 ** -8 + 2 ** -20, 1 + 2 ** -7], // just above the tie
    [1 + 2 ** -8 - 2 ** -20, 1], // just below it
    [-(1 + 3 * 2 ** -8), -(1 + 2 ** -6)],
    [2 ** -134, 0], // half the smallest subnormal: tie to even (0)
    [3 * 2 ** -134, 2 ** -132], // tie between 1 and 2 subnormal ulps
    [(2 - 2 ** -7) * 2 ** 127, (2 - 2 ** -7) * 2 ** 127], // largest finite
    [(2 - 2 ** -8) * 2 ** 127, Infinity], // tie past the largest finite: the even side is 2^128
    [-1e-50, -0],
  ])('bf16RoundRef(%p) = %p', (x, want) => {
    expect(Object.is(bf16RoundRef(x), want)).toBe(true);
  });
});

describe(`f32 -> bf16 on ${device}`, () => {
  test('cast() matches the reference on every edge case', async () => {
    const x = tensor(f32ArrayFromBits(EDGE_BITS), [EDGE_BITS.length], { device });
    const y = cast(x, 'bf16');
    expectBf16Bits((await y.readRaw()) as Uint16Array, EDGE_BITS, 'cast f32->bf16');
    x.dispose();
    y.dispose();
  });

  test('cast() matches the reference on random bit patterns (all classes, many ties)', async () => {
    const seed = freshSeed();
    const bits = randomBitPatterns(60000, seed);
    const x = tensor(f32ArrayFromBits(bits), [bits.length], { device });
    const y = cast(x, 'bf16');
    expectBf16Bits((await y.readRaw()) as Uint16Array, bits, 'cast f32->bf16', seed);
    x.dispose();
    y.dispose();
  });

  test('tensor(data, {dtype: bf16}) (host conversion) matches the reference and the device cast bit for bit', async () => {
    const seed = freshSeed();
    const bits = [...EDGE_BITS, ...randomBitPatterns(30000, seed)];
    const data = f32ArrayFromBits(bits);
    const hostConverted = tensor(data, [bits.length], { dtype: 'bf16', device });
    const hostBits = (await hostConverted.readRaw()) as Uint16Array;
    expectBf16Bits(hostBits, bits, 'tensor(..., bf16)', seed);
    const x = tensor(data, [bits.length], { device });
    const deviceBits = (await cast(x, 'bf16').readRaw()) as Uint16Array;
    for (let i = 0; i < bits.length; i++) {
      // NaN payloads may differ between conversions; both must be NaN (checked above).
      if (isBf16NaN(hostBits[i]) && isBf16NaN(deviceBits[i])) continue;
      if (hostBits[i] !== deviceBits[i]) {
        throw new Error(`host and device f32->bf16 differ at ${i}: f32 0x${bits[i].toString(16)}: host 0x${hostBits[i].toString(16)}, ` +
          `device 0x${deviceBits[i].toString(16)} (seed ${seed})`);
      }
    }
    hostConverted.dispose();
    x.dispose();
  });

  test('full(shape, value, {dtype: bf16}) rounds the value the same way', async () => {
    const values = [1 + 2 ** -8, 1 + 3 * 2 ** -8, -(1 + 2 ** -8 + 2 ** -20), 3e38, -3.4e38, 2 ** -134, 3 * 2 ** -134, -0, Infinity, NaN];
    for (const v of values) {
      const t = full([3], v, { dtype: 'bf16', device });
      const bits = (await t.readRaw()) as Uint16Array;
      expectBf16Bits(bits, [f32Bits(v), f32Bits(v), f32Bits(v)], `full(${v})`);
      t.dispose();
    }
  });

  test('NaN stays NaN and +-0 keep their sign through read()', async () => {
    const t = tensor(new Float32Array([NaN, -0, 0, -NaN]), [4], { dtype: 'bf16', device });
    const back = await t.read();
    expect(Number.isNaN(back[0])).toBe(true);
    expect(Object.is(back[1], -0)).toBe(true);
    expect(Object.is(back[2], 0)).toBe(true);
    expect(Number.isNaN(back[3])).toBe(true);
    t.dispose();
  });
});

describe(`bf16 -> f32 on ${device}`, () => {
  test('is exact for all 65536 bf16 bit patterns (cast and read())', async () => {
    const patterns = Array.from({ length: 65536 }, (_, i) => i);
    // Upload each pattern as the f32 it is a prefix of (exactly representable), then narrow.
    const wide = tensor(f32ArrayFromBits(patterns.map((b) => (b << 16) >>> 0)), [65536], { device });
    const narrow = cast(wide, 'bf16');
    const narrowBits = (await narrow.readRaw()) as Uint16Array;
    const widenedOnDevice = (await cast(narrow, 'f32').readRaw()) as Float32Array;
    const widenedOnHost = await narrow.read();
    const devBits = new Uint32Array(widenedOnDevice.buffer, widenedOnDevice.byteOffset, 65536);
    const hostBits = new Uint32Array(widenedOnHost.buffer, widenedOnHost.byteOffset, 65536);
    for (const b of patterns) {
      if (isBf16NaN(b)) {
        expect(isBf16NaN(narrowBits[b])).toBe(true);
        expect(Number.isNaN(widenedOnDevice[b]) && Number.isNaN(widenedOnHost[b])).toBe(true);
        continue;
      }
      if (narrowBits[b] !== b) throw new Error(`bf16-exact f32 0x${(b << 16 >>> 0).toString(16)} narrowed to 0x${narrowBits[b].toString(16)}`);
      if (devBits[b] !== (b << 16) >>> 0) throw new Error(`cast bf16->f32 of 0x${b.toString(16)} gave f32 0x${devBits[b].toString(16)}`);
      if (hostBits[b] !== (b << 16) >>> 0) throw new Error(`read() of bf16 0x${b.toString(16)} gave f32 0x${hostBits[b].toString(16)}`);
    }
    wide.dispose();
    narrow.dispose();
  });

  test('bf16 -> bf16 and f32 -> f32 casts copy bits unchanged', async () => {
    const seed = freshSeed();
    const bits = randomBitPatterns(5000, seed).filter((b) => !Number.isNaN(f32FromBits(b)));
    const x = tensor(f32ArrayFromBits(bits), [bits.length], { device });
    const same = cast(x, 'f32');
    expect(Array.from(new Uint32Array(((await same.readRaw()) as Float32Array).buffer))).toEqual(bits);
    const b16 = cast(x, 'bf16');
    const b16again = cast(b16, 'bf16');
    expect(await b16again.readRaw()).toEqual(await b16.readRaw());
    for (const t of [x, same, b16, b16again]) t.dispose();
  });
});
