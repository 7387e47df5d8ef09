// Float64 references and comparison helpers for the test suites. Nothing here calls the code
// under test: bf16 rounding is re-derived from first principles (exact float64 arithmetic on the
// two bf16 neighbours of a value), not by the bit trick lib/ and csrc/ use.

// Global lookups (Math, Number, Object) are slow inside jest's vm context (the global object
// has interceptors), so the hot loops below use these module-local aliases.
const { abs, floor, fround, imul, log2, max } = Math;
const MIN_VALUE = Number.MIN_VALUE;
const isNaN = Number.isNaN;
const isFinite = Number.isFinite;
const objectIs = Object.is;

/** Host-side test data: mulberry32, independent of lib/random.ts. */
export class HostRng {
  private state: number;

  constructor(seed: number) {
    this.state = (seed ^ 0x5bd1e995) >>> 0;
  }

  /** A uniform uint32. */
  nextUint32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = imul(t ^ (t >>> 15), t | 1);
    t ^= t + imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform in [low, high), never exactly 0 when low < 0 < high is not asked for. */
  uniform(low: number, high: number): number {
    return low + (high - low) * this.next();
  }

  /** An integer in [low, high]. */
  int(low: number, high: number): number {
    return low + floor(this.next() * (high - low + 1));
  }

  /** n non-zero values in +-[0.25, 2) with random signs, as f32. */
  nonZeroF32(n: number): Float32Array {
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = (this.next() < 0.5 ? -1 : 1) * this.uniform(0.25, 2);
    return out;
  }
}

// ---- bf16 ------------------------------------------------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The IEEE bits of Math.fround(x). */
export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0];
}

/** The f32 whose bits are `bits`. */
export function f32FromBits(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0];
}

/** Float32Array holding exactly the given bit patterns (NaN payloads preserved). */
export function f32ArrayFromBits(bits: ArrayLike<number>): Float32Array {
  return new Float32Array(Uint32Array.from(bits).buffer);
}

/** The value of a bf16 bit pattern (exact: bf16 is a prefix of f32). */
export function bf16Value(bits: number): number {
  return f32FromBits((bits & 0xffff) << 16);
}

export function isBf16NaN(bits: number): boolean {
  return (bits & 0x7f80) === 0x7f80 && (bits & 0x007f) !== 0;
}

const BF16_MANTISSA_BITS = 7;
const BF16_MIN_NORMAL_EXP = -126;

/**
 * x rounded to bf16 (round to nearest, ties to even), computed as a float64 value: find the
 * bf16 spacing at |x|, the two neighbours lo <= |x| < lo + ulp (exact: ulp is a power of two),
 * take the nearer, and on a tie the one with an even significand. Overflow past the largest
 * finite bf16 (by at least half an ulp) gives infinity, as IEEE rounding does.
 */
export function bf16RoundRef(x: number): number {
  if (isNaN(x)) return NaN;
  if (x === 0 || !isFinite(x)) return x;
  const sign = x < 0 ? -1 : 1;
  const a = abs(x);
  let e = floor(log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (max(e, BF16_MIN_NORMAL_EXP) - BF16_MANTISSA_BITS);
  const q = floor(a / ulp); // exact: a / ulp scales by a power of two
  const lo = q * ulp;
  const rem = a - lo; // exact
  let r: number;
  if (rem * 2 < ulp) r = lo;
  else if (rem * 2 > ulp) r = lo + ulp;
  else r = q % 2 === 0 ? lo : lo + ulp;
  if (r >= 2 ** 128) return sign * Infinity;
  return sign * r; // -0 when a negative value rounds to zero
}

/** The bf16 bits of bf16RoundRef(x) (for NaN: any quiet NaN is acceptable; returns 0x7fc0). */
export function bf16BitsRef(x: number): number {
  if (isNaN(x)) return 0x7fc0;
  const r = bf16RoundRef(x);
  const bits = f32Bits(r);
  if ((bits & 0xffff) !== 0) throw new Error(`bf16BitsRef: ${r} is not a bf16 value`);
  return bits >>> 16;
}

/** Distance in bf16 ulps between two bf16 bit patterns (ordered across zero; NaN -> Infinity). */
export function bf16UlpDistance(a: number, b: number): number {
  if (isBf16NaN(a) || isBf16NaN(b)) return isBf16NaN(a) && isBf16NaN(b) ? 0 : Infinity;
  const ordered = (v: number) => (v & 0x8000 ? -(v & 0x7fff) : v & 0x7fff);
  return abs(ordered(a) - ordered(b));
}

/** x rounded to f32 and then to bf16: the value an f32 -> bf16 cast produces. */
export function f32ThenBf16(x: number): number {
  return bf16RoundRef(fround(x));
}

// ---- comparison ------------------------------------------------------------------------------

export interface CloseOptions {
  /** What is being compared, for the failure message. */
  what: string;
  /** Seed(s) of the inputs, for the failure message. */
  seed?: number | number[];
  /** Allowed |actual - expected| is atol + rtol * scale[i] (scale defaults to |expected[i]|). */
  rtol?: number;
  atol?: number;
  scale?: ArrayLike<number> | number;
}

/**
 * Checks |actual[i] - expected[i]| <= atol + rtol * scale[i] for every i. On failure throws
 * with the max abs and rel errors, the index of the worst offender and the seed.
 * NaN must match NaN; infinities must match exactly.
 */
export function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, opts: CloseOptions): void {
  const rtol = opts.rtol ?? 0;
  const atol = opts.atol ?? 0;
  const seed = opts.seed === undefined ? '' : ` (seed ${Array.isArray(opts.seed) ? opts.seed.join(', ') : opts.seed})`;
  if (actual.length !== expected.length) {
    throw new Error(`${opts.what}: got ${actual.length} values, expected ${expected.length}${seed}`);
  }
  let maxAbs = 0;
  let maxAbsAt = -1;
  let maxRel = 0;
  let worst = -1;
  let worstRatio = 0;
  let failures = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (isNaN(e) || isNaN(a) || !isFinite(e) || !isFinite(a)) {
      if (!objectIs(a, e) && !(isNaN(a) && isNaN(e))) {
        failures++;
        if (worstRatio !== Infinity) {
          worst = i;
          worstRatio = Infinity;
        }
      }
      continue;
    }
    const err = abs(a - e);
    const s = opts.scale === undefined ? abs(e) : typeof opts.scale === 'number' ? opts.scale : opts.scale[i];
    const allowed = atol + rtol * s;
    const rel = err / max(abs(e), MIN_VALUE);
    if (err > maxAbs) {
      maxAbs = err;
      maxAbsAt = i;
    }
    if (e !== 0 && rel > maxRel) maxRel = rel;
    if (err > allowed) {
      failures++;
      const ratio = allowed === 0 ? Infinity : err / allowed;
      if (ratio > worstRatio) {
        worstRatio = ratio;
        worst = i;
      }
    }
  }
  if (failures > 0) {
    throw new Error(
      `${opts.what}: ${failures} of ${actual.length} values outside tolerance (atol ${atol}, rtol ${rtol})${seed}; ` +
        `worst at index ${worst}: got ${actual[worst]}, expected ${expected[worst]}; ` +
        `max abs error ${maxAbs.toExponential(3)} at index ${maxAbsAt}, max rel error ${maxRel.toExponential(3)}`,
    );
  }
}

