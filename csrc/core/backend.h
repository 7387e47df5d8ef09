// The backend interface: one table of ops that every backend (CPU in the addon, CUDA in the
// dlopened module) implements with the same semantics.
//
// Why a C table of function pointers and not a C++ class: the CUDA backend lives in a separate
// shared object (newton_muon_cuda.so) built by a different build system and compiler driver
// (nvcc). A plain C ABI is the one interface that stays stable across that boundary.
//
// Conventions shared by every op:
// - Memory is row-major and contiguous unless a stride argument says otherwise. Pointers are
//   device pointers of the backend (host pointers for the CPU backend) and already include any
//   tensor offset.
// - Ops are stream-ordered: a call validates its arguments, enqueues the work on the backend's
//   single stream (the CUDA stream, or the CPU backend's work queue) and returns. Work runs in
//   call order. Only fence_wait and synchronize block.
// - Every op returns NM_OK or an error code; on error, last_error() gives a message naming the
//   op. The message is per calling thread (thread-local), so a worker thread waiting on a fence
//   never clobbers the main thread's error.
// - Arithmetic on f32/bf16 data is done in f32; bf16 is storage only. f32 -> bf16 rounds to
//   nearest even (NaN stays NaN).
#ifndef NM_CORE_BACKEND_H
#define NM_CORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Bumped whenever the table below changes shape; the addon refuses a module with another value.
#define NM_BACKEND_ABI_VERSION 3u

typedef enum nm_dtype {
  NM_F32 = 0,
  NM_BF16 = 1,
  NM_I32 = 2,  // token ids
  NM_U16 = 3,  // tokens as stored in shards
} nm_dtype;

typedef enum nm_status {
  NM_OK = 0,
  NM_ERR_INVALID = 1,      // bad argument (the caller should have caught it; defence in depth)
  NM_ERR_OUT_OF_MEMORY = 2,
  NM_ERR_DEVICE = 3,       // CUDA / cuBLAS / driver failure
  NM_ERR_UNAVAILABLE = 4,  // backend cannot run here (no device, no driver)
} nm_status;

typedef enum nm_binary_op { NM_ADD = 0, NM_SUB = 1, NM_MUL = 2 } nm_binary_op;

typedef struct nm_backend nm_backend;  // one per device: owns the stream and the handles
typedef struct nm_fence nm_fence;      // a recorded point in the stream

// C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b] for b in [0, batch), row-major.
// op(A) is [m, k] (A is [k, m] when trans_a), op(B) is [k, n] (B is [n, k] when trans_b).
// lda/ldb/ldc are row strides in elements; stride_* are batch strides in elements. The batches'
// C matrices may not overlap: stride_c >= (m-1)*ldc + n, or column blocks of the same rows
// (stride_c >= n and (batch-1)*stride_c + n <= ldc, as in a block-diagonal right product).
// A and B share a dtype (f32 or bf16); C is f32 or bf16. Accumulation is always f32.
// When beta == 0, C is not read (NaN in C does not propagate), as in BLAS.
typedef struct nm_gemm_args {
  int32_t trans_a, trans_b;
  int64_t m, n, k;
  float alpha, beta;
  const void* a; int64_t lda; int64_t stride_a;
  const void* b; int64_t ldb; int64_t stride_b;
  void* c; int64_t ldc; int64_t stride_c;
  nm_dtype ab_dtype;
  nm_dtype c_dtype;
  int64_t batch;
} nm_gemm_args;

// The per-step AdamW scalars. The caller forms them in double precision and rounds each to f32
// once (1 - beta2 cancels badly when computed in f32 from an f32 beta2 near 1):
// keep = 1 - lr*weight_decay, step_size = lr / (1 - beta1^t), sqrt_bias2 = sqrt(1 - beta2^t).
typedef struct nm_adamw_scalars {
  float keep;
  float beta1, one_minus_beta1;
  float beta2, one_minus_beta2;
  float step_size;
  float sqrt_bias2;
  float eps;
} nm_adamw_scalars;

