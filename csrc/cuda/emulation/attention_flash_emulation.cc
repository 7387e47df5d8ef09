// Emulation harness of the f32 'flash' attention kernels: compiles the real kernel header
// (../attention_flash_kernels.cuh) with g++ against the host shim, runs forward and backward on
// the emulated "GPU" for head dims 16, 32, 64 and several T, and compares with exact causal
// attention in float64. Exit status 0 when everything matches, 1 otherwise.
//
//   g++ -O2 -std=c++20 -pthread -Wno-unknown-pragmas
//       csrc/cuda/emulation/attention_flash_emulation.cc -o emu && ./emu [seed]
//
// Run by test/attention-emulation.test.ts. Per shape:
//   1. out, lse, dq, dk, dv element by element: |got - exact| <= kRtol * mag, where mag is the
//      size of the element's terms (out_id: sum_j p_ij |v_jd|; dq_id: scale * sum_j |ds|_ij
//      |k_jd| with |ds|_ij = p_ij (sum_d |dout_i||v_j| + sum_d |dout_i| mag(out_i)); lse_i: the
//      largest sum_d |scale q_i k_j| + |lse_i|), so elements whose terms cancel are measured
//      against their terms, not against ~0;
//   2. the relative Frobenius error ||got - exact|| / ||mag|| per tensor is printed;
//   3. determinism: a second forward + backward must be bit-identical to the first.
// Launch arguments mirror model_attention_flash.cu (same tiles, same block sizes, same scale).
// The delta = rowsum(dout * out) input of the backward kernels comes from the emulated
// row_dot_kernel (launched on 2 blocks, so its grid-stride loop runs several rows per warp), and
// is checked against a host float64 sum of the kernel's f32 out first.
#define NM_CUDA_EMULATION 1
#include "cuda_host_shim.h"
// (the shim must come first)
#include "../attention_flash_kernels.cuh"

#include "harness_rng.h"
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace ff = nm_cuda::flash_f32;

