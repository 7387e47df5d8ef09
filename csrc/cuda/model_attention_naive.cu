// attention_forward / attention_backward: the entry points (argument checks, the algorithm
// choice) and the "naive" implementation; the fused flash kernels are in model_attention_flash.cu,
// the bf16 tensor-core ones ('flash-bf16') in model_attention_flash_bf16.cu.
//
// Naive = batched cuBLAS GEMMs (f32 in, f32 accumulate, no TF32: the handle's default math mode)
// over a materialised [H, T, T] score matrix per batch entry, plus row kernels:
//   forward:  S = scale * Q K^T  ->  P = causal softmax(S) in place, lse written  ->  O = P V
//   backward: S = scale * Q K^T, dP = dO V^T  ->  P = exp(S - lse), dS = P (dP - delta) in place
//             ->  dV = P^T dO,  dQ = scale * dS K,  dK = scale * dS^T Q
// The H heads of one batch entry are one strided-batched GEMM: head h of q/k/v is the [T, D]
// matrix at column h*D of the qkv rows (leading dimension 3C, batch stride D), so q, k, v, out
// and dqkv are read and written in place, without copies. The batch entries run one after the
// other, reusing one scratch block (stream-ordered), which bounds the scratch to H*T*T floats
// (two such for the backward). The upper triangle of S is computed and then zeroed: simple, and
// at most twice the minimal GEMM work; this path is the reference the flash kernels are checked
// against, and the fallback for head dims they do not support.
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "attention_flash_kernels.cuh"  // row_dot_kernel, shared with the flash path
#include "block_reduce.cuh"
#include "check.h"
#include "context.h"
#include "model_attention.h"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

constexpr int kRowThreads = 256;

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  }
  return v;
}

// Maximum of v over the block, returned to every thread. blockDim.x a multiple of 32.
__device__ __forceinline__ float block_max_all(float v) {
  NM_SHARED_ARRAY(float, warp_maxes, 32);
  v = warp_max(v);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // an earlier call's readers are done with warp_maxes
  if (lane == 0) warp_maxes[warp] = v;
  __syncthreads();
  v = lane < (int)(blockDim.x >> 5) ? warp_maxes[lane] : -INFINITY;
  return warp_max(v);
}

// One block per row of the [H, T, T] scores of one batch entry (row = h*T + i): the causal
// softmax over keys 0..i in place (keys past i set to 0), lse[row] = max + log(sum), with the sum
// of the exponentials in double (deterministic block reduction).
__global__ void softmax_rows_kernel(float* s, float* lse, int64_t t) {
  const int64_t row = blockIdx.x;
  const int64_t n = row % t + 1;  // keys 0..i
  float* x = s + row * t;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = fmaxf(m, x[j]);
  m = block_max_all(m);
  double acc = 0.0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) acc += (double)expf(x[j] - m);
  acc = block_sum(acc);
  NM_SHARED_VAR(double, total);
  if (threadIdx.x == 0) {
    total = acc;
    lse[row] = (float)((double)m + log(acc));
  }
  __syncthreads();
  const float inv = (float)(1.0 / total);
  for (int64_t j = threadIdx.x; j < t; j += blockDim.x) {
    x[j] = j < n ? __fmul_rn(expf(x[j] - m), inv) : 0.0f;
  }
}

// One block per row (h*T + i) of one batch entry: s (scaled scores) becomes P = exp(s - lse)
// and dp becomes dS = P * (dp - delta), both zero past key i.
__global__ void softmax_backward_rows_kernel(float* s, float* dp, const float* lse,
                                             const float* delta, int64_t t) {
  const int64_t row = blockIdx.x;
  const int64_t n = row % t + 1;
  float* x = s + row * t;
  float* y = dp + row * t;
  const float l = lse[row], di = delta[row];
  for (int64_t j = threadIdx.x; j < t; j += blockDim.x) {
    float p = 0.0f, ds = 0.0f;
    if (j < n) {
      p = expf(x[j] - l);
      ds = __fmul_rn(p, __fsub_rn(y[j], di));
    }
    x[j] = p;
    y[j] = ds;
  }
}

// Row-major strided-batched f32 GEMM C[i] = alpha op(A[i]) op(B[i]) + beta C[i] through cuBLAS
// (column-major): C^T = op(B)^T op(A)^T, see gemm.cu. The batches' C matrices interleave (head h
// of out starts D columns after head h-1), column blocks that never write the same element, a
// layout the gemm op accepts too.
nm_status sgemm(nm_backend* be, const char* op, bool trans_a, bool trans_b, int64_t m, int64_t n,
                int64_t k, float alpha, const float* a, int64_t lda, int64_t stride_a,
                const float* b, int64_t ldb, int64_t stride_b, float beta, float* c, int64_t ldc,
                int64_t stride_c, int64_t batch) {
  NM_CUBLAS_CHECK(op, cublasGemmStridedBatchedEx(
                          be->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                          trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, (int)n, (int)m, (int)k, &alpha, b,
                          CUDA_R_32F, (int)ldb, (long long)stride_b, a, CUDA_R_32F, (int)lda,
                          (long long)stride_a, &beta, c, CUDA_R_32F, (int)ldc,
                          (long long)stride_c, (int)batch, CUBLAS_COMPUTE_32F,
                          CUBLAS_GEMM_DEFAULT));
  return NM_OK;
}

