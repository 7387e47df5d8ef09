// Float64 reference of 'flash-bf16' attention (the definition in
// ../attention_flash_bf16_kernels.cuh) for the emulation harness, with per-element error bounds.
//
// The reference applies the same bf16 roundings in float64. An implementation computes the
// rounded quantities (forward 2^(s2 - M), backward p and ds) in f32 first, so where the exact
// value lies within the f32 computation's error bound of a bf16 rounding midpoint it may round
// the other way: such elements are "near a tie", and each adds (its bound + one bf16 ulp) times
// its multiplier to the allowance of the outputs it feeds. Every other element must round
// exactly as here, so the rest of the tolerance is f32 accumulation error only (about 1e-5
// relative): tight enough that leaving out a rounding fails it (the harness checks that too).
// The bounds are worst-case (f32 sums of n terms: 2n ulp of the sum of magnitudes, twice what
// sequential IEEE summation needs, for the tensor cores' own order), then doubled.
//
// With round_p = false (a control), P and dS are not rounded: the harness expects that to fail.
#ifndef NM_EMULATION_ATTENTION_BF16_REFERENCE_H
#define NM_EMULATION_ATTENTION_BF16_REFERENCE_H

#include <math.h>
#include <stdint.h>

#include <algorithm>
#include <vector>

