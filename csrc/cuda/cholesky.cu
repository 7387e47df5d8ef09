// cholesky_inverse: kinv[b] = (sym(k[b]) + ridge_b I)^-1 for `batch` f32 [d, d] symmetric
// positive semi-definite matrices, ridge_b = ridge_mult * trace(k[b]) / d + ridge_eps, through
// cuSOLVER's Cholesky factorization (potrf) and inverse from the factor (potri) in double
// precision, like the CPU reference (sym(k) = (k + k^T) / 2, the same matrix when k is symmetric).
//
// Per matrix, on the stream and without any host wait:
//   1. (all matrices, one kernel) ridge_b in double, and whether k[b] holds a NaN or infinity;
//   2. W = sym(k[b]) + ridge_b I, widened to double, in a one-matrix scratch reused by the next
//      matrix once this one is done (stream order);
//   3. potrf(W) -> info[b] (i > 0: the leading minor of order i is not positive definite);
//      potri(W) -> the inverse in W's column-major lower triangle, which for a symmetric matrix
//      in row-major order is the upper triangle;
//   4. kinv[b] = the full symmetric inverse rounded to f32, or I when anything failed.
// Finally info[b] becomes -1 for a non-finite input. k is read completely (steps 1 and 2) before
// kinv[b] is written, so kinv may be exactly k.
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include <algorithm>

#include "block_reduce.cuh"
#include "check.h"
#include "context.h"
#include "dtypes.cuh"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

// One block per matrix: ridge_b (double) and whether any element is not finite.
__global__ void ridge_kernel(const float* k, int64_t d, float ridge_mult, float ridge_eps,
                             double* ridge, int* nonfinite) {
  const float* m = k + (int64_t)blockIdx.x * d * d;
  int bad = 0;
  for (int64_t i = threadIdx.x; i < d * d; i += blockDim.x) bad |= isfinite(m[i]) ? 0 : 1;
  double trace = 0.0;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) trace += (double)m[i * d + i];
  trace = block_sum(trace);
  bad = __syncthreads_or(bad);
  if (threadIdx.x == 0) {
    ridge[blockIdx.x] = (double)ridge_mult * trace / (double)d + (double)ridge_eps;
    nonfinite[blockIdx.x] = bad;
  }
}

// w = sym(k) + ridge I in double ([d, d]; symmetric, so the layout question does not arise).
__global__ void widen_kernel(double* w, const float* k, const double* ridge, int64_t d) {
  const int64_t n = d * d;
  const double shift = *ridge;
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const int64_t r = i / d, c = i - r * d;
    const double s = 0.5 * ((double)k[r * d + c] + (double)k[c * d + r]);
    w[i] = r == c ? s + shift : s;
  }
}

// kinv = the inverse held in w's row-major upper triangle, mirrored and rounded to f32; or I
// when the input was not finite or either cuSOLVER step reported a failure.
__global__ void narrow_kernel(float* kinv, const double* w, int64_t d, const int* nonfinite,
                              const int* potrf_info, const int* potri_info) {
  const int64_t n = d * d;
  const bool failed = *nonfinite != 0 || *potrf_info != 0 || *potri_info != 0;
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const int64_t r = i / d, c = i - r * d;
    if (failed) {
      kinv[i] = r == c ? 1.0f : 0.0f;
    } else {
      kinv[i] = (float)(r <= c ? w[r * d + c] : w[c * d + r]);
    }
  }
}

// info[b]: -1 for a non-finite input, else potrf's report, else potri's (a zero pivot of the
// factor, which a successful potrf does not leave).
__global__ void status_kernel(int* info, const int* nonfinite, const int* potri_info,
                              int64_t batch) {
  for (int64_t b = grid_start(); b < batch; b += grid_step()) {
    if (nonfinite[b]) {
      info[b] = -1;
    } else if (info[b] == 0 && potri_info[b] != 0) {
      info[b] = potri_info[b];
    }
  }
}

}  // namespace

