// Emulation harness of the flash-bf16 CUDA kernels: compiles the real kernel header
// (../attention_flash_bf16_kernels.cuh) with g++ against the host shims, runs forward and
// backward on the emulated "GPU" for several shapes, and compares with the float64 reference of
// attention_bf16_reference.h. Exit status 0 when everything matches, 1 otherwise.
//
//   g++ -O2 -std=c++20 -pthread csrc/cuda/emulation/attention_bf16_emulation.cc -o emu && ./emu
//
// Run by test/attention-emulation.test.ts. Checks per shape:
//   1. out, lse, dq, dk, dv against the reference with the same bf16 roundings, element by
//      element within its tight bounds (f32 accumulation + the near-tie allowance);
//   2. against exact float64 attention (no rounding): relative Frobenius error <= 1e-2 per tensor;
//   3. a control: the reference without the P / dS roundings must fail check 1 for a clear share
//      of the elements (so check 1 really sees those roundings).
// Launch arguments mirror model_attention_flash_bf16.cu (same grid helper, same kernels).
#define NM_CUDA_EMULATION 1
#include "cuda_host_shim.h"
#include "wmma_shim.h"
// (the two shims must come first)
#include "../attention_flash_bf16_kernels.cuh"
#include "attention_bf16_reference.h"

#include "harness_rng.h"
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace fb = nm_cuda::flash_bf16;

namespace {

// The least share of elements the control must put outside the tight bounds.
constexpr double kControlShare = 0.1;

// ---- the emulated launches (as model_attention_flash_bf16.cu does them) ---------------------

void emulated_forward(float* out, float* lse, const float* qkv, const nm_ref::Shape& s) {
  const int64_t tiles = fb::row_tiles(s.t);
  const unsigned blocks = (unsigned)(s.b * s.heads * tiles);
  nm_emu::launch(fb::forward_kernel, dim3(blocks), dim3(fb::kThreads), fb::kFwdSmemBytes, out,
                 lse, qkv, s.t, s.heads, fb::scale_log2_of(s.scale), (int)tiles);
}

void emulated_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                       const float* lse, const nm_ref::Shape& s) {
  const int64_t tiles = fb::row_tiles(s.t);
  const unsigned blocks = (unsigned)(s.b * s.heads * tiles);
  const int64_t rows = (int64_t)s.b * s.heads * s.t;
  std::vector<float> delta((size_t)rows, NAN);
  nm_emu::launch(fb::delta_kernel, dim3((unsigned)((rows + fb::kDeltaThreads - 1) / fb::kDeltaThreads)),
                 dim3(fb::kDeltaThreads), 0, delta.data(), dout, out, rows, s.t, s.heads);
  const float sl2 = fb::scale_log2_of(s.scale);
  nm_emu::launch(fb::backward_kv_kernel, dim3(blocks), dim3(fb::kThreads), fb::kKvSmemBytes, dqkv,
                 dout, qkv, lse, (const float*)delta.data(), s.t, s.heads, s.scale, sl2, (int)tiles);
  nm_emu::launch(fb::backward_q_kernel, dim3(blocks), dim3(fb::kThreads), fb::kQSmemBytes, dqkv,
                 dout, qkv, lse, (const float*)delta.data(), s.t, s.heads, s.scale, sl2, (int)tiles);
}

// ---- data -------------------------------------------------------------------------------------

using nm_emu::Rng;  // harness_rng.h

// ---- comparison -------------------------------------------------------------------------------

struct Check {
  std::string what;
  size_t bad = 0, n = 0;
  double worst_ratio = 0.0;  // max |got - ref| / tol
  size_t worst_at = 0;
};

Check within(const std::string& what, const float* got, const double* ref, const double* tol,
             size_t n, size_t stride = 1, size_t offset = 0, size_t width = 0) {
  Check c{what};
  for (size_t k = 0; k < n; k++) {
    // Optional column window: elements offset..offset+width of each stride-long row.
    if (width != 0 && (k % stride < offset || k % stride >= offset + width)) continue;
    c.n++;
    const double err = fabs((double)got[k] - ref[k]);
    const double ratio = std::isnan(err) ? INFINITY : err / tol[k];
    if (!(err <= tol[k])) c.bad++;
    if (ratio > c.worst_ratio || std::isnan(ratio)) {
      c.worst_ratio = ratio;
      c.worst_at = k;
    }
  }
  return c;
}

// ||got - ref||_F / ||mag||_F, mag = the size of each element's terms (so an element whose
// terms cancel to ~0, like dq and dk at T = 1, is measured against its terms, not against 0).
double rel_frobenius(const float* got, const double* ref, const double* mag, size_t n,
                     size_t stride = 1, size_t offset = 0, size_t width = 0) {
  double num = 0.0, den = 0.0;
  for (size_t k = 0; k < n; k++) {
    if (width != 0 && (k % stride < offset || k % stride >= offset + width)) continue;
    const double d = (double)got[k] - ref[k];
    num += d * d;
    den += mag[k] * mag[k];
  }
  return den == 0.0 ? sqrt(num) : sqrt(num / den);
}

