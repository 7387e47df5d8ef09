// CPU reference kernels for the optimizer ops of the backend table (Newton-Schulz, the batched
// Cholesky inverse, and the elementwise momentum / weight / AdamW updates). Semantics are exactly
// those documented in core/backend.h; each kernel runs synchronously on the calling thread (the
// backend's stream thread) plus compute_pool(), and the backend enqueues them.
//
// The two matrix kernels take a caller-allocated scratch block (size from the *_workspace_bytes
// function, any alignment) so that the backend can allocate it on the calling thread and report
// NM_ERR_OUT_OF_MEMORY there, instead of failing inside the work queue.
#ifndef NM_CPU_OPTIM_KERNELS_H
#define NM_CPU_OPTIM_KERNELS_H

#include <cstddef>
#include <cstdint>

#include "../core/backend.h"

namespace nm::cpu {

// ---- newton_schulz.cc ---------------------------------------------------------------------
// Bytes of scratch newton_schulz needs (0 when batch, rows or cols is 0).
size_t newton_schulz_workspace_bytes(int64_t batch, int64_t rows, int64_t cols);
// out[b] = NS(x[b]) for `batch` contiguous f32 [rows, cols] matrices; out must not overlap x.
void newton_schulz(float* out, const float* x, int64_t batch, int64_t rows, int64_t cols,
                   int32_t steps, float coef_a, float coef_b, float coef_c, float eps,
                   void* workspace);

// ---- cholesky.cc --------------------------------------------------------------------------
// Bytes of scratch cholesky_inverse needs (0 when batch or d is 0). Depends on the size of
// compute_pool() (one double-precision work area per matrix processed concurrently).
size_t cholesky_inverse_workspace_bytes(int64_t batch, int64_t d);
// kinv[b] = (k[b] + ridge I)^-1 with ridge = ridge_mult * trace(k[b]) / d + ridge_eps, computed
// in double precision and stored as a full symmetric f32 matrix; info[b] = 0, i (leading minor
// of order i not positive definite) or -1 (non-finite input), with kinv[b] = I on failure.
// k[b] is read as its symmetric part (k + k^T) / 2 (the same matrix when k is symmetric).
// kinv may be exactly k (each matrix is read completely before it is written).
void cholesky_inverse(float* kinv, const float* k, int32_t* info, int64_t batch, int64_t d,
                      float ridge_mult, float ridge_eps, void* workspace);

// ---- optim_updates.cc ---------------------------------------------------------------------
// buf = momentum*buf + g; u = nesterov ? g + momentum*buf : buf. u may alias g.
void momentum_update(float* buf, float* u, const float* g, int64_t n, float momentum,
                     bool nesterov);
// w = decay*w - step*u
void apply_update(float* w, const float* u, int64_t n, float decay, float step);
// PyTorch's AdamW step (see nm_adamw_scalars in core/backend.h).
void adamw_update(float* w, const float* g, float* m, float* v, int64_t n,
                  const nm_adamw_scalars& s);

}  // namespace nm::cpu

#endif  // NM_CPU_OPTIM_KERNELS_H
