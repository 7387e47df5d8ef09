// The elementwise optimizer updates: momentum (optionally Nesterov), the Muon weight update and
// AdamW, on f32 vectors.
//
// Rounding contract (the CUDA kernels mirror it, so both backends give the same bits):
// everything is f32, evaluated in the order the formulas in core/backend.h are written, and the
// one multiply-add of the form `x*y + z` that closes each formula is a single fused fmaf (one
// rounding). Every other product, quotient and sum is rounded on its own: each sits in its own
// statement, so no compiler contracts it into an FMA (GCC builds this with -std=c++17, which
// means -ffp-contract=off; clang's default only fuses within one expression). The fused sites:
//   momentum:  buf = fmaf(momentum, buf, g)          u = fmaf(momentum, buf, g)   (Nesterov)
//   apply:     w = fmaf(-step, u, decay*w)
//   AdamW:     m = fmaf(beta1, m, (1-beta1)*g)       v = fmaf(beta2, v, (1-beta2)*(g*g))
//              w = fmaf(-step_size, m/denom, w*keep)
#include <cmath>

#include "optim_kernels.h"
#include "parallel.h"

namespace nm::cpu {
namespace {

constexpr int64_t kChunk = 1 << 16;

}  // namespace

void momentum_update(float* buf, float* u, const float* g, int64_t n, float momentum,
                     bool nesterov) {
  parallel_chunks(n, kChunk, [&](int64_t begin, int64_t end, int64_t) {
    for (int64_t i = begin; i < end; ++i) {
      const float gi = g[i];  // read before u[i] is written: u may alias g
      const float b = std::fmaf(momentum, buf[i], gi);
      buf[i] = b;
      u[i] = nesterov ? std::fmaf(momentum, b, gi) : b;
    }
  });
}

void apply_update(float* w, const float* u, int64_t n, float decay, float step) {
  const float neg_step = -step;
  parallel_chunks(n, kChunk, [&](int64_t begin, int64_t end, int64_t) {
    for (int64_t i = begin; i < end; ++i) {
      const float decayed = decay * w[i];
      w[i] = std::fmaf(neg_step, u[i], decayed);
    }
  });
}

void adamw_update(float* w, const float* g, float* m, float* v, int64_t n,
                  const nm_adamw_scalars& s) {
  const float keep = s.keep, beta1 = s.beta1, one_minus_beta1 = s.one_minus_beta1;
  const float beta2 = s.beta2, one_minus_beta2 = s.one_minus_beta2, eps = s.eps;
  const float neg_step_size = -s.step_size, sqrt_bias2 = s.sqrt_bias2;
  parallel_chunks(n, kChunk, [&](int64_t begin, int64_t end, int64_t) {
    for (int64_t i = begin; i < end; ++i) {
      const float gi = g[i];
      const float wi = w[i] * keep;
      const float g_part = one_minus_beta1 * gi;
      const float mi = std::fmaf(beta1, m[i], g_part);
      const float gg = gi * gi;
      const float gg_part = one_minus_beta2 * gg;
      const float vi = std::fmaf(beta2, v[i], gg_part);
      const float root = std::sqrt(vi);
      const float scaled_root = root / sqrt_bias2;
      const float denom = scaled_root + eps;
      const float ratio = mi / denom;
      w[i] = std::fmaf(neg_step_size, ratio, wi);
      m[i] = mi;
      v[i] = vi;
    }
  });
}

}  // namespace nm::cpu