typedef struct nm_backend_ops {
  uint32_t abi_version;  // NM_BACKEND_ABI_VERSION
  const char* name;      // "cpu" or "cuda"

  // ---- lifecycle -------------------------------------------------------------------------
  // create(): NULL on failure with the reason written to err (e.g. "no CUDA-capable device").
  nm_backend* (*create)(int device_index, char* err, size_t err_len);
  void (*destroy)(nm_backend* be);
  const char* (*last_error)(void);
  // A one-line JSON object describing the device (name, memory, versions...).
  nm_status (*describe)(nm_backend* be, char* buf, size_t buf_len);

  // ---- memory ----------------------------------------------------------------------------
  // alloc is immediate (usable by ops enqueued after it); free is stream-ordered: the memory
  // is released once all previously enqueued work is done. Allocations are 256-byte aligned.
  nm_status (*alloc)(nm_backend* be, size_t bytes, void** out);
  nm_status (*free)(nm_backend* be, void* ptr);
  // Host staging memory for downloads (pinned on CUDA so copies are truly asynchronous).
  nm_status (*host_alloc)(nm_backend* be, size_t bytes, void** out);
  nm_status (*host_free)(nm_backend* be, void* ptr);  // only after the fence covering its use

  // ---- copies ----------------------------------------------------------------------------
  // upload: the backend snapshots host_src before returning; the caller may reuse it at once.
  nm_status (*upload)(nm_backend* be, void* dst, const void* host_src, size_t bytes);
  // download: host_dst must come from host_alloc; its contents are valid after a fence wait.
  nm_status (*download)(nm_backend* be, void* host_dst, const void* src, size_t bytes);
  nm_status (*copy)(nm_backend* be, void* dst, const void* src, size_t bytes);
  // rows x row_bytes block copy with byte strides between rows (strided row-slices).
  nm_status (*copy_rows)(nm_backend* be, void* dst, int64_t dst_stride_bytes, const void* src,
                         int64_t src_stride_bytes, int64_t rows, int64_t row_bytes);

  // ---- fill / cast -----------------------------------------------------------------------
  // value is converted to the dtype (rounded to nearest even for bf16, truncated toward zero
  // for integers; the caller guarantees integer values are in range).
  nm_status (*fill)(nm_backend* be, void* dst, nm_dtype dtype, int64_t n, double value);
  // Supported pairs: f32<->bf16, f32->f32, bf16->bf16, u16->i32, i32->f32.
  nm_status (*cast)(nm_backend* be, void* dst, nm_dtype dst_dtype, const void* src,
                    nm_dtype src_dtype, int64_t n);

  // ---- elementwise (f32 or bf16, every operand the same dtype, out may alias inputs) ------
  nm_status (*binary)(nm_backend* be, nm_binary_op op, void* out, const void* a, const void* b,
                      nm_dtype dtype, int64_t n);
  // out = alpha * x
  nm_status (*scale)(nm_backend* be, void* out, const void* x, float alpha, nm_dtype dtype,
                     int64_t n);
  // y = y + alpha * x
  nm_status (*axpy)(nm_backend* be, void* y, const void* x, float alpha, nm_dtype dtype,
                    int64_t n);

  // ---- reductions (x f32 or bf16; out is one f32 in device memory; n may be 0 -> 0) --------
  // Deterministic: the same input gives the same bits on every run of a backend.
  nm_status (*sum)(nm_backend* be, void* out_f32, const void* x, nm_dtype dtype, int64_t n);
  nm_status (*sum_squares)(nm_backend* be, void* out_f32, const void* x, nm_dtype dtype,
                           int64_t n);

  // ---- matrix multiply -------------------------------------------------------------------
  nm_status (*gemm)(nm_backend* be, const nm_gemm_args* args);

  // ---- ordering --------------------------------------------------------------------------
  // fence_create records the current end of the stream (call it on the thread that enqueues).
  // fence_wait blocks until that point has run; it may be called from any thread and reports
  // asynchronous device errors. fence_destroy may be called right after fence_wait.
  nm_status (*fence_create)(nm_backend* be, nm_fence** out);
  nm_status (*fence_wait)(nm_backend* be, nm_fence* fence);
  void (*fence_destroy)(nm_backend* be, nm_fence* fence);

  // ---- optimizer ops (Newton-Muon / Muon / AdamW; see shared spec/newton-muon.md) ----------
  // Quintic Newton-Schulz approximation of msgn for `batch` independent f32 matrices x[b] of
  // [rows, cols] (contiguous, batch stride rows*cols), written to out (f32, same layout; out may
  // not alias x). Per matrix: X = x / (||x||_F + eps); if rows > cols work on X^T; `steps` times
  // A = X X^T; B = coef_b*A + coef_c*A A; X = coef_a*X + B X; transpose back.
  // CPU computes in f32; CUDA uses bf16 operands with f32 accumulation (documented difference).
  nm_status (*newton_schulz)(nm_backend* be, void* out_f32, const void* x_f32, int64_t batch,
                             int64_t rows, int64_t cols, int32_t steps, float coef_a,
                             float coef_b, float coef_c, float eps);
  // For each of `batch` f32 [d, d] matrices k[b] (symmetric positive semi-definite):
  //   ridge = ridge_mult * trace(k[b]) / d + ridge_eps
  //   kinv[b] = (k[b] + ridge I)^-1 via Cholesky (full symmetric matrix written)
  // info_i32[b] = 0 on success, i > 0 if the leading minor of order i was not positive definite,
  // -1 if k[b] had a non-finite value; a failed matrix gets kinv[b] = I. k is not modified.
  nm_status (*cholesky_inverse)(nm_backend* be, void* kinv_f32, const void* k_f32,
                                void* info_i32, int64_t batch, int64_t d, float ridge_mult,
                                float ridge_eps);
  // Momentum on f32 vectors of n: buf = momentum * buf + g; then
  // u = g + momentum * buf (nesterov != 0) or u = buf. u may alias g.
  nm_status (*momentum_update)(nm_backend* be, void* buf_f32, void* u_f32, const void* g_f32,
                               int64_t n, float momentum, int32_t nesterov);
  // w = decay * w - step * u  (w f32, u f32; decay = 1 - lr*weight_decay, step = lr*scale).
  nm_status (*apply_update)(nm_backend* be, void* w_f32, const void* u_f32, int64_t n,
                            float decay, float step);
  // AdamW as PyTorch computes it, all f32 vectors of n (scalars in nm_adamw_scalars):
  //   w *= keep; m = beta1*m + one_minus_beta1*g; v = beta2*v + one_minus_beta2*g^2;
  //   w -= step_size * m / (sqrt(v) / sqrt_bias2 + eps)
  nm_status (*adamw_update)(nm_backend* be, void* w_f32, const void* g_f32, void* m_f32,
                            void* v_f32, int64_t n, const nm_adamw_scalars* scalars);

  // ---- GPT-2 model ops (see shared spec/speedrun-124m.md) --------------------------------
  // Activations are row-major [n = B*T, width]. Backward ops write (accumulate == 0) or add to
  // (accumulate != 0) their input gradient. Where an out_dtype is taken it is f32 or bf16 (the
  // next GEMM's operand dtype); everything else is f32.

  // out[i, :] = wte[ids[i], :] for i < n; ids are i32 in [0, vocab) (the caller checks).
  nm_status (*embedding_forward)(nm_backend* be, void* out_f32, const void* wte_f32,
                                 const void* ids_i32, int64_t n, int64_t c);
  // dwte[v, :] += sum over i with ids[i] == v of dout[i, :], summed in increasing i for every v
  // (deterministic: no float atomics whose order could change the bits).
  nm_status (*embedding_backward)(nm_backend* be, void* dwte_f32, const void* dout_f32,
                                  const void* ids_i32, int64_t n, int64_t c, int64_t vocab);
  // Weightless RMSNorm per row: rstd[i] = 1/sqrt(mean_j x[i,j]^2 + eps); out = x * rstd[i].
  nm_status (*rmsnorm_forward)(nm_backend* be, void* out, nm_dtype out_dtype, void* rstd_f32,
                               const void* x_f32, int64_t n, int64_t c, float eps);
  // dx[i,:] (=|+=) rstd*dout[i,:] - x[i,:] * rstd^3 * mean_j(dout[i,j] * x[i,j]).
  nm_status (*rmsnorm_backward)(nm_backend* be, void* dx_f32, const void* dout_f32,
                                const void* x_f32, const void* rstd_f32, int64_t n, int64_t c,
                                int32_t accumulate);
  // Exact GELU: out = x * 0.5 * (1 + erf(x / sqrt(2))).
  nm_status (*gelu_forward)(nm_backend* be, void* out, nm_dtype out_dtype, const void* x_f32,
                            int64_t n);
  // dx = dout * (Phi(x) + x * phi(x)) (written, never accumulated).
  nm_status (*gelu_backward)(nm_backend* be, void* dx_f32, const void* dout_f32,
                             const void* x_f32, int64_t n);
  // Rotary embedding, in place, on the q and k parts of a fused qkv buffer [B, T, 3, H, D]
  // (q = columns [0, C), k = [C, 2C), v untouched; C = H*D). Half-split form per head, with
  // x1 = x[:D/2], x2 = x[D/2:], freq_j = base^(-2j/D), angle = t * freq_j:
  //   y1 = x1 cos + x2 sin;  y2 = -x1 sin + x2 cos          (inverse = 0, forward)
  // inverse != 0 applies the transposed rotation (the backward of the forward).
  nm_status (*rotary)(nm_backend* be, void* qkv_f32, int64_t b, int64_t t, int64_t heads,
                      int64_t head_dim, float base, int32_t inverse);
  // Causal softmax attention reading q, k, v from qkv [B, T, 3, H, D] and writing out [B, T, H, D]
  // (= [B*T, C], the c_proj input) and lse [B, H, T] = log-sum-exp of each row of scaled scores
  // (natural log, kept for backward). algo (NM_ATTN_*, below):
  //   AUTO, NAIVE, FLASH: exact softmax attention computed in f32. The CPU has one
  //     implementation for all three; CUDA has naive (cuBLAS) and flash (fused, f32 CUDA cores,
  //     head dims 16, 32, 64) and AUTO picks flash for head dim 64, naive otherwise.
  //   FLASH_BF16: the same attention with bf16 operands, precisely (r = f32 -> bf16 rounding to
  //     nearest even; s2_ij = (r(q_i) . r(k_j)) * f32(scale * log2(e)); keys j <= i):
  //       forward:  out_i = sum_j r(2^(s2_ij - M_i)) r(v_j) / l_i,  l_i = sum_j 2^(s2_ij - M_i),
  //                 lse_i = (M_i + log2(l_i)) ln 2, where M_i is an integer (ceil of the row's
  //                 running maximum of s2): r(2^(s2 - M)) 2^M is the same for every integer M,
  //                 so the rounded probabilities are r(e^{s_ij}) whatever the tiling;
  //       backward: dO^ = r(dout); delta_i = dO^_i . out_i; p_ij = 2^(s2_ij - lse_i log2(e));
  //                 ds_ij = p_ij (dO^_i . r(v_j) - delta_i);
  //                 dV_j = sum_i r(p_ij) dO^_i,  dK_j = scale sum_i r(ds_ij) r(q_i),
  //                 dQ_i = scale sum_j r(ds_ij) r(k_j).
  //     Scores, softmax statistics and all sums are f32 or wider. CUDA: tensor cores (wmma), head
  //     dim 64 only (other head dims: NM_ERR_INVALID); CPU: any head dim. Never chosen by AUTO.
  nm_status (*attention_forward)(nm_backend* be, void* out_f32, void* lse_f32,
                                 const void* qkv_f32, int64_t b, int64_t t, int64_t heads,
                                 int64_t head_dim, float scale, int32_t algo);
  // Writes dqkv [B, T, 3, H, D] (dq, dk, dv) from dout [B, T, H, D] and the forward's qkv, out
  // and lse (attention probabilities are recomputed, never stored).
  nm_status (*attention_backward)(nm_backend* be, void* dqkv_f32, const void* dout_f32,
                                  const void* qkv_f32, const void* out_f32, const void* lse_f32,
                                  int64_t b, int64_t t, int64_t heads, int64_t head_dim,
                                  float scale, int32_t algo);
  // Softmax cross-entropy on logits [n, vocab] (f32) with i32 targets in [0, vocab):
  // losses[i] = logsumexp(logits[i]) - logits[i, targets[i]]. When grad_scale != 0 the logits
  // are overwritten in place by grad_scale * (softmax(logits[i]) - onehot(targets[i])), so no
  // second [n, vocab] buffer exists; when grad_scale == 0 the logits are left unchanged.
  nm_status (*cross_entropy)(nm_backend* be, void* losses_f32, void* logits_f32,
                             const void* targets_i32, int64_t n, int64_t vocab, float grad_scale);
} nm_backend_ops;

