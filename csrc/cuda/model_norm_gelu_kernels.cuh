// The RMSNorm and GELU kernels (forward and backward) and their launch sizes. The host side
// (argument checks, launches) and the description of the rounding are in model_norm_gelu.cu.
//
// This header is compiled twice: by nvcc for the CUDA module, and by g++ for the host emulation
// (csrc/cuda/emulation/model_kernels_emulation.cc), which defines NM_CUDA_EMULATION and includes
// emulation/cuda_host_shim.h first. So the kernels keep to what that shim provides; shared
// variables are declared through kernel_compat.cuh's NM_SHARED_VAR.
#ifndef NM_CUDA_MODEL_NORM_GELU_KERNELS_CUH
#define NM_CUDA_MODEL_NORM_GELU_KERNELS_CUH

#include <math.h>
#include <stdint.h>

#include "block_reduce.cuh"
#include "dtypes.cuh"
#include "kernel_compat.cuh"

namespace nm_cuda {
namespace norm_gelu_kernels {

constexpr int64_t kMaxRowBlocks = int64_t{1} << 20;

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;  // 1/sqrt(2*pi)

// Blocks of the RMSNorm kernels: one per row, at most kMaxRowBlocks (grid-stride beyond).
inline unsigned int row_blocks(int64_t n) {
  return (unsigned int)(n < kMaxRowBlocks ? n : kMaxRowBlocks);
}

// Threads per row block: about four elements per thread, a multiple of 32, in [32, 256].
inline int row_threads(int64_t c) {
  const int64_t quarter = (c + 3) / 4;
  if (quarter >= 256) return 256;
  const int threads = (int)((quarter + 31) / 32 * 32);
  return threads < 32 ? 32 : threads;
}

template <typename OutT>
__global__ void rmsnorm_forward_kernel(OutT* out, float* rstd, const float* x, int64_t n,
                                       int64_t c, float eps) {
  NM_SHARED_VAR(float, row_rstd);
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

static __global__ void rmsnorm_backward_kernel(float* dx, const float* dout, const float* x,
                                               const float* rstd, int64_t n, int64_t c,
                                               int accumulate) {
  NM_SHARED_VAR(float, row_k);
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
static __device__ __forceinline__ float normal_cdf(float x) {
  return __fmul_rn(0.5f, erfcf(__fmul_rn(x, -kInvSqrt2)));
}

static __device__ __forceinline__ float gelu(float x) {
  const float cdf = normal_cdf(x);
  return __fmul_rn(x, cdf);
}

static __device__ __forceinline__ float gelu_grad(float x) {
  const float cdf = normal_cdf(x);
  const float pdf = __fmul_rn(kInvSqrt2Pi, expf(__fmul_rn(__fmul_rn(-0.5f, x), x)));
  return __fadd_rn(cdf, __fmul_rn(x, pdf));
}

// The GELU kernels are grid-stride: launched with grid_blocks(be, n) blocks of kThreads
// (context.h).
template <typename OutT>
__global__ void gelu_forward_kernel(OutT* out, const float* x, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) store_f32(out, i, gelu(x[i]));
}

static __global__ void gelu_backward_kernel(float* dx, const float* dout, const float* x,
                                            int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    dx[i] = __fmul_rn(dout[i], gelu_grad(x[i]));
  }
}

}  // namespace norm_gelu_kernels
}  // namespace nm_cuda

#endif  // NM_CUDA_MODEL_NORM_GELU_KERNELS_CUH
