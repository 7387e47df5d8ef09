// Deterministic block-wide sum: warp shuffles, then one warp over the per-warp sums, always in
// the same order, so the same inputs give the same bits. Used by every reduction of the module.
#ifndef NM_CUDA_BLOCK_REDUCE_CUH
#define NM_CUDA_BLOCK_REDUCE_CUH

#include "kernel_compat.cuh"  // NM_SHARED_ARRAY (also compiled by the host emulation)

namespace nm_cuda {

// Sum of v over the block, valid in thread 0. blockDim.x must be a multiple of 32 (at most 1024)
// and every thread of the block must call it. Safe to call more than once per kernel.
__device__ __forceinline__ double block_sum(double v) {
  NM_SHARED_ARRAY(double, warp_sums, 32);
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // a previous call's readers are done with warp_sums
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  const int warps = (int)(blockDim.x >> 5);
  v = (int)threadIdx.x < warps ? warp_sums[threadIdx.x] : 0.0;
  if (warp == 0) {
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  }
  return v;
}

}  // namespace nm_cuda

#endif  // NM_CUDA_BLOCK_REDUCE_CUH