nm_status cholesky_inverse(nm_backend* be, void* kinv_f32, const void* k_f32, void* info_i32,
                           int64_t batch, int64_t d, float ridge_mult, float ridge_eps) {
  static const char* const kOp = "cholesky_inverse";
  NM_TRY(enter(be, kOp));
  if (batch < 0) return fail_invalid(kOp, "batch must be >= 0, got %lld", (long long)batch);
  if (d < 1) return fail_invalid(kOp, "d must be >= 1, got %lld", (long long)d);
  // cuSOLVER's 32-bit interface indexes a matrix with int: d*d must fit.
  if (d > 46340 || batch > INT_MAX) {
    return fail_invalid(kOp, "batch (%lld) or d (%lld) too large (d <= 46340)", (long long)batch,
                        (long long)d);
  }
  if (batch == 0) return NM_OK;
  if (kinv_f32 == nullptr || k_f32 == nullptr || info_i32 == nullptr) {
    return fail_invalid(kOp, "kinv, k and info must not be NULL");
  }
  float* kinv = static_cast<float*>(kinv_f32);
  const float* k = static_cast<const float*>(k_f32);
  int* info = static_cast<int*>(info_i32);
  const int dim = (int)d;
  const int64_t dd = d * d;

  // Scratch: ridge (double), non-finite flags, potri infos (per matrix), one double matrix W and
  // the cuSOLVER workspace.
  const size_t ridge_bytes = align256((size_t)batch * sizeof(double));
  const size_t flag_bytes = align256((size_t)batch * sizeof(int));
  const size_t w_bytes = align256((size_t)dd * sizeof(double));
  Scratch scratch(be, kOp);
  NM_TRY(scratch.alloc(ridge_bytes + 2 * flag_bytes + w_bytes));
  double* ridge = reinterpret_cast<double*>(scratch.bytes());
  int* nonfinite = reinterpret_cast<int*>(scratch.bytes() + ridge_bytes);
  int* potri_info = reinterpret_cast<int*>(scratch.bytes() + ridge_bytes + flag_bytes);
  double* w = reinterpret_cast<double*>(scratch.bytes() + ridge_bytes + 2 * flag_bytes);

  int potrf_lwork = 0, potri_lwork = 0;
  NM_CUSOLVER_CHECK(kOp, cusolverDnDpotrf_bufferSize(be->cusolver, CUBLAS_FILL_MODE_LOWER, dim, w,
                                                     dim, &potrf_lwork));
  NM_CUSOLVER_CHECK(kOp, cusolverDnDpotri_bufferSize(be->cusolver, CUBLAS_FILL_MODE_LOWER, dim, w,
                                                     dim, &potri_lwork));
  const int lwork = std::max(std::max(potrf_lwork, potri_lwork), 1);
  Scratch workspace(be, kOp);
  NM_TRY(workspace.alloc((size_t)lwork * sizeof(double)));
  double* work = reinterpret_cast<double*>(workspace.bytes());

  NM_CUDA_LAUNCH((unsigned)batch, kThreads, 0, be->stream, ridge_kernel)(
      k, d, ridge_mult, ridge_eps, ridge, nonfinite);
  NM_CUDA_CHECK_LAUNCH(kOp, "ridge_kernel");

  // cuSOLVER has no batched potri: one matrix after another, all reusing W and the workspace.
  const unsigned int blocks = grid_blocks(be, dd);
  for (int64_t b = 0; b < batch; b++) {
    NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, widen_kernel)(w, k + b * dd, ridge + b, d);
    NM_CUDA_CHECK_LAUNCH(kOp, "widen_kernel");
    NM_CUSOLVER_CHECK(kOp, cusolverDnDpotrf(be->cusolver, CUBLAS_FILL_MODE_LOWER, dim, w, dim,
                                            work, lwork, info + b));
    NM_CUSOLVER_CHECK(kOp, cusolverDnDpotri(be->cusolver, CUBLAS_FILL_MODE_LOWER, dim, w, dim,
                                            work, lwork, potri_info + b));
    NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, narrow_kernel)(
        kinv + b * dd, w, d, nonfinite + b, info + b, potri_info + b);
    NM_CUDA_CHECK_LAUNCH(kOp, "narrow_kernel");
  }

  NM_CUDA_LAUNCH(grid_blocks(be, batch), kThreads, 0, be->stream, status_kernel)(
      info, nonfinite, potri_info, batch);
  NM_CUDA_CHECK_LAUNCH(kOp, "status_kernel");
  NM_TRY(workspace.release());
  return scratch.release();
}

}  // namespace nm_cuda
