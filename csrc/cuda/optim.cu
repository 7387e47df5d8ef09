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
//
// The kernels are in optim_kernels.cuh (shared with the host emulation, emulation/).
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "context.h"
#include "dtypes.cuh"
#include "optim_kernels.cuh"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

using namespace optim_kernels;  // the kernels

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
  NM_CUDA_LAUNCH(grid_blocks(be, n), kThreads, 0, be->stream, momentum_kernel)(
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
  NM_CUDA_LAUNCH(grid_blocks(be, n), kThreads, 0, be->stream, apply_update_kernel)(
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
  NM_CUDA_LAUNCH(grid_blocks(be, n), kThreads, 0, be->stream, adamw_kernel)(
      static_cast<float*>(w_f32), static_cast<const float*>(g_f32), static_cast<float*>(m_f32),
      static_cast<float*>(v_f32), n, s.keep, s.beta1, s.one_minus_beta1, s.beta2,
      s.one_minus_beta2, s.eps, -s.step_size, s.sqrt_bias2);
  NM_CUDA_CHECK_LAUNCH(kOp, "adamw_kernel");
  return NM_OK;
}

}  // namespace nm_cuda
