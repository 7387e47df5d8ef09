// newton_schulz: the quintic Newton-Schulz iteration that approximates msgn(x) for `batch`
// independent f32 matrices of [rows, cols], in bf16 with f32 accumulation (cuBLAS GEMMs).
//
// Per matrix: X = x / (||x||_F + eps), then `steps` times
//   rows <= cols:  A = X X^T;  B = b*A + c*A A;  X = a*X + B X
//   rows >  cols:  A = X^T X;  B = b*A + c*A A;  X = a*X + X B^T
// The second line is the first one applied to X^T and transposed back ((B X^T)^T = X B^T), so no
// matrix is ever transposed in memory: only the GEMMs' transpose flags change. A is the smaller
// Gram matrix either way. Each "+ coef * matrix" term is cuBLAS's beta*C on a copy, so every step
// is three batched GEMMs and two device copies, rounded to bf16 once per GEMM.
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

#include <algorithm>

#include "block_reduce.cuh"
#include "check.h"
#include "context.h"
#include "dtypes.cuh"
#include "gemm.h"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

constexpr int kMaxNormBlocksPerMatrix = 64;

// Pass 1 of the per-matrix Frobenius norms: blockIdx.y is the matrix, blockIdx.x one of
// gridDim.x slices of it. Fixed shape, fixed order: deterministic.
__global__ void norm_partials_kernel(const float* x, int64_t per_matrix, double* partials) {
  const float* m = x + (int64_t)blockIdx.y * per_matrix;
  double acc = 0.0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < per_matrix;
       i += (int64_t)gridDim.x * blockDim.x) {
    const double v = (double)m[i];
    acc += v * v;
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) partials[(int64_t)blockIdx.y * gridDim.x + blockIdx.x] = acc;
}

// Pass 2: one block per matrix; denom[b] = ||x[b]||_F + eps (f32, as the CPU computes it).
__global__ void norm_final_kernel(const double* partials, int per_matrix_blocks, float eps,
                                  float* denom) {
  const double* p = partials + (int64_t)blockIdx.x * per_matrix_blocks;
  double acc = 0.0;
  for (int i = (int)threadIdx.x; i < per_matrix_blocks; i += (int)blockDim.x) acc += p[i];
  acc = block_sum(acc);
  if (threadIdx.x == 0) denom[blockIdx.x] = __fadd_rn((float)sqrt(acc), eps);
}

// X = bf16(x / denom[matrix])
__global__ void normalize_kernel(__nv_bfloat16* out, const float* x, const float* denom,
                                 int64_t per_matrix, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    out[i] = __float2bfloat16_rn(__fdiv_rn(x[i], denom[i / per_matrix]));
  }
}

__global__ void widen_kernel(float* out, const __nv_bfloat16* x, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) out[i] = __bfloat162float(x[i]);
}

// A batched bf16 GEMM over contiguous matrices (row strides = widths, batch strides = sizes).
nm_status bf16_gemm(nm_backend* be, const char* op, int64_t batch, bool trans_a, bool trans_b,
                    int64_t m, int64_t n, int64_t k, float alpha, const __nv_bfloat16* a,
                    int64_t lda, int64_t stride_a, const __nv_bfloat16* b, int64_t ldb,
                    int64_t stride_b, float beta, __nv_bfloat16* c, int64_t ldc,
                    int64_t stride_c) {
  nm_gemm_args g;
  g.trans_a = trans_a ? 1 : 0;
  g.trans_b = trans_b ? 1 : 0;
  g.m = m;
  g.n = n;
  g.k = k;
  g.alpha = alpha;
  g.beta = beta;
  g.a = a;
  g.lda = lda;
  g.stride_a = stride_a;
  g.b = b;
  g.ldb = ldb;
  g.stride_b = stride_b;
  g.c = c;
  g.ldc = ldc;
  g.stride_c = stride_c;
  g.ab_dtype = NM_BF16;
  g.c_dtype = NM_BF16;
  g.batch = batch;
  return gemm_checked(be, g, op);
}

}  // namespace

