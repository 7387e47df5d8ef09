// gemm: C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b], row-major, via cuBLAS.
//
// cuBLAS is column-major. A row-major matrix with row stride ld *is* its transpose in
// column-major with leading dimension ld, so instead of C = op(A) op(B) we ask cuBLAS for
//   C^T = op(B)^T op(A)^T
// i.e. the operands swap places (B first, then A), m and n swap, and each operand keeps its own
// transpose flag. Every ld/stride passes through unchanged.
//
// Accumulation is f32 (CUBLAS_COMPUTE_32F) for both input dtypes; the handle's math mode is the
// default one (set in create), so f32 inputs never go through TF32. cuBLAS has no kernel for f32
// inputs with a bf16 output, so that pair runs an f32 GEMM into a temporary and a small epilogue
// kernel adds beta*C and rounds; the same epilogue handles k == 0 (C = beta*C, or 0 if beta is 0).
#include <cuda_bf16.h>
#include <limits.h>
#include <stdint.h>

#include "../core/gemm_check.h"
#include "check.h"
#include "context.h"
#include "dtypes.cuh"
#include "gemm.h"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

// C = tmp + beta*C elementwise over [batch][m][n] (C strided by ldc/stride_c, tmp contiguous).
// tmp NULL means an empty product (k == 0). beta == 0 never reads C, so NaN there is dropped.
template <typename CT>
__global__ void gemm_epilogue_kernel(CT* c, int64_t ldc, int64_t stride_c, const float* tmp,
                                     float beta, int64_t m, int64_t n, int64_t batch) {
  const int64_t per_batch = m * n;
  const int64_t total = per_batch * batch;
  for (int64_t t = grid_start(); t < total; t += grid_step()) {
    const int64_t b = t / per_batch;
    const int64_t r = t - b * per_batch;
    const int64_t i = r / n;
    const int64_t j = r - i * n;
    const int64_t at = b * stride_c + i * ldc + j;
    float acc = tmp != nullptr ? tmp[t] : 0.0f;
    if (beta != 0.0f) acc = __fadd_rn(acc, __fmul_rn(beta, load_f32(c, at)));
    store_f32(c, at, acc);
  }
}

cudaDataType_t cuda_type(nm_dtype dtype) { return dtype == NM_F32 ? CUDA_R_32F : CUDA_R_16BF; }

nm_status launch_epilogue(nm_backend* be, const nm_gemm_args& g, const float* tmp,
                          const char* op) {
  const int64_t total = g.batch * g.m * g.n;
  const unsigned int blocks = grid_blocks(be, total);
  if (g.c_dtype == NM_F32) {
    NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, gemm_epilogue_kernel<float>)(
        static_cast<float*>(g.c), g.ldc, g.stride_c, tmp, g.beta, g.m, g.n, g.batch);
  } else {
    NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, gemm_epilogue_kernel<__nv_bfloat16>)(
        static_cast<__nv_bfloat16*>(g.c), g.ldc, g.stride_c, tmp, g.beta, g.m, g.n, g.batch);
  }
  NM_CUDA_CHECK_LAUNCH(op, "gemm_epilogue_kernel");
  return NM_OK;
}

// The row-major -> column-major mapping described at the top of the file. c may be a temporary
// (then ldc = n, stride_c = m*n, c_type f32).
nm_status cublas_gemm(nm_backend* be, const nm_gemm_args& g, float beta, void* c, int64_t ldc,
                      int64_t stride_c, cudaDataType_t c_type, const char* op) {
  const cublasOperation_t op_b = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cudaDataType_t ab_type = cuda_type(g.ab_dtype);
  const float alpha = g.alpha;
  NM_CUBLAS_CHECK(op,
                  cublasGemmStridedBatchedEx(
                      be->cublas, op_b, op_a, (int)g.n, (int)g.m, (int)g.k, &alpha,
                      g.b, ab_type, (int)g.ldb, (long long)g.stride_b,
                      g.a, ab_type, (int)g.lda, (long long)g.stride_a,
                      &beta, c, c_type, (int)ldc, (long long)stride_c,
                      (int)g.batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return NM_OK;
}

// The shared rules (core/gemm_check.h) and the limits of cuBLAS's 32-bit interface.
nm_status validate(const nm_gemm_args& g, const char* op) {
  char problem[320];
  if (nm_gemm_args_invalid(&g, problem, sizeof problem)) return fail_invalid(op, "%s", problem);
  // cuBLAS's (32-bit) interface; these are far beyond any matrix this package multiplies.
  const int64_t limits[] = {g.m, g.n, g.k, g.batch, g.lda, g.ldb, g.ldc};
  for (int64_t v : limits) {
    if (v > INT_MAX) {
      return fail_invalid(op, "m, n, k, batch and leading dimensions must be <= %d", INT_MAX);
    }
  }
  // The f32 temporary of the f32 x f32 -> bf16 path holds batch*m*n floats.
  const double elems = (double)g.batch * (double)g.m * (double)g.n;
  if (elems > (double)(INT64_MAX / 8)) return fail_invalid(op, "batch*m*n is too large");
  return NM_OK;
}

}  // namespace

nm_status gemm_checked(nm_backend* be, const nm_gemm_args& g, const char* op) {
  NM_TRY(validate(g, op));
  if (g.m == 0 || g.n == 0 || g.batch == 0) return NM_OK;

  if (g.k == 0) return launch_epilogue(be, g, nullptr, op);  // empty product: C = beta*C

  if (g.ab_dtype == NM_BF16 || g.c_dtype == NM_F32) {
    // bf16 x bf16 -> f32/bf16 and f32 x f32 -> f32: one cuBLAS call.
    return cublas_gemm(be, g, g.beta, g.c, g.ldc, g.stride_c, cuda_type(g.c_dtype), op);
  }

  // f32 x f32 -> bf16: f32 product into a stream-ordered temporary, then the epilogue.
  Scratch tmp(be, op);
  NM_TRY(tmp.alloc((size_t)(g.batch * g.m * g.n) * sizeof(float)));
  float* product = reinterpret_cast<float*>(tmp.bytes());
  NM_TRY(cublas_gemm(be, g, 0.0f, product, g.n, g.m * g.n, CUDA_R_32F, op));
  NM_TRY(launch_epilogue(be, g, product, op));
  return tmp.release();  // stream-ordered: after the epilogue has read it
}

nm_status gemm(nm_backend* be, const nm_gemm_args* args) {
  static const char* const kOp = "gemm";
  NM_TRY(enter(be, kOp));
  if (args == nullptr) return fail_invalid(kOp, "args is NULL");
  return gemm_checked(be, *args, kOp);
}

}  // namespace nm_cuda