// Shared argument checks of both ops; *total = b*t*3*heads*head_dim.
nm_status check_dims(const char* op, int64_t b, int64_t t, int64_t heads, int64_t head_dim,
                     float scale, int32_t algo, int64_t* total) {
  if (b < 0 || t < 0 || heads < 0 || head_dim < 0) {
    return fail_invalid(op, "b, t, heads, head_dim must be >= 0 (got %lld, %lld, %lld, %lld)",
                        (long long)b, (long long)t, (long long)heads, (long long)head_dim);
  }
  if (algo != NM_ATTN_AUTO && algo != NM_ATTN_NAIVE && algo != NM_ATTN_FLASH &&
      algo != NM_ATTN_FLASH_BF16) {
    return fail_invalid(op, "algo must be NM_ATTN_AUTO (0), NM_ATTN_NAIVE (1), NM_ATTN_FLASH (2) "
                            "or NM_ATTN_FLASH_BF16 (3), got %d", (int)algo);
  }
  if (!isfinite(scale)) return fail_invalid(op, "scale must be finite, got %g", (double)scale);
  int64_t rows = 0, width = 0;
  if (__builtin_mul_overflow(b, t, &rows) || __builtin_mul_overflow(heads, head_dim, &width) ||
      __builtin_mul_overflow(width, (int64_t)3, &width) ||
      __builtin_mul_overflow(rows, width, total) || *total > INT64_MAX / 8) {
    return fail_invalid(op, "b*t*3*heads*head_dim overflows");
  }
  // cuBLAS and the kernels take these as int.
  if (t > INT_MAX / 2 || width > INT_MAX / 2 || heads > INT_MAX / 2) {
    return fail_invalid(op, "t and 3*heads*head_dim must be < 2^30");
  }
  return NM_OK;
}

bool spans_overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
  return a_bytes != 0 && b_bytes != 0 && x < y + b_bytes && y < x + a_bytes;
}

enum class Impl { kNaive, kFlash, kFlashBf16 };

// AUTO: flash for head_dim 64, naive otherwise. AUTO deliberately never picks flash-bf16: its
// kernels are verified in host emulation only and have not yet run on a GPU (docs/GPU.md); make
// it the default only after the CUDA suites pass on hardware. FLASH / FLASH_BF16 with a head_dim
// they have no kernel for fail here, before anything is enqueued.
nm_status pick_impl(const char* op, int32_t algo, int64_t head_dim, Impl* impl) {
  if (algo == NM_ATTN_NAIVE) {
    *impl = Impl::kNaive;
  } else if (algo == NM_ATTN_FLASH) {
    if (!flash_supports_head_dim(head_dim)) {
      return fail_invalid(op, "the flash algorithm supports head_dim 16, 32 and 64, got %lld "
                              "(use NM_ATTN_NAIVE or NM_ATTN_AUTO)", (long long)head_dim);
    }
    *impl = Impl::kFlash;
  } else if (algo == NM_ATTN_FLASH_BF16) {
    if (!flash_bf16_supports_head_dim(head_dim)) {
      return fail_invalid(op, "the flash-bf16 algorithm supports head_dim 64 only on CUDA, got "
                              "%lld (use NM_ATTN_NAIVE or NM_ATTN_AUTO)", (long long)head_dim);
    }
    *impl = Impl::kFlashBf16;
  } else {
    *impl = head_dim == 64 ? Impl::kFlash : Impl::kNaive;
  }
  return NM_OK;
}

}  // namespace

nm_status attention_row_dot(nm_backend* be, const char* op, float* delta, const float* dout,
                            const float* out, const AttentionDims& g) {
  const int64_t rows = g.b * g.heads * g.t;
  const int64_t warps_per_block = flash_f32::kRowDotThreads / 32;
  int64_t blocks = (rows + warps_per_block - 1) / warps_per_block;
  const int64_t cap = (int64_t)(be->sm_count > 0 ? be->sm_count : 1) * 32;
  if (blocks > cap) blocks = cap;
  if (blocks < 1) blocks = 1;
  NM_CUDA_LAUNCH((unsigned)blocks, flash_f32::kRowDotThreads, 0, be->stream,
                 flash_f32::row_dot_kernel)(delta, dout, out, rows, g.t, g.heads, g.head_dim);
  NM_CUDA_CHECK_LAUNCH(op, "row_dot_kernel");
  return NM_OK;
}

