// sum and sum_squares: deterministic two-pass reductions to one f32 in device memory.
//
// Pass 1 runs a fixed number of blocks (a function of n only, never of the GPU or of timing);
// each thread accumulates its grid-stride share in double, each block tree-reduces its threads in
// a fixed order and writes one partial. Pass 2 is a single block that reduces the partials the
// same way and rounds the double result to f32 once. No atomics anywhere, so the same input gives
// the same bits on every run, on every GPU. Accumulating in double keeps the result within an
// f32 rounding of the exact sum even for 2^31+ elements (FP64 adds are far from the bottleneck
// of a memory-bound pass).
#include <cuda_bf16.h>
#include <stdint.h>

#include "block_reduce.cuh"
#include "check.h"
#include "context.h"
#include "dtypes.cuh"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

template <typename T, bool Square>
__global__ void reduce_partials_kernel(const T* x, int64_t n, double* partials) {
  double acc = 0.0;
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const double v = (double)load_f32(x, i);
    acc += Square ? v * v : v;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void reduce_final_kernel(const double* partials, int count, float* out) {
  double acc = 0.0;
  for (int i = (int)threadIdx.x; i < count; i += (int)blockDim.x) acc += partials[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) *out = (float)acc;
}

// Pass-1 blocks: about 8 elements per thread, capped at kReduceBlocks (the partials buffer).
int partial_blocks(int64_t n) {
  const int64_t per_block = (int64_t)kThreads * 8;
  int64_t blocks = (n + per_block - 1) / per_block;
  if (blocks < 1) blocks = 1;
  if (blocks > kReduceBlocks) blocks = kReduceBlocks;
  return (int)blocks;
}

template <bool Square>
nm_status reduce(nm_backend* be, const char* op, void* out_f32, const void* x, nm_dtype dtype,
                 int64_t n) {
  NM_TRY(enter(be, op));
  NM_TRY(check_float_dtype(op, dtype));
  NM_TRY(check_count(op, n));
  if (out_f32 == nullptr) return fail_invalid(op, "out_f32 is NULL");
  NM_TRY(check_ptr(op, "x", x, n));
  // be->reduce_partials is reused by every reduction: safe because everything runs in order on
  // the one stream (this call's pass 2 reads them before the next call's pass 1 writes them).
  const int blocks = partial_blocks(n);
  if (dtype == NM_F32) {
    NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, reduce_partials_kernel<float, Square>)(
        static_cast<const float*>(x), n, be->reduce_partials);
  } else {
    NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, reduce_partials_kernel<__nv_bfloat16, Square>)(
        static_cast<const __nv_bfloat16*>(x), n, be->reduce_partials);
  }
  NM_CUDA_CHECK_LAUNCH(op, "reduce_partials_kernel");
  NM_CUDA_LAUNCH(1, kThreads, 0, be->stream, reduce_final_kernel)(
      be->reduce_partials, blocks, static_cast<float*>(out_f32));
  NM_CUDA_CHECK_LAUNCH(op, "reduce_final_kernel");
  return NM_OK;
}

}  // namespace

nm_status sum(nm_backend* be, void* out_f32, const void* x, nm_dtype dtype, int64_t n) {
  return reduce<false>(be, "sum", out_f32, x, dtype, n);
}

nm_status sum_squares(nm_backend* be, void* out_f32, const void* x, nm_dtype dtype, int64_t n) {
  return reduce<true>(be, "sum_squares", out_f32, x, dtype, n);
}

}  // namespace nm_cuda
