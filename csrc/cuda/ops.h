// Every op of nm_backend_ops as implemented by the CUDA backend, one declaration per table slot.
// entry.cc puts them into the table; the semantics are those written in core/backend.h.
#ifndef NM_CUDA_OPS_H
#define NM_CUDA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "../core/backend.h"

namespace nm_cuda {

// context.cu
nm_backend* create(int device_index, char* err, size_t err_len);
void destroy(nm_backend* be);
const char* last_error_message();
nm_status describe(nm_backend* be, char* buf, size_t buf_len);

// memory.cc
nm_status alloc(nm_backend* be, size_t bytes, void** out);
nm_status free_memory(nm_backend* be, void* ptr);
nm_status host_alloc(nm_backend* be, size_t bytes, void** out);
nm_status host_free(nm_backend* be, void* ptr);

// copy.cc
nm_status upload(nm_backend* be, void* dst, const void* host_src, size_t bytes);
nm_status download(nm_backend* be, void* host_dst, const void* src, size_t bytes);
nm_status copy(nm_backend* be, void* dst, const void* src, size_t bytes);
nm_status copy_rows(nm_backend* be, void* dst, int64_t dst_stride_bytes, const void* src,
                    int64_t src_stride_bytes, int64_t rows, int64_t row_bytes);
// Releases the upload staging buffers; the stream must be idle (destroy synchronizes first).
void staging_destroy(nm_backend* be);

// elementwise.cu
nm_status fill(nm_backend* be, void* dst, nm_dtype dtype, int64_t n, double value);
nm_status cast(nm_backend* be, void* dst, nm_dtype dst_dtype, const void* src, nm_dtype src_dtype,
               int64_t n);
nm_status binary(nm_backend* be, nm_binary_op op, void* out, const void* a, const void* b,
                 nm_dtype dtype, int64_t n);
nm_status scale(nm_backend* be, void* out, const void* x, float alpha, nm_dtype dtype, int64_t n);
nm_status axpy(nm_backend* be, void* y, const void* x, float alpha, nm_dtype dtype, int64_t n);

// reduce.cu
nm_status sum(nm_backend* be, void* out_f32, const void* x, nm_dtype dtype, int64_t n);
nm_status sum_squares(nm_backend* be, void* out_f32, const void* x, nm_dtype dtype, int64_t n);

// gemm.cu
nm_status gemm(nm_backend* be, const nm_gemm_args* args);

// fence.cc
nm_status fence_create(nm_backend* be, nm_fence** out);
nm_status fence_wait(nm_backend* be, nm_fence* fence);
void fence_destroy(nm_backend* be, nm_fence* fence);

// newton_schulz.cu
nm_status newton_schulz(nm_backend* be, void* out_f32, const void* x_f32, int64_t batch,
                        int64_t rows, int64_t cols, int32_t steps, float coef_a, float coef_b,
                        float coef_c, float eps);

// cholesky.cu
nm_status cholesky_inverse(nm_backend* be, void* kinv_f32, const void* k_f32, void* info_i32,
                           int64_t batch, int64_t d, float ridge_mult, float ridge_eps);

// optim.cu
nm_status momentum_update(nm_backend* be, void* buf_f32, void* u_f32, const void* g_f32,
                          int64_t n, float momentum, int32_t nesterov);
nm_status apply_update(nm_backend* be, void* w_f32, const void* u_f32, int64_t n, float decay,
                       float step);
nm_status adamw_update(nm_backend* be, void* w_f32, const void* g_f32, void* m_f32, void* v_f32,
                       int64_t n, const nm_adamw_scalars* scalars);

// model_embedding.cu
nm_status embedding_forward(nm_backend* be, void* out_f32, const void* wte_f32,
                            const void* ids_i32, int64_t n, int64_t c);
nm_status embedding_backward(nm_backend* be, void* dwte_f32, const void* dout_f32,
                             const void* ids_i32, int64_t n, int64_t c, int64_t vocab);

// model_norm_gelu.cu
nm_status rmsnorm_forward(nm_backend* be, void* out, nm_dtype out_dtype, void* rstd_f32,
                          const void* x_f32, int64_t n, int64_t c, float eps);
nm_status rmsnorm_backward(nm_backend* be, void* dx_f32, const void* dout_f32, const void* x_f32,
                           const void* rstd_f32, int64_t n, int64_t c, int32_t accumulate);
nm_status gelu_forward(nm_backend* be, void* out, nm_dtype out_dtype, const void* x_f32,
                       int64_t n);
nm_status gelu_backward(nm_backend* be, void* dx_f32, const void* dout_f32, const void* x_f32,
                        int64_t n);

// model_rotary.cu
nm_status rotary(nm_backend* be, void* qkv_f32, int64_t b, int64_t t, int64_t heads,
                 int64_t head_dim, float base, int32_t inverse);

// model_attention_naive.cu (entry points; the flash kernels are in model_attention_flash.cu)
nm_status attention_forward(nm_backend* be, void* out_f32, void* lse_f32, const void* qkv_f32,
                            int64_t b, int64_t t, int64_t heads, int64_t head_dim, float scale,
                            int32_t algo);
nm_status attention_backward(nm_backend* be, void* dqkv_f32, const void* dout_f32,
                             const void* qkv_f32, const void* out_f32, const void* lse_f32,
                             int64_t b, int64_t t, int64_t heads, int64_t head_dim, float scale,
                             int32_t algo);

// model_cross_entropy.cu
nm_status cross_entropy(nm_backend* be, void* losses_f32, void* logits_f32,
                        const void* targets_i32, int64_t n, int64_t vocab, float grad_scale);

}  // namespace nm_cuda

#endif  // NM_CUDA_OPS_H
