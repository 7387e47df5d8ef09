// The elementwise optimizer updates: momentum (with Nesterov), the Muon weight update, AdamW.
// f32 vectors of n, grid-stride.
//
// Rounding contract, shared with the CPU backend (csrc/cpu/optim_updates.cc) so both give the
// same bits: f32 throughout, in the order the formulas in core/backend.h are written; the one
// multiply-add `x*y + z` that closes each formula is a single fused __fmaf_rn, and every other
// product, quotient, square root and sum is rounded on its own (the _rn intrinsics, which nvcc
// never contracts):
//   momentum:  buf = fma(momentum, buf, g)          u = fma(momentum, buf, g)   (Nesterov)
//   apply:     w = fma(-step, u, decay*w)
//   AdamW:     m = fma(beta1, m, (1-beta1)*g)       v = fma(beta2, v, (1-beta2)*(g*g))
//              w = fma(-step_size, m/denom, w*keep)
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "context.h"
#include "dtypes.cuh"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

// buf = momentum*buf + g; u = nesterov ? g + momentum*buf : buf. u may alias g: g[i] is read
// before u[i] is written, by the same thread.
__global__ void momentum_kernel(float* buf, float* u, const float* g, int64_t n, float momentum,
                                int nesterov) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const float gi = g[i];
    const float b = __fmaf_rn(momentum, buf[i], gi);
    buf[i] = b;
    u[i] = nesterov ? __fmaf_rn(momentum, b, gi) : b;
  }
}

// w = decay*w - step*u
__global__ void apply_update_kernel(float* w, const float* u, int64_t n, float decay,
                                    float neg_step) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const float decayed = __fmul_rn(decay, w[i]);
    w[i] = __fmaf_rn(neg_step, u[i], decayed);
  }
}

// PyTorch's AdamW step, per element:
//   w *= keep; m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g*g;
//   w -= step_size * m / (sqrt(v)/sqrt(bias2) + eps)   with step_size = lr/bias1
__global__ void adamw_kernel(float* w, const float* g, float* m, float* v, int64_t n, float keep,
                             float beta1, float one_minus_beta1, float beta2,
                             float one_minus_beta2, float eps, float neg_step_size,
                             float sqrt_bias2) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const float gi = g[i];
    const float wi = __fmul_rn(w[i], keep);
    const float g_part = __fmul_rn(one_minus_beta1, gi);
    const float mi = __fmaf_rn(beta1, m[i], g_part);
    const float gg = __fmul_rn(gi, gi);
    const float gg_part = __fmul_rn(one_minus_beta2, gg);
    const float vi = __fmaf_rn(beta2, v[i], gg_part);
    const float root = __fsqrt_rn(vi);
    const float scaled_root = __fdiv_rn(root, sqrt_bias2);
    const float denom = __fadd_rn(scaled_root, eps);
    const float ratio = __fdiv_rn(mi, denom);
    w[i] = __fmaf_rn(neg_step_size, ratio, wi);
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

nm_status momentum_update(nm_backend* be, void* buf_f32, void* u_f32, const void* g_f32,
                          int64_t n, float momentum, int32_t nesterov) {
  static const char* const kOp = "momentum_update";
  NM_TRY(enter(be, kOp));
  NM_TRY(check_count(kOp, n));
  NM_TRY(check_ptr(kOp, "buf", buf_f32, n));
  NM_TRY(check_ptr(kOp, "u", u_f32, n));
  NM_TRY(check_ptr(kOp, "g", g_f32, n));
  if (n == 0) return NM_OK;
  momentum_kernel<<<grid_blocks(be, n), kThreads, 0, be->stream>>>(
      static_cast<float*>(buf_f32), static_cast<float*>(u_f32), static_cast<const float*>(g_f32),
      n, momentum, nesterov != 0 ? 1 : 0);
  NM_CUDA_CHECK_LAUNCH(kOp, "momentum_kernel");
  return NM_OK;
}

nm_status apply_update(nm_backend* be, void* w_f32, const void* u_f32, int64_t n, float decay,
                       float step) {
  static const char* const kOp = "apply_update";
  NM_TRY(enter(be, kOp));
  NM_TRY(check_count(kOp, n));
  NM_TRY(check_ptr(kOp, "w", w_f32, n));
  NM_TRY(check_ptr(kOp, "u", u_f32, n));
  if (n == 0) return NM_OK;
  apply_update_kernel<<<grid_blocks(be, n), kThreads, 0, be->stream>>>(
      static_cast<float*>(w_f32), static_cast<const float*>(u_f32), n, decay, -step);
  NM_CUDA_CHECK_LAUNCH(kOp, "apply_update_kernel");
  return NM_OK;
}

nm_status adamw_update(nm_backend* be, void* w_f32, const void* g_f32, void* m_f32, void* v_f32,
                       int64_t n, const nm_adamw_scalars* scalars) {
  static const char* const kOp = "adamw_update";
  NM_TRY(enter(be, kOp));
  NM_TRY(check_count(kOp, n));
  NM_TRY(check_ptr(kOp, "w", w_f32, n));
  NM_TRY(check_ptr(kOp, "g", g_f32, n));
  NM_TRY(check_ptr(kOp, "m", m_f32, n));
  NM_TRY(check_ptr(kOp, "v", v_f32, n));
  if (scalars == nullptr) return fail_invalid(kOp, "scalars is null");
  const nm_adamw_scalars s = *scalars;
  // sqrt_bias2 = sqrt(1 - beta2^t) is in (0, 1] for every step t >= 1.
  if (!(s.sqrt_bias2 > 0.0f)) {
    return fail_invalid(kOp, "sqrt_bias2 (%g) must be > 0 (sqrt(1 - beta2^t) with t >= 1)",
                        (double)s.sqrt_bias2);
  }
  if (n == 0) return NM_OK;
  adamw_kernel<<<grid_blocks(be, n), kThreads, 0, be->stream>>>(
      static_cast<float*>(w_f32), static_cast<const float*>(g_f32), static_cast<float*>(m_f32),
      static_cast<float*>(v_f32), n, s.keep, s.beta1, s.one_minus_beta1, s.beta2,
      s.one_minus_beta2, s.eps, -s.step_size, s.sqrt_bias2);
  NM_CUDA_CHECK_LAUNCH(kOp, "adamw_kernel");
  return NM_OK;
}

}  // namespace nm_cuda
