// CPU kernels for the GPT-2 model ops of the backend table: rotary embedding and causal
// multi-head attention (forward and backward). Semantics are those documented in core/backend.h;
// each kernel runs synchronously on the calling thread (the backend's stream thread) plus
// compute_pool(), and the backend enqueues them.
//
// Layouts: qkv is [B, T, 3, H, D] (row (b, t) holds q in columns [0, C), k in [C, 2C), v in
// [2C, 3C), head h at columns h*D.. of each part; C = H*D), out and dout are [B, T, H, D], lse is
// [B, H, T]. Arithmetic is f32; the few per-row reductions noted below are accumulated in double.
#ifndef NM_CPU_MODEL_KERNELS_B_H
#define NM_CPU_MODEL_KERNELS_B_H

#include <cstddef>
#include <cstdint>

namespace nm::cpu {

// ---- model_rotary.cc ------------------------------------------------------------------------
// In place on the q and k parts of qkv. For position t and pair j < D/2 the angle
// t * base^(-2j/D), its cos and its sin are computed in double and rounded to f32 once; then
//   forward: y1 = x1*cos + x2*sin,  y2 = x2*cos - x1*sin
//   inverse: y1 = x1*cos - x2*sin,  y2 = x2*cos + x1*sin
// with every product and sum an f32 operation (no FMA). head_dim must be even.
void rotary(float* qkv, int64_t b, int64_t t, int64_t heads, int64_t head_dim, float base,
            bool inverse);

// ---- model_attention.cc ---------------------------------------------------------------------
// Causal softmax attention, scores s_ij = scale * (q_i . k_j) for j <= i (the dot product in f32,
// then one multiply by scale); softmax with the row maximum subtracted, exp in f32 (a vectorised
// range reduction + polynomial, about 1 ulp), the row sum of the exponentials in double;
// lse_i = max_i + log(sum_i) (double, rounded once); p = exp(s - max) * f32(1/sum).
// Parallel over the B*H (batch, head) pairs: each pair is computed by one thread with a fixed
// loop order, so the bits do not depend on the thread count.
void attention_forward(float* out, float* lse, const float* qkv, int64_t b, int64_t t,
                       int64_t heads, int64_t head_dim, float scale);
// Recomputes p_ij = exp(s_ij - lse_i) and writes all of dqkv:
//   dP = dout . v^T;  dS = P * (dP - rowsum(dout * out));
//   dq = scale * dS . k;  dk = scale * dS^T . q;  dv = P^T . dout.
// dk and dv are accumulated over the query rows in increasing order by the one thread that owns
// the (batch, head) pair: deterministic.
void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, int64_t b, int64_t t, int64_t heads, int64_t head_dim,
                        float scale);

// ---- model_attention_bf16.cc ----------------------------------------------------------------
// 'flash-bf16' (NM_ATTN_FLASH_BF16): the definition in core/backend.h, i.e. q, k, v and dout
// rounded to bf16 before any product, the probabilities rounded to bf16 before P.V (forward) and
// P, dS before dV = P^T dO, dK = dS^T Q, dQ = dS K (backward); any head dim. Here: score dot
// products in f32 (increasing d), M = ceil(row max of s2), exponentials with exp2f, l and delta
// summed in double, P.V and the gradient products in f32 in increasing key / query order. Same
// parallel split and determinism as attention_forward / attention_backward.
void attention_forward_bf16(float* out, float* lse, const float* qkv, int64_t b, int64_t t,
                            int64_t heads, int64_t head_dim, float scale);
void attention_backward_bf16(float* dqkv, const float* dout, const float* qkv, const float* out,
                             const float* lse, int64_t b, int64_t t, int64_t heads,
                             int64_t head_dim, float scale);

}  // namespace nm::cpu

#endif  // NM_CPU_MODEL_KERNELS_B_H
