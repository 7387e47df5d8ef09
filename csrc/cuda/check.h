// Error handling for the CUDA backend: every CUDA / cuBLAS / cuSOLVER / NCCL return code goes
// through one of these helpers, which turn it into an nm_status and leave a message naming the
// failing op and call in a thread-local buffer (what ops->last_error() returns), e.g.
//   "gemm: cublasGemmStridedBatchedEx failed: CUBLAS_STATUS_INVALID_VALUE"
#ifndef NM_CUDA_CHECK_H
#define NM_CUDA_CHECK_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <nccl.h>

#include "../core/backend.h"

namespace nm_cuda {

// Formats the thread-local message. Always returns `status` so it can end a `return` line.
nm_status set_error(nm_status status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
const char* last_error();
void clear_error();

// "<op>: <call> failed: <description>" for each library's status type. `call` may be the whole
// stringified expression; only the function name (up to the first '(') is kept. fail_cuda also
// clears the thread's last CUDA error (it has been reported), so a later launch check does not
// blame the next kernel for it.
nm_status fail_cuda(const char* op, const char* call, cudaError_t err);
nm_status fail_cublas(const char* op, const char* call, cublasStatus_t status);
nm_status fail_cusolver(const char* op, const char* call, cusolverStatus_t status);
nm_status fail_nccl(const char* op, const char* call, ncclResult_t result);

// Argument errors: NM_ERR_INVALID with "<op>: <message>".
nm_status fail_invalid(const char* op, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Which nm_status a CUDA runtime error maps to (out of memory, unavailable, device failure).
nm_status status_of(cudaError_t err);
// NULL for a status this build does not know by name.
const char* cusolver_status_name(cusolverStatus_t status);

// Checks for a launch error right after a kernel launch (bad configuration, no kernel image,
// or a sticky error left by earlier work) and reports it under `op`.
nm_status check_launch(const char* op, const char* kernel);

}  // namespace nm_cuda

// Early-return wrappers used inside functions returning nm_status. OP is the op's name.
#define NM_CUDA_CHECK(OP, CALL)                                      \
  do {                                                               \
    cudaError_t nm_err_ = (CALL);                                    \
    if (nm_err_ != cudaSuccess) return nm_cuda::fail_cuda(OP, #CALL, nm_err_); \
  } while (0)

#define NM_CUBLAS_CHECK(OP, CALL)                                    \
  do {                                                               \
    cublasStatus_t nm_st_ = (CALL);                                  \
    if (nm_st_ != CUBLAS_STATUS_SUCCESS) return nm_cuda::fail_cublas(OP, #CALL, nm_st_); \
  } while (0)

#define NM_CUSOLVER_CHECK(OP, CALL)                                  \
  do {                                                               \
    cusolverStatus_t nm_st_ = (CALL);                                \
    if (nm_st_ != CUSOLVER_STATUS_SUCCESS) return nm_cuda::fail_cusolver(OP, #CALL, nm_st_); \
  } while (0)

#define NM_NCCL_CHECK(OP, CALL)                                      \
  do {                                                               \
    ncclResult_t nm_res_ = (CALL);                                   \
    if (nm_res_ != ncclSuccess) return nm_cuda::fail_nccl(OP, #CALL, nm_res_); \
  } while (0)

// After `kernel<<<...>>>(...)`: NM_CUDA_CHECK_LAUNCH("binary", "binary_kernel");
#define NM_CUDA_CHECK_LAUNCH(OP, KERNEL)                             \
  do {                                                               \
    nm_status nm_ls_ = nm_cuda::check_launch(OP, KERNEL);            \
    if (nm_ls_ != NM_OK) return nm_ls_;                              \
  } while (0)

// Propagates an nm_status from a helper.
#define NM_TRY(EXPR)                                                 \
  do {                                                               \
    nm_status nm_s_ = (EXPR);                                        \
    if (nm_s_ != NM_OK) return nm_s_;                                \
  } while (0)

#endif  // NM_CUDA_CHECK_H
