// Float64 references of 'flash-bf16' attention (definition: csrc/core/backend.h) for the tests:
// the same bf16 roundings in float64, with a per-element error bound, and exact attention.
// A port of csrc/cuda/emulation/attention_bf16_reference.h (which checks the CUDA kernels in
// emulation); see there for the reasoning. In short: an implementation computes the rounded
// quantities (forward 2^(s2 - M), backward p and ds) in f32 first, so where the exact value lies
// within that computation's error bound of a bf16 rounding midpoint it may round the other way;
// such "near-tie" elements add (bound + one bf16 ulp) times their multiplier to the allowance of
// what they feed. All other elements must round exactly as here, so the rest of the bound is f32
// accumulation error only (worst case, doubled). Qkv layout [B, T, 3, H, D], out [B, T, H, D],
// lse [B, H, T].
import { bf16RoundRef } from './reference';

const { abs, ceil, floor, log2, max, pow } = Math;
const U = 2 ** -24;
const LOG2E = 1.4426950408889634;
const LN2 = 0.6931471805599453;

export interface AttnShape {
  b: number;
  t: number;
  heads: number;
  d: number;
}

/** The bf16 spacing at |x| (the larger one within 1/64 of the next binade). */
function bf16Ulp(x: number): number {
  return pow(2, floor(log2(abs(x) * (1 + 1 / 64))) - 7);
}

