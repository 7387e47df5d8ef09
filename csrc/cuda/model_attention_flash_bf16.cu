// 'flash-bf16' attention (NM_ATTN_FLASH_BF16) on CUDA: the host side. The kernels and the exact
// definition of what they compute are in attention_flash_bf16_kernels.cuh (shared with the host
// emulation in emulation/, which is how they are checked without a GPU).
//
// Forward: one launch of forward_kernel. Backward: delta_kernel into a scratch buffer, then
// backward_kv_kernel (dK, dV) and backward_q_kernel (dQ); each writes its own columns of dqkv,
// so the two need no ordering between them and no atomics.
//
// Status: compiled for sm_80 / sm_90 and verified in emulation only; not yet run on a GPU, so
// NM_ATTN_AUTO does not choose it (see model_attention_naive.cu and docs/GPU.md).
#include <limits.h>
#include <stdint.h>

#include "attention_flash_bf16_kernels.cuh"
#include "check.h"
#include "context.h"
#include "model_attention.h"

namespace nm_cuda {
namespace {

namespace fb = flash_bf16;

// Blocks of the tiled kernels (one per (batch, head, 64 rows)); fails when over a 1-D grid.
nm_status grid_of(const char* op, const AttentionDims& g, int* tiles, unsigned* blocks) {
  const int64_t n = fb::row_tiles(g.t);
  const int64_t total = g.b * g.heads * n;
  if (total > INT_MAX) {
    return fail_invalid(op, "b*heads*ceil(t/64) = %lld blocks is too many for one grid",
                        (long long)total);
  }
  *tiles = (int)n;
  *blocks = (unsigned)total;
  return NM_OK;
}

nm_status check_head_dim(const char* op, const AttentionDims& g) {
  if (!flash_bf16_supports_head_dim(g.head_dim)) {
    return fail_invalid(op, "flash-bf16 attention: unsupported head_dim %lld (CUDA has it for "
                            "head_dim 64 only)", (long long)g.head_dim);
  }
  return NM_OK;
}

}  // namespace

bool flash_bf16_supports_head_dim(int64_t head_dim) { return head_dim == fb::kHeadDim; }

nm_status attention_forward_flash_bf16(nm_backend* be, const char* op, float* out, float* lse,
                                       const float* qkv, const AttentionDims& g) {
  NM_TRY(check_head_dim(op, g));
  int tiles = 0;
  unsigned blocks = 0;
  NM_TRY(grid_of(op, g, &tiles, &blocks));
  NM_CUDA_LAUNCH(blocks, fb::kThreads, fb::kFwdSmemBytes, be->stream, fb::forward_kernel)(
      out, lse, qkv, (int)g.t, (int)g.heads, fb::scale_log2_of(g.scale), tiles);
  NM_CUDA_CHECK_LAUNCH(op, "flash_bf16::forward_kernel");
  return NM_OK;
}

nm_status attention_backward_flash_bf16(nm_backend* be, const char* op, float* dqkv,
                                        const float* dout, const float* qkv, const float* out,
                                        const float* lse, const AttentionDims& g) {
  NM_TRY(check_head_dim(op, g));
  int tiles = 0;
  unsigned blocks = 0;
  NM_TRY(grid_of(op, g, &tiles, &blocks));
  const int64_t rows = g.b * g.heads * g.t;
  const int64_t delta_blocks = (rows + fb::kDeltaThreads - 1) / fb::kDeltaThreads;
  if (delta_blocks > INT_MAX) {
    return fail_invalid(op, "b*heads*t = %lld rows is too many for one grid", (long long)rows);
  }
  Scratch scratch(be, op);
  NM_TRY(scratch.alloc((size_t)rows * sizeof(float)));
  float* delta = reinterpret_cast<float*>(scratch.bytes());
  NM_CUDA_LAUNCH((unsigned)delta_blocks, fb::kDeltaThreads, 0, be->stream, fb::delta_kernel)(
      delta, dout, out, rows, (int)g.t, (int)g.heads);
  NM_CUDA_CHECK_LAUNCH(op, "flash_bf16::delta_kernel");
  const float scale_log2 = fb::scale_log2_of(g.scale);
  NM_CUDA_LAUNCH(blocks, fb::kThreads, fb::kKvSmemBytes, be->stream, fb::backward_kv_kernel)(
      dqkv, dout, qkv, lse, delta, (int)g.t, (int)g.heads, g.scale, scale_log2, tiles);
  NM_CUDA_CHECK_LAUNCH(op, "flash_bf16::backward_kv_kernel");
  NM_CUDA_LAUNCH(blocks, fb::kThreads, fb::kQSmemBytes, be->stream, fb::backward_q_kernel)(
      dqkv, dout, qkv, lse, delta, (int)g.t, (int)g.heads, g.scale, scale_log2, tiles);
  NM_CUDA_CHECK_LAUNCH(op, "flash_bf16::backward_q_kernel");
  return scratch.release();
}

}  // namespace nm_cuda
