// Deterministic random samples on the host, so a seed gives the same tensor on every device.
// Generator: xoshiro128** (Blackman & Vigna; 2^128 - 1 period, passes BigCrush), its 128-bit
// state seeded from the integer seed by splitmix32. All arithmetic is 32-bit (Math.imul), which
// keeps generation fast enough for model initialisation (~10 ns per sample).

function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) | 0;
  let z = state.s;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export class Xoshiro128 {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) throw new TypeError(`seed: expected an integer, got ${seed}`);
    // The seed's two 32-bit words (two's complement, so -1 and 2^53-1 differ) each drive their
    // own splitmix32 stream. splitmix32's output is a bijection of its state, so distinct seeds
    // always give distinct generator states.
    const wide = BigInt.asUintN(64, BigInt(seed));
    const low = { s: Number(wide & 0xffffffffn) | 0 };
    const high = { s: Number(wide >> 32n) ^ 0x6a09e667 };
    this.a = splitmix32(low);
    this.b = splitmix32(high);
    this.c = splitmix32(low);
    this.d = splitmix32(high);
    if ((this.a | this.b | this.c | this.d) === 0) this.d = 1; // xoshiro's one forbidden state
  }

  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** A uniform double in (0, 1]: 53 random bits, never 0 (Box-Muller takes its log). */
  nextUnit(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo + 1) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** n samples of N(mean, std^2) from seed (an integer), as a Float32Array. */
export function normalSamples(n: number, seed: number, std = 1, mean = 0): Float32Array {
  const rng = new Xoshiro128(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i += 2) {
    const radius = Math.sqrt(-2 * Math.log(rng.nextUnit()));
    const angle = 2 * Math.PI * rng.nextUnit();
    out[i] = mean + std * radius * Math.cos(angle);
    if (i + 1 < n) out[i + 1] = mean + std * radius * Math.sin(angle);
  }
  return out;
}

/** n samples of U[low, high) from seed, as a Float32Array. */
export function uniformSamples(n: number, seed: number, low = 0, high = 1): Float32Array {
  const rng = new Xoshiro128(seed);
  const out = new Float32Array(n);
  // A double just below `high` can round up to it in f32: clamp to the largest f32 below high.
  const top = largestF32Below(high);
  for (let i = 0; i < n; i++) {
    const v = Math.fround(low + (high - low) * (1 - rng.nextUnit()));
    out[i] = v < high ? v : top;
  }
  return out;
}

/** The largest f32 strictly below x (x finite). */
function largestF32Below(x: number): number {
  const f = new Float32Array([x]); // x rounded to f32
  if (f[0] < x) return f[0];
  if (f[0] === 0) return -1.401298464324817e-45; // the negative subnormal closest to 0
  const bits = new Int32Array(f.buffer);
  bits[0] += f[0] > 0 ? -1 : 1; // one ulp toward -infinity
  return f[0];
}
