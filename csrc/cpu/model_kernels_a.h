// CPU kernels for the GPT-2 model ops of the backend table: token embedding (forward and the
// deterministic backward), weightless RMSNorm, exact-erf GELU and softmax cross-entropy.
// Semantics are those documented in core/backend.h; each kernel runs synchronously on the
// calling thread (the backend's stream thread) plus compute_pool(), and the backend enqueues
// them. Arithmetic is f32 with the row reductions (sums of squares, dot products, sums of
// exponentials, embedding-gradient sums) accumulated in double.
//
// Ids / targets outside [0, vocab) are a caller bug (the TypeScript layer checks them); the
// kernels do what they cheaply can: embedding_forward writes a NaN row for a negative id (it is
// not given vocab, so it cannot see a too-large one), embedding_backward skips the position,
// cross_entropy writes a NaN loss (and no one-hot term in the gradient).
#ifndef NM_CPU_MODEL_KERNELS_A_H
#define NM_CPU_MODEL_KERNELS_A_H

#include <cstddef>
#include <cstdint>

#include "../core/backend.h"

namespace nm::cpu {

// ---- model_embedding.cc --------------------------------------------------------------------
// out[i, :] = wte[ids[i], :]
void embedding_forward(float* out, const float* wte, const int32_t* ids, int64_t n, int64_t c);
// Bytes of scratch embedding_backward needs (a stable counting sort of the positions by id).
size_t embedding_backward_workspace_bytes(int64_t n, int64_t vocab);
// dwte[v, :] += sum over i with ids[i] == v of dout[i, :]: per v and channel the dout values are
// summed in double in increasing i, and the sum is added to dwte[v, j] with one f32 rounding.
// Rows of dwte that no id hits are not touched. The result does not depend on the thread count.
void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int64_t n, int64_t c,
                        int64_t vocab, void* workspace);

// ---- model_norm_gelu.cc ---------------------------------------------------------------------
// rstd[i] = 1/sqrt(mean_j x[i,j]^2 + eps) (double, rounded once); out = x * rstd in f32, stored
// as out_dtype (f32 or bf16). out may be x when out_dtype is f32.
void rmsnorm_forward(void* out, nm_dtype out_dtype, float* rstd, const float* x, int64_t n,
                     int64_t c, float eps);
// k_i = rstd^3 * mean_j(dout*x) (double, rounded once);
// dx[i,j] (=|+=) rstd*dout[i,j] - x[i,j]*k_i   (each product and the difference rounded in f32).
void rmsnorm_backward(float* dx, const float* dout, const float* x, const float* rstd, int64_t n,
                      int64_t c, bool accumulate);
// out = x * Phi(x) = x * 0.5 * (1 + erf(x / sqrt(2))), stored as out_dtype; Phi is evaluated as
// 0.5 * erfc(-x / sqrt(2)) (no cancellation for negative x).
void gelu_forward(void* out, nm_dtype out_dtype, const float* x, int64_t n);
// dx = dout * (Phi(x) + x * phi(x)).
void gelu_backward(float* dx, const float* dout, const float* x, int64_t n);

// ---- model_cross_entropy.cc -----------------------------------------------------------------
// losses[i] = logsumexp(logits[i]) - logits[i, targets[i]] (max-subtracted, sum of exp in
// double); when grad_scale != 0, logits[i, :] = grad_scale * (softmax(logits[i]) - onehot).
void cross_entropy(float* losses, float* logits, const int32_t* targets, int64_t n,
                   int64_t vocab, float grad_scale);

}  // namespace nm::cpu

#endif  // NM_CPU_MODEL_KERNELS_A_H