bool run_shape(const nm_ref::Shape& s, uint64_t seed) {
  const auto start = std::chrono::steady_clock::now();
  const size_t c = (size_t)s.heads * nm_ref::kD;
  const size_t n_qkv = (size_t)s.b * s.t * 3 * c, n_out = (size_t)s.b * s.t * c;
  const size_t n_lse = (size_t)s.b * s.heads * s.t;
  Rng rng{seed};
  std::vector<float> qkv(n_qkv), dout(n_out);
  for (float& v : qkv) v = rng.normal(1.5);  // peaked softmax rows: scores spread over ~+-8
  for (float& v : dout) v = rng.normal(1.0);

  // NaN-filled outputs: anything the kernels do not write fails the comparison.
  std::vector<float> out(n_out, NAN), lse(n_lse, NAN), dqkv(n_qkv, NAN);
  emulated_forward(out.data(), lse.data(), qkv.data(), s);
  emulated_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), lse.data(), s);

  const nm_ref::Forward f = nm_ref::forward(qkv, s, true, true);
  const nm_ref::Backward g = nm_ref::backward(qkv, dout, out, lse, s, true, true);
  std::vector<Check> checks;
  checks.push_back(within("out", out.data(), f.out.data(), f.out_tol.data(), n_out));
  checks.push_back(within("lse", lse.data(), f.lse.data(), f.lse_tol.data(), n_lse));
  const char* parts[3] = {"dq", "dk", "dv"};
  for (int p = 0; p < 3; p++) {
    checks.push_back(within(parts[p], dqkv.data(), g.dqkv.data(), g.tol.data(), n_qkv, 3 * c,
                            p * c, c));
  }

  // Exact attention (no rounding at all): bf16-level agreement.
  const nm_ref::Forward fe = nm_ref::forward(qkv, s, false, false);
  const std::vector<float> fe_out(fe.out.begin(), fe.out.end()), fe_lse(fe.lse.begin(), fe.lse.end());
  const nm_ref::Backward ge = nm_ref::backward(qkv, dout, fe_out, fe_lse, s, false, false);
  std::vector<double> lse_mag(n_lse);
  for (size_t k = 0; k < n_lse; k++) lse_mag[k] = fabs(fe.lse[k]) + 1.0;
  double exact[5] = {rel_frobenius(out.data(), fe.out.data(), fe.out_mag.data(), n_out),
                     rel_frobenius(lse.data(), fe.lse.data(), lse_mag.data(), n_lse), 0, 0, 0};
  for (int p = 0; p < 3; p++) {
    exact[2 + p] =
        rel_frobenius(dqkv.data(), ge.dqkv.data(), ge.mag.data(), n_qkv, 3 * c, p * c, c);
  }

  // Control: the same roundings of q, k, v, dout but not of P and dS.
  const nm_ref::Forward fc = nm_ref::forward(qkv, s, true, false);
  const nm_ref::Backward gc = nm_ref::backward(qkv, dout, out, lse, s, true, false);
  std::vector<float> fc_out(fc.out.begin(), fc.out.end()), gc_dqkv(gc.dqkv.begin(), gc.dqkv.end());
  Check ctl[4] = {within("out", fc_out.data(), f.out.data(), f.out_tol.data(), n_out)};
  for (int p = 0; p < 3; p++) {
    ctl[1 + p] = within(parts[p], gc_dqkv.data(), g.dqkv.data(), g.tol.data(), n_qkv, 3 * c,
                        p * c, c);
  }

  bool ok = true;
  std::string line;
  char buf[256];
  for (const Check& ck : checks) {
    snprintf(buf, sizeof buf, " %s %zu/%zu bad (worst %.2f of tol)", ck.what.c_str(), ck.bad, ck.n,
             ck.worst_ratio);
    line += buf;
    if (ck.bad != 0) ok = false;
  }
  const char* names[5] = {"out", "lse", "dq", "dk", "dv"};
  line += " | vs exact:";
  for (int k = 0; k < 5; k++) {
    snprintf(buf, sizeof buf, " %s %.1e", names[k], exact[k]);
    line += buf;
    if (!(exact[k] <= 1e-2)) ok = false;
  }
  // The control must fail visibly where rounding P and dS matters (from T = 17 on; at T = 1 the
  // single probability is exactly 1 and dS is ~0).
  line += " | control (P, dS unrounded) outside tol:";
  for (const Check& ck : ctl) {
    const double share = (double)ck.bad / (double)ck.n;
    snprintf(buf, sizeof buf, " %s %.0f%%", ck.what.c_str(), 100 * share);
    line += buf;
    if (s.t >= 17 && share < kControlShare) ok = false;
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  printf("%s B=%d T=%d H=%d scale=%g seed=%llu (%.1fs):%s\n", ok ? "ok  " : "FAIL", s.b, s.t,
         s.heads, (double)s.scale, (unsigned long long)seed, secs, line.c_str());
  fflush(stdout);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t seed = argc > 1 ? strtoull(argv[1], nullptr, 10) : 12345;
  const nm_ref::Shape shapes[] = {
      {2, 1, 2, 0.125f},  {2, 17, 2, 0.125f},  {2, 63, 2, 0.125f}, {2, 64, 2, 0.125f},
      {2, 65, 2, 0.125f}, {2, 130, 2, 0.125f}, {1, 200, 3, 0.2f},
  };
  printf("flash-bf16 emulation, base seed %llu\n", (unsigned long long)seed);
  bool ok = true;
  for (const nm_ref::Shape& s : shapes) ok = run_shape(s, seed++) && ok;
  printf("%s\n", ok ? "all shapes match" : "MISMATCH");
  return ok ? 0 : 1;
}
