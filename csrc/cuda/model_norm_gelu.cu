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
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

#include "block_reduce.cuh"
#include "check.h"
#include "context.h"
#include "dtypes.cuh"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

constexpr int64_t kMaxRowBlocks = int64_t{1} << 20;

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;  // 1/sqrt(2*pi)

unsigned int row_blocks(int64_t n) {
  return (unsigned int)(n < kMaxRowBlocks ? n : kMaxRowBlocks);
}

// Threads per row block: about four elements per thread, a multiple of 32, in [32, 256].
int row_threads(int64_t c) {
  const int64_t quarter = (c + 3) / 4;
  if (quarter >= 256) return 256;
  const int threads = (int)((quarter + 31) / 32 * 32);
  return threads < 32 ? 32 : threads;
}

template <typename OutT>
__global__ void rmsnorm_forward_kernel(OutT* out, float* rstd, const float* x, int64_t n,
                                       int64_t c, float eps) {
  __shared__ float row_rstd;
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const float* row = x + i * c;
    double ss = 0.0;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      const double v = (double)row[j];
      ss += v * v;
    }
    ss = block_sum(ss);  // valid in thread 0; its barriers also order row_rstd's reuse
    if (threadIdx.x == 0) {
      const float r = (float)(1.0 / sqrt(ss / (double)c + (double)eps));
      row_rstd = r;
      rstd[i] = r;
    }
    __syncthreads();
    const float r = row_rstd;
    // out may be x (f32): element j is read and written by the same thread.
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      store_f32(out, i * c + j, __fmul_rn(row[j], r));
    }
  }
}

__global__ void rmsnorm_backward_kernel(float* dx, const float* dout, const float* x,
                                        const float* rstd, int64_t n, int64_t c, int accumulate) {
  __shared__ float row_k;
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const float* g = dout + i * c;
    const float* xr = x + i * c;
    float* d = dx + i * c;
    double dot = 0.0;
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) dot += (double)g[j] * (double)xr[j];
    dot = block_sum(dot);
    const float r = rstd[i];
    if (threadIdx.x == 0) {
      const double rd = (double)r;
      row_k = (float)(rd * rd * rd * (dot / (double)c));
    }
    __syncthreads();
    const float k = row_k;
    // dx may be dout: element j is read and written by the same thread.
    for (int64_t j = threadIdx.x; j < c; j += blockDim.x) {
      const float a = __fmul_rn(r, g[j]);
      const float b = __fmul_rn(xr[j], k);
      const float v = __fsub_rn(a, b);
      d[j] = accumulate ? __fadd_rn(d[j], v) : v;
    }
  }
}

// Phi(x) = 0.5 * erfc(-x / sqrt(2)), as on the CPU: no cancellation of 1 + erf for negative x.
__device__ __forceinline__ float normal_cdf(float x) {
  return __fmul_rn(0.5f, erfcf(__fmul_rn(x, -kInvSqrt2)));
}

__device__ __forceinline__ float gelu(float x) {
  const float cdf = normal_cdf(x);
  return __fmul_rn(x, cdf);
}

__device__ __forceinline__ float gelu_grad(float x) {
  const float cdf = normal_cdf(x);
  const float pdf = __fmul_rn(kInvSqrt2Pi, expf(__fmul_rn(__fmul_rn(-0.5f, x), x)));
  return __fadd_rn(cdf, __fmul_rn(x, pdf));
}

template <typename OutT>
__global__ void gelu_forward_kernel(OutT* out, const float* x, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) store_f32(out, i, gelu(x[i]));
}

__global__ void gelu_backward_kernel(float* dx, const float* dout, const float* x, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    dx[i] = __fmul_rn(dout[i], gelu_grad(x[i]));
  }
}

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
    rmsnorm_forward_kernel<float><<<row_blocks(n), row_threads(c), 0, be->stream>>>(
        static_cast<float*>(out), rstd, x, n, c, eps);
  } else {
    rmsnorm_forward_kernel<__nv_bfloat16><<<row_blocks(n), row_threads(c), 0, be->stream>>>(
        static_cast<__nv_bfloat16*>(out), rstd, x, n, c, eps);
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
  rmsnorm_backward_kernel<<<row_blocks(n), row_threads(c), 0, be->stream>>>(
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
    gelu_forward_kernel<float><<<grid_blocks(be, n), kThreads, 0, be->stream>>>(
        static_cast<float*>(out), x, n);
  } else {
    gelu_forward_kernel<__nv_bfloat16><<<grid_blocks(be, n), kThreads, 0, be->stream>>>(
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
  gelu_backward_kernel<<<grid_blocks(be, n), kThreads, 0, be->stream>>>(
      static_cast<float*>(dx_f32), static_cast<const float*>(dout_f32),
      static_cast<const float*>(x_f32), n);
  NM_CUDA_CHECK_LAUNCH(kOp, "gelu_backward_kernel");
  return NM_OK;
}

}  // namespace nm_cuda