// The row kernels run one block per (head, query) row of a batch entry.
static nm_status check_rows(const char* op, const AttentionDims& g) {
  if (g.heads * g.t > INT_MAX) {
    return fail_invalid(op, "heads*t (%lld) must be <= %d for the naive algorithm",
                        (long long)(g.heads * g.t), INT_MAX);
  }
  return NM_OK;
}

nm_status attention_forward_naive(nm_backend* be, const char* op, float* out, float* lse,
                                  const float* qkv, const AttentionDims& g) {
  NM_TRY(check_rows(op, g));
  const int64_t t = g.t, h = g.heads, d = g.head_dim, c = h * d;
  const int64_t tt = t * t;
  Scratch scratch(be, op);
  NM_TRY(scratch.alloc((size_t)(h * tt) * sizeof(float)));
  float* s = reinterpret_cast<float*>(scratch.bytes());
  for (int64_t b = 0; b < g.b; b++) {
    const float* q = qkv + b * t * 3 * c;  // head hh: columns hh*d of q, k (+c), v (+2c)
    // S[hh] = scale * Q[hh] K[hh]^T   ([T, T], row stride T)
    NM_TRY(sgemm(be, op, false, true, t, t, d, g.scale, q, 3 * c, d, q + c, 3 * c, d, 0.0f, s, t,
                 tt, h));
    NM_CUDA_LAUNCH((unsigned)(h * t), kRowThreads, 0, be->stream, softmax_rows_kernel)(
        s, lse + b * h * t, t);
    NM_CUDA_CHECK_LAUNCH(op, "softmax_rows_kernel");
    // O[hh] = P[hh] V[hh], written at column hh*d of the out rows (row stride C)
    NM_TRY(sgemm(be, op, false, false, t, d, t, 1.0f, s, t, tt, q + 2 * c, 3 * c, d, 0.0f,
                 out + b * t * c, c, d, h));
  }
  return scratch.release();
}

nm_status attention_backward_naive(nm_backend* be, const char* op, float* dqkv,
                                   const float* dout, const float* qkv, const float* out,
                                   const float* lse, const AttentionDims& g) {
  NM_TRY(check_rows(op, g));
  const int64_t t = g.t, h = g.heads, d = g.head_dim, c = h * d;
  const int64_t tt = t * t;
  const size_t score_bytes = align256((size_t)(h * tt) * sizeof(float));
  Scratch scratch(be, op);
  NM_TRY(scratch.alloc(2 * score_bytes + (size_t)(g.b * h * t) * sizeof(float)));
  float* s = reinterpret_cast<float*>(scratch.bytes());
  float* dp = reinterpret_cast<float*>(scratch.bytes() + score_bytes);
  float* delta = reinterpret_cast<float*>(scratch.bytes() + 2 * score_bytes);
  NM_TRY(attention_row_dot(be, op, delta, dout, out, g));
  for (int64_t b = 0; b < g.b; b++) {
    const float* q = qkv + b * t * 3 * c;
    const float* go = dout + b * t * c;
    float* dq = dqkv + b * t * 3 * c;
    NM_TRY(sgemm(be, op, false, true, t, t, d, g.scale, q, 3 * c, d, q + c, 3 * c, d, 0.0f, s, t,
                 tt, h));  // S = scale Q K^T
    NM_TRY(sgemm(be, op, false, true, t, t, d, 1.0f, go, c, d, q + 2 * c, 3 * c, d, 0.0f, dp, t,
                 tt, h));  // dP = dO V^T
    NM_CUDA_LAUNCH((unsigned)(h * t), kRowThreads, 0, be->stream, softmax_backward_rows_kernel)(
        s, dp, lse + b * h * t, delta + b * h * t, t);
    NM_CUDA_CHECK_LAUNCH(op, "softmax_backward_rows_kernel");
    // dV = P^T dO, dQ = scale dS K, dK = scale dS^T Q; each into its columns of the dqkv rows.
    NM_TRY(sgemm(be, op, true, false, t, d, t, 1.0f, s, t, tt, go, c, d, 0.0f, dq + 2 * c, 3 * c,
                 d, h));
    NM_TRY(sgemm(be, op, false, false, t, d, t, g.scale, dp, t, tt, q + c, 3 * c, d, 0.0f, dq,
                 3 * c, d, h));
    NM_TRY(sgemm(be, op, true, false, t, d, t, g.scale, dp, t, tt, q, 3 * c, d, 0.0f, dq + c,
                 3 * c, d, h));
  }
  return scratch.release();
}