namespace nm_ref {

constexpr double kU = 1.0 / 16777216.0;  // 2^-24: f32 unit roundoff
constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2 = 0.6931471805599453;

// x rounded to bf16 (8 significant bits, ties to even), in double; normal range only.
inline double bf16_round(double x) {
  if (x == 0.0 || !isfinite(x)) return x;
  int e = 0;
  const double m = frexp(fabs(x), &e);      // |x| = m 2^e, m in [0.5, 1)
  const double scaled = ldexp(m, 8);        // [128, 256): the 8 bits kept are its integer part
  double q = floor(scaled);
  const double rem = scaled - q;
  if (rem > 0.5 || (rem == 0.5 && fmod(q, 2.0) != 0.0)) q += 1.0;
  return copysign(ldexp(q, e - 8), x);
}

// The bf16 spacing at |x| (the larger one when |x| is within 1/64 of the next binade).
inline double bf16_ulp(double x) {
  int e = 0;
  frexp(fabs(x) * (1.0 + 1.0 / 64.0), &e);
  return ldexp(1.0, e - 8);
}

// Distance from |x| to the nearest bf16 rounding midpoint.
inline double tie_distance(double x) {
  if (x == 0.0) return INFINITY;
  int e = 0;
  const double m = frexp(fabs(x), &e);
  const double scaled = ldexp(m, 8);
  return ldexp(fabs(scaled - floor(scaled) - 0.5), e - 8);
}

struct Shape {
  int b, t, heads;
  float scale;
};
constexpr int kD = 64;

// *_tol: the tight per-element bounds; out_mag / mag: the size of each element's terms (sum of
// |terms|; for dq and dk with the dS terms counted as p (|dp| + |delta|), which does not cancel),
// the scale of the bf16-level comparison with exact attention.
struct Forward {
  std::vector<double> out, out_tol, out_mag, lse, lse_tol;
};
struct Backward {
  std::vector<double> dqkv, tol, mag;
};

inline size_t qkv_at(const Shape& s, int b, int i, int part, int h) {
  return ((size_t)(b * s.t + i) * 3 + part) * (size_t)s.heads * kD + (size_t)h * kD;
}
inline size_t out_at(const Shape& s, int b, int i, int h) {
  return (size_t)(b * s.t + i) * s.heads * kD + (size_t)h * kD;
}

// What one (query, key) pair needs from the inputs: the scaled log2 score and its error bound.
struct Score {
  double s2, err;
};
inline Score score(const double* q, const double* k, double scale_log2) {
  double dot = 0.0, mag = 0.0;
  for (int d = 0; d < kD; d++) {
    dot += q[d] * k[d];
    mag += fabs(q[d] * k[d]);
  }
  const double s2 = dot * scale_log2;
  return {s2, scale_log2 * 2.0 * kD * kU * mag + 3.0 * kU * fabs(s2)};
}

// rounded: q, k, v (and dout) rounded to bf16; round_p: P (and dS) rounded too.
inline std::vector<double> prepare(const std::vector<float>& x, bool rounded) {
  std::vector<double> y(x.size());
  for (size_t n = 0; n < x.size(); n++) y[n] = rounded ? bf16_round(x[n]) : (double)x[n];
  return y;
}

inline Forward forward(const std::vector<float>& qkv_f32, const Shape& s, bool rounded,
                       bool round_p) {
  const std::vector<double> x = prepare(qkv_f32, rounded);
  const double sl2 = (double)s.scale * kLog2e;
  Forward f;
  const size_t n_out = (size_t)s.b * s.t * s.heads * kD;
  f.out.assign(n_out, 0.0);
  f.out_tol.assign(n_out, 0.0);
  f.out_mag.assign(n_out, 0.0);
  f.lse.assign((size_t)s.b * s.heads * s.t, 0.0);
  f.lse_tol = f.lse;
  std::vector<Score> sc(s.t);
  std::vector<double> e(s.t), mag(kD), allow(kD);
  for (int b = 0; b < s.b; b++) {
    for (int h = 0; h < s.heads; h++) {
      for (int i = 0; i < s.t; i++) {
        double mx = -INFINITY;
        for (int j = 0; j <= i; j++) {
          sc[j] = score(&x[qkv_at(s, b, i, 0, h)], &x[qkv_at(s, b, j, 1, h)], sl2);
          mx = std::max(mx, sc[j].s2);
        }
        const double m = ceil(mx);
        double l = 0.0, eps_row = 0.0;
        for (int j = 0; j <= i; j++) {
          e[j] = exp2(sc[j].s2 - m);
          l += e[j];
        }
        std::fill(mag.begin(), mag.end(), 0.0);
        std::fill(allow.begin(), allow.end(), 0.0);
        double* o = &f.out[out_at(s, b, i, h)];
        for (int j = 0; j <= i; j++) {
          const double rel = 2.0 * (kLn2 * sc[j].err + 4.0 * kU * (fabs(sc[j].s2) + fabs(m) + 1.0) + kU);
          eps_row = std::max(eps_row, rel);
          const double err = rel * e[j];
          const double w = round_p ? bf16_round(e[j]) : e[j];
          const bool near = round_p && tie_distance(e[j]) <= err;
          const double* v = &x[qkv_at(s, b, j, 2, h)];
          for (int d = 0; d < kD; d++) {
            o[d] += w * v[d];
            mag[d] += fabs(w * v[d]);
            if (near) allow[d] += (err + bf16_ulp(e[j] + err)) * fabs(v[d]);
          }
        }
        double* tol = &f.out_tol[out_at(s, b, i, h)];
        const double acc = 2.0 * (i + 1 + 8) * kU;
        for (int d = 0; d < kD; d++) {
          o[d] /= l;
          f.out_mag[out_at(s, b, i, h) + d] = mag[d] / l;
          tol[d] = (eps_row + acc) * mag[d] / l + allow[d] / l;
        }
        const size_t li = ((size_t)b * s.heads + h) * s.t + i;
        const double lse2 = m + log2(l);
        f.lse[li] = lse2 * kLn2;
        const double lse2_err = eps_row / kLn2 + (i + 5) * kU / kLn2 + 4.0 * kU * (fabs(lse2) + 1.0);
        f.lse_tol[li] = kLn2 * lse2_err + 2.0 * kU * fabs(f.lse[li]);
      }
    }
  }
  return f;
}

// The backward as a function of its inputs: qkv, dout and the out and lse it is given (the
// implementation's own forward results, f32), so their errors are not part of the bounds.
inline Backward backward(const std::vector<float>& qkv_f32, const std::vector<float>& dout_f32,
                         const std::vector<float>& out_f32, const std::vector<float>& lse_f32,
                         const Shape& s, bool rounded, bool round_p) {
  const std::vector<double> x = prepare(qkv_f32, rounded);
  const std::vector<double> g = prepare(dout_f32, rounded);
  const double sl2 = (double)s.scale * kLog2e;
  const double scale = s.scale;
  Backward r;
  r.dqkv.assign(qkv_f32.size(), 0.0);
  std::vector<double> mag(qkv_f32.size(), 0.0), allow(qkv_f32.size(), 0.0);
  r.mag.assign(qkv_f32.size(), 0.0);
  std::vector<int> terms(qkv_f32.size(), 0);
  for (int b = 0; b < s.b; b++) {
    for (int h = 0; h < s.heads; h++) {
      for (int i = 0; i < s.t; i++) {
        const size_t li = ((size_t)b * s.heads + h) * s.t + i;
        const double* go = &g[out_at(s, b, i, h)];
        const float* oi = &out_f32[out_at(s, b, i, h)];
        double delta = 0.0, delta_mag = 0.0;
        for (int d = 0; d < kD; d++) {
          delta += go[d] * oi[d];
          delta_mag += fabs(go[d] * oi[d]);
        }
        // The implementation may sum in f32 (the CPU does not; the kernel uses double).
        const double delta_err = 2.0 * kD * kU * delta_mag;
        const double lse2 = (double)lse_f32[li] * kLog2e;
        const double lse2_err = 2.0 * kU * fabs(lse2);  // lse * log2(e) rounded in f32
        const size_t qi = qkv_at(s, b, i, 0, h);
        for (int j = 0; j <= i; j++) {
          const size_t kj = qkv_at(s, b, j, 1, h), vj = qkv_at(s, b, j, 2, h);
          const Score sc = score(&x[qi], &x[kj], sl2);
          double dp = 0.0, dp_mag = 0.0;
          for (int d = 0; d < kD; d++) {
            dp += go[d] * x[vj + d];
            dp_mag += fabs(go[d] * x[vj + d]);
          }
          const double p = exp2(sc.s2 - lse2);
          const double p_err = 2.0 * p * (kLn2 * (sc.err + lse2_err + 2.0 * kU * (fabs(sc.s2) + fabs(lse2))) + 4.0 * kU);
          const double ds = p * (dp - delta);
          const double ds_err = 2.0 * (p_err * fabs(dp - delta) + p * (2.0 * kD * kU * dp_mag + delta_err) + 2.0 * kU * fabs(ds));
          const double pr = round_p ? bf16_round(p) : p;
          const double dsr = round_p ? bf16_round(ds) : ds;
          const double p_allow = round_p && tie_distance(p) <= p_err ? p_err + bf16_ulp(p + p_err) : 0.0;
          const double ds_allow = round_p && tie_distance(ds) <= ds_err ? ds_err + bf16_ulp(fabs(ds) + ds_err) : 0.0;
          for (int d = 0; d < kD; d++) {
            r.dqkv[vj + d] += pr * go[d];  // dV_j
            mag[vj + d] += fabs(pr * go[d]);
            allow[vj + d] += p_allow * fabs(go[d]);
            r.dqkv[kj + d] += scale * dsr * x[qi + d];  // dK_j
            mag[kj + d] += fabs(scale * dsr * x[qi + d]);
            allow[kj + d] += scale * ds_allow * fabs(x[qi + d]);
            r.dqkv[qi + d] += scale * dsr * x[kj + d];  // dQ_i
            mag[qi + d] += fabs(scale * dsr * x[kj + d]);
            allow[qi + d] += scale * ds_allow * fabs(x[kj + d]);
            const double ds_mag = scale * p * (fabs(dp) + fabs(delta));
            r.mag[vj + d] += fabs(p * go[d]);
            r.mag[kj + d] += ds_mag * fabs(x[qi + d]);
            r.mag[qi + d] += ds_mag * fabs(x[kj + d]);
            terms[vj + d]++;
            terms[kj + d]++;
            terms[qi + d]++;
          }
        }
      }
    }
  }
  r.tol.resize(r.dqkv.size());
  for (size_t n = 0; n < r.dqkv.size(); n++) {
    r.tol[n] = 2.0 * (terms[n] + 8) * kU * mag[n] + allow[n] + 2.0 * kU * fabs(r.dqkv[n]);
  }
  return r;
}

}  // namespace nm_ref

#endif  // NM_EMULATION_ATTENTION_BF16_REFERENCE_H
