// Weightless RMSNorm (forward and backward) and exact-erf GELU (forward and backward).
//
// RMSNorm: one block per row (grid-stride over rows), the row's sum (of squares, or of dout * x)
// accumulated in double per thread and combined by the deterministic block_sum; the per-row
// scalars are formed in double and rounded to f32 once, exactly as the CPU backend does
// (csrc/cpu/model_norm_gelu.cc), and the per-element products and differences use the explicit
// round-to-nearest intrinsics in the CPU's order (no contraction into FMAs). Only the order of
// the double row sum differs from the CPU, so the results agree to within an f32 rounding of
// the per-row scalar and are bitwise reproducible run to run.
//
// GELU: grid-stride elementwise in f32, Phi(x) = 0.5 * erfc(-x/sqrt(2)) (erfcf, expf: CUDA's
// and glibc's are each within a few ulp, so CPU and GPU agree to a few f32 ulps, not bitwise).
// The erfc form keeps the relative accuracy for negative x, where 1 + erf(x/sqrt(2)) cancels.
//
// The kernels and the row launch sizes are in model_norm_gelu_kernels.cuh (shared with the host
// emulation, csrc/cuda/emulation/model_kernels_emulation.cc).
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "context.h"
#include "dtypes.cuh"
#include "model_norm_gelu_kernels.cuh"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

using namespace norm_gelu_kernels;  // the kernels and row_blocks / row_threads

nm_status check_rows(const char* op, int64_t n, int64_t c) {
  if (n < 0 || c < 0) {
    return fail_invalid(op, "n and c must be >= 0, got %lld and %lld", (long long)n,
                        (long long)c);
  }
  if (c > 0 && n > INT64_MAX / 4 / c) return fail_invalid(op, "n * c overflows");
  return NM_OK;
}

}  // namespace

nm_status rmsnorm_forward(nm_backend* be, void* out, nm_dtype out_dtype, void* rstd_f32,
                          const void* x_f32, int64_t n, int64_t c, float eps) {
  static const char* const kOp = "rmsnorm_forward";
  NM_TRY(enter(be, kOp));
  NM_TRY(check_float_dtype(kOp, out_dtype));
  NM_TRY(check_rows(kOp, n, c));
  if (!(eps >= 0.0f && eps <= 3.4e38f)) {
    return fail_invalid(kOp, "eps must be finite and >= 0, got %g", (double)eps);
  }
  if (n == 0) return NM_OK;
  if (c < 1) return fail_invalid(kOp, "c must be >= 1 (the mean of an empty row is undefined)");
  NM_TRY(check_ptr(kOp, "out", out, n));
  NM_TRY(check_ptr(kOp, "rstd", rstd_f32, n));
  NM_TRY(check_ptr(kOp, "x", x_f32, n));
  float* rstd = static_cast<float*>(rstd_f32);
  const float* x = static_cast<const float*>(x_f32);
  if (out_dtype == NM_F32) {
    NM_CUDA_LAUNCH(row_blocks(n), row_threads(c), 0, be->stream, rmsnorm_forward_kernel<float>)(
        static_cast<float*>(out), rstd, x, n, c, eps);
  } else {
    NM_CUDA_LAUNCH(row_blocks(n), row_threads(c), 0, be->stream,
                   rmsnorm_forward_kernel<__nv_bfloat16>)(static_cast<__nv_bfloat16*>(out), rstd, x,
                                                          n, c, eps);
  }
  NM_CUDA_CHECK_LAUNCH(kOp, "rmsnorm_forward_kernel");
  return NM_OK;
}

nm_status rmsnorm_backward(nm_backend* be, void* dx_f32, const void* dout_f32, const void* x_f32,
                           const void* rstd_f32, int64_t n, int64_t c, int32_t accumulate) {
  static const char* const kOp = "rmsnorm_backward";
  NM_TRY(enter(be, kOp));
  NM_TRY(check_rows(kOp, n, c));
  if (n == 0 || c == 0) return NM_OK;
  NM_TRY(check_ptr(kOp, "dx", dx_f32, n));
  NM_TRY(check_ptr(kOp, "dout", dout_f32, n));
  NM_TRY(check_ptr(kOp, "x", x_f32, n));
  NM_TRY(check_ptr(kOp, "rstd", rstd_f32, n));
  NM_CUDA_LAUNCH(row_blocks(n), row_threads(c), 0, be->stream, rmsnorm_backward_kernel)(
      static_cast<float*>(dx_f32), static_cast<const float*>(dout_f32),
      static_cast<const float*>(x_f32), static_cast<const float*>(rstd_f32), n, c,
      accumulate != 0 ? 1 : 0);
  NM_CUDA_CHECK_LAUNCH(kOp, "rmsnorm_backward_kernel");
  return NM_OK;
}

nm_status gelu_forward(nm_backend* be, void* out, nm_dtype out_dtype, const void* x_f32,
                       int64_t n) {
  static const char* const kOp = "gelu_forward";
  NM_TRY(enter(be, kOp));
  NM_TRY(check_float_dtype(kOp, out_dtype));
  NM_TRY(check_count(kOp, n));
  if (n == 0) return NM_OK;
  NM_TRY(check_ptr(kOp, "out", out, n));
  NM_TRY(check_ptr(kOp, "x", x_f32, n));
  const float* x = static_cast<const float*>(x_f32);
  if (out_dtype == NM_F32) {
    NM_CUDA_LAUNCH(grid_blocks(be, n), kThreads, 0, be->stream, gelu_forward_kernel<float>)(
        static_cast<float*>(out), x, n);
  } else {
    NM_CUDA_LAUNCH(grid_blocks(be, n), kThreads, 0, be->stream, gelu_forward_kernel<__nv_bfloat16>)(
        static_cast<__nv_bfloat16*>(out), x, n);
  }
  NM_CUDA_CHECK_LAUNCH(kOp, "gelu_forward_kernel");
  return NM_OK;
}

nm_status gelu_backward(nm_backend* be, void* dx_f32, const void* dout_f32, const void* x_f32,
                        int64_t n) {
  static const char* const kOp = "gelu_backward";
  NM_TRY(enter(be, kOp));
  NM_TRY(check_count(kOp, n));
  if (n == 0) return NM_OK;
  NM_TRY(check_ptr(kOp, "dx", dx_f32, n));
  NM_TRY(check_ptr(kOp, "dout", dout_f32, n));
  NM_TRY(check_ptr(kOp, "x", x_f32, n));
  NM_CUDA_LAUNCH(grid_blocks(be, n), kThreads, 0, be->stream, gelu_backward_kernel)(
      static_cast<float*>(dx_f32), static_cast<const float*>(dout_f32),
      static_cast<const float*>(x_f32), n);
  NM_CUDA_CHECK_LAUNCH(kOp, "gelu_backward_kernel");
  return NM_OK;
}

}  // namespace nm_cuda
