// The fused softmax cross-entropy kernel and its launch sizes. The host side (argument checks,
// launch) and the description of the algorithm are in model_cross_entropy.cu.
//
// This header is compiled twice: by nvcc for the CUDA module, and by g++ for the host emulation
// (csrc/cuda/emulation/model_kernels_emulation.cc), which defines NM_CUDA_EMULATION and includes
// emulation/cuda_host_shim.h first. So the kernel keeps to what that shim provides; shared
// variables are declared through kernel_compat.cuh's NM_SHARED_VAR / NM_SHARED_ARRAY.
#ifndef NM_CUDA_MODEL_CROSS_ENTROPY_KERNELS_CUH
#define NM_CUDA_MODEL_CROSS_ENTROPY_KERNELS_CUH

#include <math.h>
#include <stdint.h>

#include "block_reduce.cuh"
#include "dtypes.cuh"
#include "kernel_compat.cuh"

namespace nm_cuda {
namespace cross_entropy_kernels {

constexpr int64_t kMaxRowBlocks = int64_t{1} << 20;
constexpr int kMaxThreads = 512;

// Threads per row block: the vocabulary rounded up to a multiple of 32, at most kMaxThreads.
inline int cross_entropy_threads(int64_t vocab) {
  return vocab >= kMaxThreads ? kMaxThreads : (int)((vocab + 31) / 32 * 32);
}

// Blocks: one per row, at most kMaxRowBlocks (grid-stride beyond).
inline unsigned int cross_entropy_blocks(int64_t n) {
  return (unsigned int)(n < kMaxRowBlocks ? n : kMaxRowBlocks);
}

// Max of v over the block, returned to every thread. blockDim.x a multiple of 32; every thread
// of the block must call it. NaN is ignored (fmaxf), like std::fmax on the CPU; the NaN then
// reaches the sum of exponentials instead.
static __device__ __forceinline__ float block_max_all(float v) {
  NM_SHARED_ARRAY(float, warp_max, 32);
  NM_SHARED_VAR(float, result);
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, offset));
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // a previous call's readers are done with warp_max / result
  if (lane == 0) warp_max[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = (int)(blockDim.x >> 5);
    v = lane < warps ? warp_max[lane] : -INFINITY;
    for (int offset = 16; offset > 0; offset >>= 1) {
      v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, offset));
    }
    if (lane == 0) result = v;
  }
  __syncthreads();
  return result;
}

static __global__ void cross_entropy_kernel(float* losses, float* logits,
                                            const int32_t* targets, int64_t n, int64_t vocab,
                                            float grad_scale) {
  NM_SHARED_VAR(float, row_max);
  NM_SHARED_VAR(float, row_inv_sum);
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    float* row = logits + i * vocab;
    const int64_t t = targets[i];
    const bool valid = t >= 0 && t < vocab;
    // Read by thread 0 now, before the barriers that precede any write to the row.
    const float target_logit = (threadIdx.x == 0 && valid) ? row[t] : 0.0f;

    // Online max and sum of exp(x - m) over this thread's share of the row.
    float m = -INFINITY, s = 0.0f;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
      const float x = row[j];
      if (x > m) {
        s = __fadd_rn(__fmul_rn(s, expf(m - x)), 1.0f);  // m = -inf: exp(-inf) = 0
        m = x;
      } else if (x != -INFINITY || m != -INFINITY) {  // -inf with m = -inf adds nothing
        s = __fadd_rn(s, expf(x - m));  // a NaN x makes s NaN (and keeps it NaN)
      }
    }
    const float big = block_max_all(m);
    // m = -inf: no finite element here, s is 0 (or NaN from a NaN logit, which must survive).
    const double part = (m == -INFINITY) ? (double)s : (double)s * (double)expf(m - big);
    const double sum = block_sum(part);  // valid in thread 0
    if (threadIdx.x == 0) {
      const double lse = (double)big + log(sum);
      losses[i] = valid ? (float)(lse - (double)target_logit) : __int_as_float(0x7fc00000);
      row_max = big;
      row_inv_sum = (float)(1.0 / sum);
    }
    __syncthreads();
    if (grad_scale != 0.0f) {
      const float mx = row_max, inv_s = row_inv_sum;
      for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
        const float p = __fmul_rn(expf(__fsub_rn(row[j], mx)), inv_s);
        const float d = (valid && j == t) ? __fsub_rn(p, 1.0f) : p;
        row[j] = __fmul_rn(grad_scale, d);
      }
    }
    // The next row's block_max_all / block_sum barriers order the reuse of row_max / row_inv_sum.
  }
}

}  // namespace cross_entropy_kernels
}  // namespace nm_cuda

#endif  // NM_CUDA_MODEL_CROSS_ENTROPY_KERNELS_CUH