nm_status attention_forward(nm_backend* be, void* out_f32, void* lse_f32, const void* qkv_f32,
                            int64_t b, int64_t t, int64_t heads, int64_t head_dim, float scale,
                            int32_t algo) {
  static const char* const kOp = "attention_forward";
  NM_TRY(enter(be, kOp));
  int64_t total = 0;
  NM_TRY(check_dims(kOp, b, t, heads, head_dim, scale, algo, &total));
  Impl impl = Impl::kNaive;
  NM_TRY(pick_impl(kOp, algo, head_dim, &impl));
  if (b == 0 || t == 0 || heads == 0) return NM_OK;  // nothing to write
  if (head_dim == 0) return fail_invalid(kOp, "head_dim must be >= 1");
  NM_TRY(check_ptr(kOp, "out", out_f32, total));
  NM_TRY(check_ptr(kOp, "lse", lse_f32, total));
  NM_TRY(check_ptr(kOp, "qkv", qkv_f32, total));
  const size_t qkv_bytes = (size_t)total * sizeof(float), out_bytes = qkv_bytes / 3;
  const size_t lse_bytes = (size_t)(b * heads * t) * sizeof(float);
  if (spans_overlap(out_f32, out_bytes, qkv_f32, qkv_bytes) ||
      spans_overlap(lse_f32, lse_bytes, qkv_f32, qkv_bytes) ||
      spans_overlap(out_f32, out_bytes, lse_f32, lse_bytes)) {
    return fail_invalid(kOp, "out, lse and qkv may not overlap");
  }
  const AttentionDims dims{b, t, heads, head_dim, scale};
  float* out = static_cast<float*>(out_f32);
  float* lse = static_cast<float*>(lse_f32);
  const float* qkv = static_cast<const float*>(qkv_f32);
  switch (impl) {
    case Impl::kFlash: return attention_forward_flash(be, kOp, out, lse, qkv, dims);
    case Impl::kFlashBf16: return attention_forward_flash_bf16(be, kOp, out, lse, qkv, dims);
    case Impl::kNaive: break;
  }
  return attention_forward_naive(be, kOp, out, lse, qkv, dims);
}

nm_status attention_backward(nm_backend* be, void* dqkv_f32, const void* dout_f32,
                             const void* qkv_f32, const void* out_f32, const void* lse_f32,
                             int64_t b, int64_t t, int64_t heads, int64_t head_dim, float scale,
                             int32_t algo) {
  static const char* const kOp = "attention_backward";
  NM_TRY(enter(be, kOp));
  int64_t total = 0;
  NM_TRY(check_dims(kOp, b, t, heads, head_dim, scale, algo, &total));
  Impl impl = Impl::kNaive;
  NM_TRY(pick_impl(kOp, algo, head_dim, &impl));
  if (total == 0) return NM_OK;  // dqkv is empty
  NM_TRY(check_ptr(kOp, "dqkv", dqkv_f32, total));
  NM_TRY(check_ptr(kOp, "dout", dout_f32, total));
  NM_TRY(check_ptr(kOp, "qkv", qkv_f32, total));
  NM_TRY(check_ptr(kOp, "out", out_f32, total));
  NM_TRY(check_ptr(kOp, "lse", lse_f32, total));
  const size_t qkv_bytes = (size_t)total * sizeof(float), out_bytes = qkv_bytes / 3;
  const size_t lse_bytes = (size_t)(b * heads * t) * sizeof(float);
  if (spans_overlap(dqkv_f32, qkv_bytes, dout_f32, out_bytes) ||
      spans_overlap(dqkv_f32, qkv_bytes, qkv_f32, qkv_bytes) ||
      spans_overlap(dqkv_f32, qkv_bytes, out_f32, out_bytes) ||
      spans_overlap(dqkv_f32, qkv_bytes, lse_f32, lse_bytes)) {
    return fail_invalid(kOp, "dqkv may not overlap dout, qkv, out or lse");
  }
  const AttentionDims dims{b, t, heads, head_dim, scale};
  float* dqkv = static_cast<float*>(dqkv_f32);
  const float* dout = static_cast<const float*>(dout_f32);
  const float* qkv = static_cast<const float*>(qkv_f32);
  const float* out = static_cast<const float*>(out_f32);
  const float* lse = static_cast<const float*>(lse_f32);
  switch (impl) {
    case Impl::kFlash: return attention_backward_flash(be, kOp, dqkv, dout, qkv, out, lse, dims);
    case Impl::kFlashBf16:
      return attention_backward_flash_bf16(be, kOp, dqkv, dout, qkv, out, lse, dims);
    case Impl::kNaive: break;
  }
  return attention_backward_naive(be, kOp, dqkv, dout, qkv, out, lse, dims);
}

}  // namespace nm_cuda
