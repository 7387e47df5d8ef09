#include "check.h"

#include <stdarg.h>
#include <stdio.h>

namespace nm_cuda {
namespace {

// One message per calling thread: a worker thread waiting on a fence never clobbers the message
// the main thread is about to read.
thread_local char g_message[1024];

// "cudaMemcpyAsync(dst, src, ...)" -> "cudaMemcpyAsync". Writes at most out_len-1 characters.
void function_name(const char* call, char* out, size_t out_len) {
  size_t i = 0;
  while (call[i] != '\0' && i + 1 < out_len &&
         (call[i] == '_' || call[i] == ':' || (call[i] >= '0' && call[i] <= '9') ||
          (call[i] >= 'a' && call[i] <= 'z') || (call[i] >= 'A' && call[i] <= 'Z'))) {
    out[i] = call[i];
    i++;
  }
  out[i] = '\0';
  if (i == 0) snprintf(out, out_len, "%s", call);
}

nm_status fail_with(nm_status status, const char* op, const char* call, const char* what) {
  char fn[128];
  function_name(call, fn, sizeof fn);
  if (op != nullptr && op[0] != '\0') {
    snprintf(g_message, sizeof g_message, "%s: %s failed: %s", op, fn, what);
  } else {
    snprintf(g_message, sizeof g_message, "%s failed: %s", fn, what);
  }
  return status;
}

}  // namespace

nm_status set_error(nm_status status, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_message, sizeof g_message, fmt, ap);
  va_end(ap);
  return status;
}

const char* last_error() { return g_message; }

void clear_error() { g_message[0] = '\0'; }

nm_status status_of(cudaError_t err) {
  switch (err) {
    case cudaSuccess:
      return NM_OK;
    case cudaErrorMemoryAllocation:
      return NM_ERR_OUT_OF_MEMORY;
    case cudaErrorInsufficientDriver:
    case cudaErrorNoDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorCallRequiresNewerDriver:
    case cudaErrorStubLibrary:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorInitializationError:
      return NM_ERR_UNAVAILABLE;
    default:
      return NM_ERR_DEVICE;
  }
}

nm_status fail_cuda(const char* op, const char* call, cudaError_t err) {
  // The runtime also keeps the error as this thread's last error; it is handled now, so clear it:
  // left there, the next launch check (cudaGetLastError) would report it as that kernel's failure.
  // (A sticky error survives this, as it must.)
  cudaGetLastError();
  char what[512];
  snprintf(what, sizeof what, "%s (%s)", cudaGetErrorString(err), cudaGetErrorName(err));
  return fail_with(status_of(err), op, call, what);
}

nm_status fail_cublas(const char* op, const char* call, cublasStatus_t status) {
  nm_status code = NM_ERR_DEVICE;
  if (status == CUBLAS_STATUS_ALLOC_FAILED) code = NM_ERR_OUT_OF_MEMORY;
  if (status == CUBLAS_STATUS_ARCH_MISMATCH || status == CUBLAS_STATUS_NOT_INITIALIZED) {
    code = NM_ERR_UNAVAILABLE;
  }
  return fail_with(code, op, call, cublasGetStatusName(status));
}

const char* cusolver_status_name(cusolverStatus_t status) {
  switch (status) {
    case CUSOLVER_STATUS_SUCCESS: return "CUSOLVER_STATUS_SUCCESS";
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_MAPPING_ERROR: return "CUSOLVER_STATUS_MAPPING_ERROR";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED:
      return "CUSOLVER_STATUS_MATRIX_TYPE_NOT_SUPPORTED";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    case CUSOLVER_STATUS_ZERO_PIVOT: return "CUSOLVER_STATUS_ZERO_PIVOT";
    case CUSOLVER_STATUS_INVALID_LICENSE: return "CUSOLVER_STATUS_INVALID_LICENSE";
    case CUSOLVER_STATUS_INVALID_WORKSPACE: return "CUSOLVER_STATUS_INVALID_WORKSPACE";
    default: return nullptr;
  }
}

nm_status fail_cusolver(const char* op, const char* call, cusolverStatus_t status) {
  char what[96];
  const char* name = cusolver_status_name(status);
  if (name != nullptr) {
    snprintf(what, sizeof what, "%s", name);
  } else {
    snprintf(what, sizeof what, "cusolverStatus_t %d", (int)status);
  }
  nm_status code = NM_ERR_DEVICE;
  if (status == CUSOLVER_STATUS_ALLOC_FAILED) code = NM_ERR_OUT_OF_MEMORY;
  if (status == CUSOLVER_STATUS_ARCH_MISMATCH || status == CUSOLVER_STATUS_NOT_INITIALIZED) {
    code = NM_ERR_UNAVAILABLE;
  }
  return fail_with(code, op, call, what);
}

nm_status fail_nccl(const char* op, const char* call, ncclResult_t result) {
  char what[512];
  snprintf(what, sizeof what, "%s (ncclResult_t %d)", ncclGetErrorString(result), (int)result);
  return fail_with(NM_ERR_DEVICE, op, call, what);
}

nm_status fail_invalid(const char* op, const char* fmt, ...) {
  char what[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  snprintf(g_message, sizeof g_message, "%s: %s", op, what);
  return NM_ERR_INVALID;
}

nm_status check_launch(const char* op, const char* kernel) {
  cudaError_t err = cudaGetLastError();
  if (err == cudaSuccess) return NM_OK;
  char what[512];
  snprintf(what, sizeof what, "%s (%s)", cudaGetErrorString(err), cudaGetErrorName(err));
  snprintf(g_message, sizeof g_message, "%s: launch of %s failed: %s", op, kernel, what);
  return status_of(err);
}

}  // namespace nm_cuda
