// Internal interface between the attention entry points (model_attention_naive.cu: validation
// and the algorithm choice) and the three implementations. Arguments are validated by the caller;
// the backend's device is current. Layouts as in core/backend.h: qkv [B, T, 3, H, D],
// out / dout [B, T, H, D], lse [B, H, T].
#ifndef NM_CUDA_MODEL_ATTENTION_H
#define NM_CUDA_MODEL_ATTENTION_H

#include <stdint.h>

#include "../core/backend.h"

namespace nm_cuda {

struct AttentionDims {
  int64_t b, t, heads, head_dim;
  float scale;
};

// delta[(b*H + h)*T + i] = sum_d dout[b, i, h, d] * out[b, i, h, d] (the softmax backward's row
// term), accumulated in double by one warp per row in a fixed order, rounded to f32 once.
nm_status attention_row_dot(nm_backend* be, const char* op, float* delta, const float* dout,
                            const float* out, const AttentionDims& dims);

// Batched cuBLAS GEMMs into a [H, T, T] score buffer per batch entry (model_attention_naive.cu).
nm_status attention_forward_naive(nm_backend* be, const char* op, float* out, float* lse,
                                  const float* qkv, const AttentionDims& dims);
nm_status attention_backward_naive(nm_backend* be, const char* op, float* dqkv,
                                   const float* dout, const float* qkv, const float* out,
                                   const float* lse, const AttentionDims& dims);

// Fused tiled kernels, no T x T buffer (model_attention_flash.cu). head_dim must be one of
// flash_supports_head_dim.
bool flash_supports_head_dim(int64_t head_dim);
nm_status attention_forward_flash(nm_backend* be, const char* op, float* out, float* lse,
                                  const float* qkv, const AttentionDims& dims);
nm_status attention_backward_flash(nm_backend* be, const char* op, float* dqkv,
                                   const float* dout, const float* qkv, const float* out,
                                   const float* lse, const AttentionDims& dims);

// bf16 tensor-core kernels (wmma), head_dim 64 only (model_attention_flash_bf16.cu); the
// semantics are in attention_flash_bf16_kernels.cuh and core/backend.h. They fail with
// NM_ERR_INVALID for another head_dim.
bool flash_bf16_supports_head_dim(int64_t head_dim);
nm_status attention_forward_flash_bf16(nm_backend* be, const char* op, float* out, float* lse,
                                       const float* qkv, const AttentionDims& dims);
nm_status attention_backward_flash_bf16(nm_backend* be, const char* op, float* dqkv,
                                        const float* dout, const float* qkv, const float* out,
                                        const float* lse, const AttentionDims& dims);

}  // namespace nm_cuda

#endif  // NM_CUDA_MODEL_ATTENTION_H