// attention algo values
#define NM_ATTN_AUTO 0
#define NM_ATTN_NAIVE 1
#define NM_ATTN_FLASH 2
#define NM_ATTN_FLASH_BF16 3  // bf16 operands (tensor cores on CUDA), see attention_forward

// Size in bytes of one element of dtype (0 for an unknown value).
static inline size_t nm_dtype_size(nm_dtype dtype) {
  switch (dtype) {
    case NM_F32: return 4;
    case NM_BF16: return 2;
    case NM_I32: return 4;
    case NM_U16: return 2;
  }
  return 0;
}

// The dtype's name as the TypeScript layer spells it ("unknown" for an unknown value).
static inline const char* nm_dtype_name(nm_dtype dtype) {
  switch (dtype) {
    case NM_F32: return "f32";
    case NM_BF16: return "bf16";
    case NM_I32: return "i32";
    case NM_U16: return "u16";
  }
  return "unknown";
}

// The symbol the CUDA module exports. Returns NULL (with a reason in err) when abi_version does
// not match the module's.
typedef const nm_backend_ops* (*nm_backend_entry_fn)(uint32_t abi_version, char* err,
                                                     size_t err_len);
#define NM_CUDA_ENTRY_SYMBOL "nm_cuda_backend_ops"

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // NM_CORE_BACKEND_H