/** Distance from |x| to the nearest bf16 rounding midpoint. */
function tieDistance(x: number): number {
  if (x === 0) return Infinity;
  const a = abs(x);
  let e = floor(log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (e - 7);
  const lo = floor(a / ulp) * ulp;
  return abs(a - (lo + ulp / 2));
}

const qkvAt = (s: AttnShape, b: number, i: number, part: number, h: number): number => ((b * s.t + i) * 3 + part) * s.heads * s.d + h * s.d;
const outAt = (s: AttnShape, b: number, i: number, h: number): number => (b * s.t + i) * s.heads * s.d + h * s.d;

function prepare(x: ArrayLike<number>, rounded: boolean): Float64Array {
  const y = new Float64Array(x.length);
  for (let n = 0; n < x.length; n++) y[n] = rounded ? bf16RoundRef(x[n]) : x[n];
  return y;
}

export interface Forward64 {
  out: Float64Array;
  /** Tight bound per out element (same-rounding reference only). */
  outTol: Float64Array;
  /** Size of each out element's terms: the scale of bf16-level comparisons. */
  outMag: Float64Array;
  lse: Float64Array;
  lseTol: Float64Array;
}

export interface Backward64 {
  dqkv: Float64Array;
  tol: Float64Array;
  /** Size of each element's terms (dS terms counted as p (|dp| + |delta|), which do not cancel). */
  mag: Float64Array;
}

/**
 * rounded: q, k, v rounded to bf16; roundP: the probabilities rounded too (the definition when
 * both are true; rounded = roundP = false is exact attention).
 */
export function forwardBf16Ref(qkv: ArrayLike<number>, s: AttnShape, scale: number, rounded = true, roundP = true): Forward64 {
  const x = prepare(qkv, rounded);
  const D = s.d;
  const sl2 = scale * LOG2E;
  const nOut = s.b * s.t * s.heads * D;
  const f: Forward64 = {
    out: new Float64Array(nOut),
    outTol: new Float64Array(nOut),
    outMag: new Float64Array(nOut),
    lse: new Float64Array(s.b * s.heads * s.t),
    lseTol: new Float64Array(s.b * s.heads * s.t),
  };
  const s2 = new Float64Array(s.t);
  const s2err = new Float64Array(s.t);
  const e = new Float64Array(s.t);
  const mag = new Float64Array(D);
  const allow = new Float64Array(D);
  for (let b = 0; b < s.b; b++) {
    for (let h = 0; h < s.heads; h++) {
      for (let i = 0; i < s.t; i++) {
        const qi = qkvAt(s, b, i, 0, h);
        let mx = -Infinity;
        for (let j = 0; j <= i; j++) {
          const kj = qkvAt(s, b, j, 1, h);
          let dot = 0;
          let m = 0;
          for (let d = 0; d < D; d++) {
            const p = x[qi + d] * x[kj + d];
            dot += p;
            m += abs(p);
          }
          s2[j] = dot * sl2;
          s2err[j] = sl2 * 2 * D * U * m + 3 * U * abs(s2[j]);
          mx = max(mx, s2[j]);
        }
        const M = ceil(mx);
        let l = 0;
        for (let j = 0; j <= i; j++) {
          e[j] = 2 ** (s2[j] - M);
          l += e[j];
        }
        mag.fill(0);
        allow.fill(0);
        let epsRow = 0;
        const oi = outAt(s, b, i, h);
        for (let j = 0; j <= i; j++) {
          const rel = 2 * (LN2 * s2err[j] + 4 * U * (abs(s2[j]) + abs(M) + 1) + U);
          epsRow = max(epsRow, rel);
          const err = rel * e[j];
          const w = roundP ? bf16RoundRef(e[j]) : e[j];
          const near = roundP && tieDistance(e[j]) <= err;
          const vj = qkvAt(s, b, j, 2, h);
          for (let d = 0; d < D; d++) {
            f.out[oi + d] += w * x[vj + d];
            mag[d] += abs(w * x[vj + d]);
            if (near) allow[d] += (err + bf16Ulp(e[j] + err)) * abs(x[vj + d]);
          }
        }
        const acc = 2 * (i + 1 + 8) * U;
        for (let d = 0; d < D; d++) {
          f.out[oi + d] /= l;
          f.outMag[oi + d] = mag[d] / l;
          f.outTol[oi + d] = ((epsRow + acc) * mag[d]) / l + allow[d] / l;
        }
        const li = (b * s.heads + h) * s.t + i;
        const lse2 = M + log2(l);
        f.lse[li] = lse2 * LN2;
        const lse2Err = epsRow / LN2 + ((i + 5) * U) / LN2 + 4 * U * (abs(lse2) + 1);
        f.lseTol[li] = LN2 * lse2Err + 2 * U * abs(f.lse[li]);
      }
    }
  }
  return f;
}

/** The backward as a function of its inputs (out and lse as the implementation produced them). */
export function backwardBf16Ref(qkv: ArrayLike<number>, dout: ArrayLike<number>, out: ArrayLike<number>, lse: ArrayLike<number>,
  s: AttnShape, scale: number, rounded = true, roundP = true): Backward64 {
  const x = prepare(qkv, rounded);
  const g = prepare(dout, rounded);
  const D = s.d;
  const sl2 = scale * LOG2E;
  const n = qkv.length;
  const r: Backward64 = { dqkv: new Float64Array(n), tol: new Float64Array(n), mag: new Float64Array(n) };
  const mag = new Float64Array(n);
  const allow = new Float64Array(n);
  const terms = new Float64Array(n);
  for (let b = 0; b < s.b; b++) {
    for (let h = 0; h < s.heads; h++) {
      for (let i = 0; i < s.t; i++) {
        const li = (b * s.heads + h) * s.t + i;
        const gi = outAt(s, b, i, h);
        let delta = 0;
        let deltaMag = 0;
        for (let d = 0; d < D; d++) {
          delta += g[gi + d] * out[gi + d];
          deltaMag += abs(g[gi + d] * out[gi + d]);
        }
        const deltaErr = 2 * D * U * deltaMag;
        const lse2 = lse[li] * LOG2E;
        const lse2Err = 2 * U * abs(lse2);
        const qi = qkvAt(s, b, i, 0, h);
        for (let j = 0; j <= i; j++) {
          const kj = qkvAt(s, b, j, 1, h);
          const vj = kj + s.heads * D;
          let dot = 0;
          let dotMag = 0;
          let dp = 0;
          let dpMag = 0;
          for (let d = 0; d < D; d++) {
            const a = x[qi + d] * x[kj + d];
            dot += a;
            dotMag += abs(a);
            const c = g[gi + d] * x[vj + d];
            dp += c;
            dpMag += abs(c);
          }
          const s2 = dot * sl2;
          const s2Err = sl2 * 2 * D * U * dotMag + 3 * U * abs(s2);
          const p = 2 ** (s2 - lse2);
          const pErr = 2 * p * (LN2 * (s2Err + lse2Err + 2 * U * (abs(s2) + abs(lse2))) + 4 * U);
          const ds = p * (dp - delta);
          const dsErr = 2 * (pErr * abs(dp - delta) + p * (2 * D * U * dpMag + deltaErr) + 2 * U * abs(ds));
          const pr = roundP ? bf16RoundRef(p) : p;
          const dsr = roundP ? bf16RoundRef(ds) : ds;
          const pAllow = roundP && tieDistance(p) <= pErr ? pErr + bf16Ulp(p + pErr) : 0;
          const dsAllow = roundP && tieDistance(ds) <= dsErr ? dsErr + bf16Ulp(abs(ds) + dsErr) : 0;
          const dsMag = scale * p * (abs(dp) + abs(delta));
          for (let d = 0; d < D; d++) {
            r.dqkv[vj + d] += pr * g[gi + d];
            mag[vj + d] += abs(pr * g[gi + d]);
            allow[vj + d] += pAllow * abs(g[gi + d]);
            r.mag[vj + d] += abs(p * g[gi + d]);
            r.dqkv[kj + d] += scale * dsr * x[qi + d];
            mag[kj + d] += abs(scale * dsr * x[qi + d]);
            allow[kj + d] += scale * dsAllow * abs(x[qi + d]);
            r.mag[kj + d] += dsMag * abs(x[qi + d]);
            r.dqkv[qi + d] += scale * dsr * x[kj + d];
            mag[qi + d] += abs(scale * dsr * x[kj + d]);
            allow[qi + d] += scale * dsAllow * abs(x[kj + d]);
            r.mag[qi + d] += dsMag * abs(x[kj + d]);
            terms[vj + d]++;
            terms[kj + d]++;
            terms[qi + d]++;
          }
        }
      }
    }
  }
  for (let k = 0; k < n; k++) r.tol[k] = 2 * (terms[k] + 8) * U * mag[k] + allow[k] + 2 * U * abs(r.dqkv[k]);
  return r;
}

/** ||actual - expected||_F / ||mag||_F over the elements where pick(k) holds. */
export function relErrOverMag(actual: ArrayLike<number>, expected: ArrayLike<number>, mag: ArrayLike<number>, pick: (k: number) => boolean = () => true): number {
  let num = 0;
  let den = 0;
  for (let k = 0; k < expected.length; k++) {
    if (!pick(k)) continue;
    const d = actual[k] - expected[k];
    num += d * d;
    den += mag[k] * mag[k];
  }
  return den === 0 ? Math.sqrt(num) : Math.sqrt(num / den);
}

/** How many elements (where pick(k) holds) are outside |actual - expected| <= tol. */
export function countOutside(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: ArrayLike<number>, pick: (k: number) => boolean = () => true): { bad: number; n: number; worst: number; worstAt: number } {
  let bad = 0;
  let n = 0;
  let worst = 0;
  let worstAt = -1;
  for (let k = 0; k < expected.length; k++) {
    if (!pick(k)) continue;
    n++;
    const err = abs(actual[k] - expected[k]);
    const ratio = Number.isNaN(err) ? Infinity : err / tol[k];
    if (!(err <= tol[k])) bad++;
    if (ratio > worst || Number.isNaN(ratio)) {
      worst = ratio;
      worstAt = k;
    }
  }
  return { bad, n, worst, worstAt };
}