nm_status newton_schulz(nm_backend* be, void* out_f32, const void* x_f32, int64_t batch,
                        int64_t rows, int64_t cols, int32_t steps, float coef_a, float coef_b,
                        float coef_c, float eps) {
  static const char* const kOp = "newton_schulz";
  NM_TRY(enter(be, kOp));
  if (batch < 0 || rows < 0 || cols < 0) {
    return fail_invalid(kOp, "batch, rows, cols must be >= 0 (got %lld, %lld, %lld)",
                        (long long)batch, (long long)rows, (long long)cols);
  }
  if (steps < 0) return fail_invalid(kOp, "steps must be >= 0, got %d", (int)steps);
  if (batch > 65535) {
    return fail_invalid(kOp, "batch (%lld) must be <= 65535 (one grid row per matrix)",
                        (long long)batch);
  }
  int64_t per_matrix = 0, total = 0;
  if (__builtin_mul_overflow(rows, cols, &per_matrix) ||
      __builtin_mul_overflow(batch, per_matrix, &total) || total > INT64_MAX / 8) {
    return fail_invalid(kOp, "batch*rows*cols overflows");
  }
  NM_TRY(check_ptr(kOp, "out", out_f32, total));
  NM_TRY(check_ptr(kOp, "x", x_f32, total));
  if (total == 0) return NM_OK;
  const uintptr_t o = (uintptr_t)out_f32, in_begin = (uintptr_t)x_f32;
  const uintptr_t bytes = (uintptr_t)total * sizeof(float);
  if (o < in_begin + bytes && in_begin < o + bytes) {
    return fail_invalid(kOp, "out may not alias x");
  }

  const bool wide = rows <= cols;  // Gram matrix X X^T ([rows, rows]) or X^T X ([cols, cols])
  const int64_t side = wide ? rows : cols;
  const int64_t gram = side * side;
  const int64_t per_block = (int64_t)kThreads * 8;
  const int norm_blocks = (int)std::min<int64_t>(
      kMaxNormBlocksPerMatrix, std::max<int64_t>(1, (per_matrix + per_block - 1) / per_block));

  // One scratch block: X and its next iterate (bf16), A and B (bf16), norm partials, denominators.
  const size_t x_bytes = align256((size_t)total * sizeof(__nv_bfloat16));
  const size_t gram_bytes = align256((size_t)(batch * gram) * sizeof(__nv_bfloat16));
  const size_t partial_bytes = align256((size_t)(batch * norm_blocks) * sizeof(double));
  const size_t denom_bytes = align256((size_t)batch * sizeof(float));
  Scratch scratch(be, kOp);
  NM_TRY(scratch.alloc(2 * x_bytes + 2 * gram_bytes + partial_bytes + denom_bytes));
  char* base = scratch.bytes();
  __nv_bfloat16* x = reinterpret_cast<__nv_bfloat16*>(base);
  __nv_bfloat16* x_next = reinterpret_cast<__nv_bfloat16*>(base + x_bytes);
  __nv_bfloat16* a = reinterpret_cast<__nv_bfloat16*>(base + 2 * x_bytes);
  __nv_bfloat16* b = reinterpret_cast<__nv_bfloat16*>(base + 2 * x_bytes + gram_bytes);
  double* partials = reinterpret_cast<double*>(base + 2 * x_bytes + 2 * gram_bytes);
  float* denom = reinterpret_cast<float*>(base + 2 * x_bytes + 2 * gram_bytes + partial_bytes);

  // X = x / (||x||_F + eps), in bf16.
  const float* in = static_cast<const float*>(x_f32);
  NM_CUDA_LAUNCH(dim3((unsigned)norm_blocks, (unsigned)batch), kThreads, 0, be->stream,
                 norm_partials_kernel)(in, per_matrix, partials);
  NM_CUDA_CHECK_LAUNCH(kOp, "norm_partials_kernel");
  NM_CUDA_LAUNCH((unsigned)batch, kThreads, 0, be->stream, norm_final_kernel)(
      partials, norm_blocks, eps, denom);
  NM_CUDA_CHECK_LAUNCH(kOp, "norm_final_kernel");
  NM_CUDA_LAUNCH(grid_blocks(be, total), kThreads, 0, be->stream, normalize_kernel)(
      x, in, denom, per_matrix, total);
  NM_CUDA_CHECK_LAUNCH(kOp, "normalize_kernel");

  const size_t gram_copy = (size_t)(batch * gram) * sizeof(__nv_bfloat16);
  const size_t x_copy = (size_t)total * sizeof(__nv_bfloat16);
  for (int32_t step = 0; step < steps; step++) {
    // A = X X^T ([rows, rows]) or X^T X ([cols, cols]); X is [rows, cols] with row stride cols.
    if (wide) {
      NM_TRY(bf16_gemm(be, kOp, batch, false, true, rows, rows, cols, 1.0f, x, cols, per_matrix,
                       x, cols, per_matrix, 0.0f, a, side, gram));
    } else {
      NM_TRY(bf16_gemm(be, kOp, batch, true, false, cols, cols, rows, 1.0f, x, cols, per_matrix,
                       x, cols, per_matrix, 0.0f, a, side, gram));
    }
    // B = c*(A A) + b*A
    NM_CUDA_CHECK(kOp, cudaMemcpyAsync(b, a, gram_copy, cudaMemcpyDeviceToDevice, be->stream));
    NM_TRY(bf16_gemm(be, kOp, batch, false, false, side, side, side, coef_c, a, side, gram, a,
                     side, gram, coef_b, b, side, gram));
    // X_next = B X + a*X  or  X B^T + a*X
    NM_CUDA_CHECK(kOp, cudaMemcpyAsync(x_next, x, x_copy, cudaMemcpyDeviceToDevice, be->stream));
    if (wide) {
      NM_TRY(bf16_gemm(be, kOp, batch, false, false, rows, cols, rows, 1.0f, b, side, gram, x,
                       cols, per_matrix, coef_a, x_next, cols, per_matrix));
    } else {
      NM_TRY(bf16_gemm(be, kOp, batch, false, true, rows, cols, cols, 1.0f, x, cols, per_matrix,
                       b, side, gram, coef_a, x_next, cols, per_matrix));
    }
    __nv_bfloat16* t = x;
    x = x_next;
    x_next = t;
  }

  NM_CUDA_LAUNCH(grid_blocks(be, total), kThreads, 0, be->stream, widen_kernel)(
      static_cast<float*>(out_f32), x, total);
  NM_CUDA_CHECK_LAUNCH(kOp, "widen_kernel");
  return scratch.release();
}

}  // namespace nm_cuda