/** Bitwise equality of two arrays, reporting the first difference and the seed. */
export function expectSameBits(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, seed?: number): void {
  const tag = seed === undefined ? '' : ` (seed ${seed})`;
  if (actual.length !== expected.length) throw new Error(`${what}: got ${actual.length} values, expected ${expected.length}${tag}`);
  for (let i = 0; i < actual.length; i++) {
    if (!objectIs(actual[i], expected[i]) && !(isNaN(actual[i]) && isNaN(expected[i]))) {
      throw new Error(`${what}: first difference at index ${i}: got ${actual[i]}, expected ${expected[i]}${tag}`);
    }
  }
}

// ---- float64 references --------------------------------------------------------------------

export interface MatmulRefArgs {
  m: number; n: number; k: number;
  transA?: boolean; transB?: boolean;
  batch?: number;
}

/**
 * op(A[b]) @ op(B[b]) in float64 for row-major A, B (A is [k, m] when transA, B is [n, k] when
 * transB). Returns the product and sum_k |op(A)_ik| |op(B)_kj| per entry (the scale of the
 * rounding error of any summation order).
 */
export function matmulRef(a: ArrayLike<number>, b: ArrayLike<number>, args: MatmulRefArgs): { value: Float64Array; absScale: Float64Array } {
  const { m, n, k } = args;
  const batch = args.batch ?? 1;
  const value = new Float64Array(batch * m * n);
  const absScale = new Float64Array(batch * m * n);
  const opA = new Float64Array(m * k);
  const opB = new Float64Array(k * n);
  for (let bi = 0; bi < batch; bi++) {
    const aBase = bi * m * k;
    const bBase = bi * k * n;
    for (let i = 0; i < m; i++) {
      for (let p = 0; p < k; p++) opA[i * k + p] = a[aBase + (args.transA ? p * m + i : i * k + p)];
    }
    for (let p = 0; p < k; p++) {
      for (let j = 0; j < n; j++) opB[p * n + j] = b[bBase + (args.transB ? j * k + p : p * n + j)];
    }
    const cBase = bi * m * n;
    for (let i = 0; i < m; i++) {
      for (let p = 0; p < k; p++) {
        const av = opA[i * k + p];
        const aa = abs(av);
        const row = p * n;
        const out = cBase + i * n;
        for (let j = 0; j < n; j++) {
          const bv = opB[row + j];
          value[out + j] += av * bv;
          absScale[out + j] += aa * abs(bv);
        }
      }
    }
  }
  return { value, absScale };
}

/** Sum (or sum of squares) in float64, with sum |term| for the tolerance. */
export function sumRef(x: ArrayLike<number>, squares = false): { value: number; absScale: number } {
  let value = 0;
  let absScale = 0;
  for (let i = 0; i < x.length; i++) {
    const t = squares ? x[i] * x[i] : x[i];
    value += t;
    absScale += abs(t);
  }
  return { value, absScale };
}

/** Per-element float64 map. */
export function mapRef(n: number, f: (i: number) => number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = f(i);
  return out;
}

/** Central difference of f at x[idx] (float64 array, restored afterwards). */
export function centralDiff(f: (x: Float64Array) => number, x: Float64Array, idx: number, h: number): number {
  const saved = x[idx];
  x[idx] = saved + h;
  const up = f(x);
  x[idx] = saved - h;
  const down = f(x);
  x[idx] = saved;
  return (up - down) / (2 * h);
}