namespace {

constexpr double kRtol = 2e-5;  // f32-level, relative to each element's terms

struct Shape {
  int b, heads, t, hd;
};

// ---- the emulated launches (as model_attention_flash.cu does them) --------------------------

template <int HD>
void emulated_forward(float* out, float* lse, const float* qkv, const Shape& s, float scale) {
  const int tiles = (s.t + ff::kFwdRows - 1) / ff::kFwdRows;
  const unsigned blocks = (unsigned)(s.b * s.heads * tiles);
  const float scale_log2 = (float)((double)scale * 1.4426950408889634);
  nm_emu::launch(ff::flash_forward_kernel<HD>, dim3(blocks), dim3(ff::kFwdThreads), 0, out, lse,
                 qkv, s.t, s.heads, scale_log2, tiles);
}

template <int HD>
void emulated_backward(float* dqkv, const float* dout, const float* qkv, const float* lse,
                       const float* delta, const Shape& s, float scale) {
  const int tiles = (s.t + ff::kBwdTile - 1) / ff::kBwdTile;
  const unsigned blocks = (unsigned)(s.b * s.heads * tiles);
  nm_emu::launch(ff::flash_backward_kv_kernel<HD>, dim3(blocks), dim3(ff::kBwdThreads), 0, dqkv,
                 dout, qkv, lse, delta, s.t, s.heads, scale, tiles);
  nm_emu::launch(ff::flash_backward_q_kernel<HD>, dim3(blocks), dim3(ff::kBwdThreads), 0, dqkv,
                 dout, qkv, lse, delta, s.t, s.heads, scale, tiles);
}

// delta_i = sum_d dout_id * out_id per (batch, head, row), [b][h][t] as the kernels read it:
// the host float64 version the emulated row_dot_kernel is checked against.
std::vector<float> host_row_dot(const std::vector<float>& dout, const std::vector<float>& out,
                                const Shape& s) {
  std::vector<float> delta((size_t)s.b * s.heads * s.t);
  const size_t c = (size_t)s.heads * s.hd;
  for (int b = 0; b < s.b; b++)
    for (int h = 0; h < s.heads; h++)
      for (int i = 0; i < s.t; i++) {
        double acc = 0.0;
        const size_t row = ((size_t)b * s.t + i) * c + (size_t)h * s.hd;
        for (int d = 0; d < s.hd; d++) acc += (double)dout[row + d] * out[row + d];
        delta[((size_t)b * s.heads + h) * s.t + i] = (float)acc;
      }
  return delta;
}

struct Result {
  std::vector<float> out, lse, dqkv;
};

template <int HD>
Result run_kernels(const std::vector<float>& qkv, const std::vector<float>& dout, const Shape& s,
                   float scale) {
  const size_t n_out = dout.size(), n_lse = (size_t)s.b * s.heads * s.t;
  // NaN-filled outputs: anything the kernels do not write fails the comparison.
  Result r{std::vector<float>(n_out, NAN), std::vector<float>(n_lse, NAN),
           std::vector<float>(qkv.size(), NAN)};
  emulated_forward<HD>(r.out.data(), r.lse.data(), qkv.data(), s, scale);
  const int64_t rows = (int64_t)s.b * s.heads * s.t;
  std::vector<float> delta((size_t)rows, NAN);
  nm_emu::launch(ff::row_dot_kernel, dim3(2), dim3(ff::kRowDotThreads), 0, delta.data(), dout.data(),
                 r.out.data(), rows, (int64_t)s.t, (int64_t)s.heads, (int64_t)s.hd);
  const std::vector<float> expected = host_row_dot(dout, r.out, s);
  for (size_t i = 0; i < delta.size(); i++) {
    // Both sum exact f32 products in double (in different orders) and round once: equal up to
    // the rare double-rounding tie, hence one f32 ulp of slack.
    if (!(std::fabs(delta[i] - expected[i]) <= 1.2e-7f * std::fabs(expected[i]) + 1e-30f)) {
      std::fprintf(stderr, "row_dot_kernel: delta[%zu] = %.9g, expected %.9g\n", i, delta[i], expected[i]);
      std::exit(1);
    }
  }
  emulated_backward<HD>(r.dqkv.data(), dout.data(), qkv.data(), r.lse.data(), delta.data(), s,
                        scale);
  return r;
}

Result run_kernels_hd(const std::vector<float>& qkv, const std::vector<float>& dout,
                      const Shape& s, float scale) {
  switch (s.hd) {
    case 16: return run_kernels<16>(qkv, dout, s, scale);
    case 32: return run_kernels<32>(qkv, dout, s, scale);
    case 64: return run_kernels<64>(qkv, dout, s, scale);
  }
  nm_emu::fail("unsupported head dim");
}

// ---- the float64 reference: exact causal attention and the size of each element's terms -----

struct Reference {
  std::vector<double> out, out_mag, lse, lse_mag, dqkv, dqkv_mag;
  double mean_row_max_p = 0.0;  // how peaked the softmax rows are (1/T-ish would be uniform)
};

Reference reference(const std::vector<float>& qkv, const std::vector<float>& dout,
                    const Shape& s, float scale_f) {
  const int T = s.t, D = s.hd;
  const size_t c = (size_t)s.heads * D, rs = 3 * c;
  const double scale = scale_f;
  Reference ref;
  ref.out.assign(dout.size(), 0.0);
  ref.out_mag.assign(dout.size(), 0.0);
  ref.lse.assign((size_t)s.b * s.heads * T, 0.0);
  ref.lse_mag.assign(ref.lse.size(), 0.0);
  ref.dqkv.assign(qkv.size(), 0.0);
  ref.dqkv_mag.assign(qkv.size(), 0.0);
  std::vector<double> p((size_t)T * T), ds((size_t)T * T), ds_mag((size_t)T * T);
  size_t rows = 0;
  for (int b = 0; b < s.b; b++) {
    for (int h = 0; h < s.heads; h++) {
      auto q = [&](int i, int d) { return (double)qkv[((size_t)b * T + i) * rs + h * D + d]; };
      auto k = [&](int j, int d) { return (double)qkv[((size_t)b * T + j) * rs + c + h * D + d]; };
      auto v = [&](int j, int d) {
        return (double)qkv[((size_t)b * T + j) * rs + 2 * c + h * D + d];
      };
      auto go = [&](int i, int d) { return (double)dout[((size_t)b * T + i) * c + h * D + d]; };
      const size_t lrow = ((size_t)b * s.heads + h) * T;
      for (int i = 0; i < T; i++) {
        double mx = -INFINITY, smag_max = 0.0;
        std::vector<double> sc(i + 1);
        for (int j = 0; j <= i; j++) {
          double acc = 0.0, mag = 0.0;
          for (int d = 0; d < D; d++) {
            acc += q(i, d) * k(j, d);
            mag += fabs(q(i, d) * k(j, d));
          }
          sc[j] = acc * scale;
          mx = std::max(mx, sc[j]);
          smag_max = std::max(smag_max, mag * scale);
        }
        double l = 0.0;
        for (int j = 0; j <= i; j++) l += exp(sc[j] - mx);
        double pmax = 0.0;
        for (int j = 0; j <= i; j++) {
          p[(size_t)i * T + j] = exp(sc[j] - mx) / l;
          pmax = std::max(pmax, p[(size_t)i * T + j]);
        }
        ref.mean_row_max_p += pmax;
        rows++;
        ref.lse[lrow + i] = mx + log(l);
        ref.lse_mag[lrow + i] = smag_max + fabs(ref.lse[lrow + i]);
        const size_t orow = ((size_t)b * T + i) * c + h * D;
        for (int d = 0; d < D; d++) {
          double acc = 0.0, mag = 0.0;
          for (int j = 0; j <= i; j++) {
            acc += p[(size_t)i * T + j] * v(j, d);
            mag += p[(size_t)i * T + j] * fabs(v(j, d));
          }
          ref.out[orow + d] = acc;
          ref.out_mag[orow + d] = mag;
        }
        double delta = 0.0, delta_mag = 0.0;
        for (int d = 0; d < D; d++) {
          delta += go(i, d) * ref.out[orow + d];
          delta_mag += fabs(go(i, d)) * ref.out_mag[orow + d];
        }
        for (int j = 0; j <= i; j++) {
          double dp = 0.0, dp_mag = 0.0;
          for (int d = 0; d < D; d++) {
            dp += go(i, d) * v(j, d);
            dp_mag += fabs(go(i, d) * v(j, d));
          }
          ds[(size_t)i * T + j] = p[(size_t)i * T + j] * (dp - delta);
          ds_mag[(size_t)i * T + j] = p[(size_t)i * T + j] * (dp_mag + delta_mag);
        }
      }
      for (int i = 0; i < T; i++) {
        const size_t row = ((size_t)b * T + i) * rs + h * D;
        for (int d = 0; d < D; d++) {
          double dq = 0, dq_mag = 0, dk = 0, dk_mag = 0, dv = 0, dv_mag = 0;
          for (int j = 0; j <= i; j++) {  // dq_i over keys j <= i
            dq += ds[(size_t)i * T + j] * k(j, d);
            dq_mag += ds_mag[(size_t)i * T + j] * fabs(k(j, d));
          }
          for (int r = i; r < T; r++) {  // dk_i, dv_i over queries r >= i (key i)
            dk += ds[(size_t)r * T + i] * q(r, d);
            dk_mag += ds_mag[(size_t)r * T + i] * fabs(q(r, d));
            dv += p[(size_t)r * T + i] * go(r, d);
            dv_mag += p[(size_t)r * T + i] * fabs(go(r, d));
          }
          ref.dqkv[row + d] = dq * scale;
          ref.dqkv_mag[row + d] = dq_mag * scale;
          ref.dqkv[row + c + d] = dk * scale;
          ref.dqkv_mag[row + c + d] = dk_mag * scale;
          ref.dqkv[row + 2 * c + d] = dv;
          ref.dqkv_mag[row + 2 * c + d] = dv_mag;
        }
      }
    }
  }
  ref.mean_row_max_p /= (double)rows;
  return ref;
}

// ---- comparison -------------------------------------------------------------------------------

struct Check {
  const char* what;
  size_t bad = 0, n = 0;
  double worst = 0.0;  // max |got - ref| / mag
  double num = 0.0, den = 0.0;
};

// Elements k with (k % stride) in [offset, offset + width) (all of them when width == 0).
Check compare(const char* what, const std::vector<float>& got, const std::vector<double>& ref,
              const std::vector<double>& mag, size_t stride = 1, size_t offset = 0,
              size_t width = 0) {
  Check ck{what};
  for (size_t k = 0; k < got.size(); k++) {
    if (width != 0 && (k % stride < offset || k % stride >= offset + width)) continue;
    ck.n++;
    const double err = fabs((double)got[k] - ref[k]);
    const double m = std::max(mag[k], 1e-30);
    const double ratio = std::isnan(err) ? INFINITY : err / m;
    if (!(err <= kRtol * m)) ck.bad++;
    if (!(ratio <= ck.worst)) ck.worst = ratio;
    ck.num += std::isnan(err) ? INFINITY : err * err;
    ck.den += m * m;
  }
  return ck;
}

using nm_emu::Rng;  // harness_rng.h

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

bool run_shape(const Shape& s, uint64_t seed) {
  const auto start = std::chrono::steady_clock::now();
  const size_t c = (size_t)s.heads * s.hd;
  const float scale = (float)(1.0 / sqrt((double)s.hd));
  Rng rng{seed};
  std::vector<float> qkv((size_t)s.b * s.t * 3 * c), dout((size_t)s.b * s.t * c);
  for (float& v : qkv) v = rng.normal(1.5);  // peaked softmax rows: scores spread over ~+-7
  for (float& v : dout) v = rng.normal(1.0);

  const Result r1 = run_kernels_hd(qkv, dout, s, scale);
  const Result r2 = run_kernels_hd(qkv, dout, s, scale);
  const bool deterministic =
      same_bits(r1.out, r2.out) && same_bits(r1.lse, r2.lse) && same_bits(r1.dqkv, r2.dqkv);

  const Reference ref = reference(qkv, dout, s, scale);
  const Check checks[5] = {
      compare("out", r1.out, ref.out, ref.out_mag),
      compare("lse", r1.lse, ref.lse, ref.lse_mag),
      compare("dq", r1.dqkv, ref.dqkv, ref.dqkv_mag, 3 * c, 0, c),
      compare("dk", r1.dqkv, ref.dqkv, ref.dqkv_mag, 3 * c, c, c),
      compare("dv", r1.dqkv, ref.dqkv, ref.dqkv_mag, 3 * c, 2 * c, c),
  };
  bool ok = deterministic;
  std::string line;
  char buf[200];
  for (const Check& ck : checks) {
    snprintf(buf, sizeof buf, " %s %zu/%zu bad (worst %.1e, frob %.1e)", ck.what, ck.bad, ck.n,
             ck.worst, ck.den > 0 ? sqrt(ck.num / ck.den) : sqrt(ck.num));
    line += buf;
    if (ck.bad != 0 || ck.n == 0) ok = false;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  printf("%s B=%d H=%d T=%d D=%d seed=%llu (%.1fs, mean row max p %.2f, %s):%s\n",
         ok ? "ok  " : "FAIL", s.b, s.heads, s.t, s.hd, (unsigned long long)seed, secs,
         ref.mean_row_max_p, deterministic ? "deterministic" : "NOT DETERMINISTIC", line.c_str());
  fflush(stdout);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], nullptr, 10) : 12345;
  const Shape shapes[] = {
      {2, 2, 1, 16},  {2, 2, 31, 32}, {2, 2, 32, 64},  {2, 3, 33, 16},  {2, 2, 64, 32},
      {2, 2, 65, 64}, {1, 2, 100, 64}, {2, 2, 100, 16}, {1, 3, 100, 32}, {1, 2, 130, 64},
  };
  printf("flash (f32) emulation, base seed %llu, tolerance %.0e of each element's terms\n",
         (unsigned long long)seed, kRtol);
  bool ok = true;
  for (const Shape& s : shapes) ok = run_shape(s, seed++) && ok;
  printf("%s\n", ok ? "all shapes match" : "MISMATCH");
  return ok ? 0 : 1;
}
