// Cheap argument checks shared by the elementwise, reduction and GEMM ops. Each returns NM_OK or
// NM_ERR_INVALID with "<op>: <what is wrong>" as the thread's last error.
#ifndef NM_CUDA_VALIDATE_H
#define NM_CUDA_VALIDATE_H

#include <stdint.h>

#include "../core/backend.h"
#include "check.h"

namespace nm_cuda {

inline nm_status check_count(const char* op, int64_t n) {
  if (n < 0) return fail_invalid(op, "n must be >= 0, got %lld", (long long)n);
  return NM_OK;
}

// A NULL pointer is fine only when there is nothing to touch.
inline nm_status check_ptr(const char* op, const char* name, const void* ptr, int64_t n) {
  if (ptr == nullptr && n > 0) return fail_invalid(op, "%s is NULL (n = %lld)", name, (long long)n);
  return NM_OK;
}

// The elementwise and reduction ops do f32 math on f32 or bf16 storage only.
inline nm_status check_float_dtype(const char* op, nm_dtype dtype) {
  if (dtype != NM_F32 && dtype != NM_BF16) {
    return fail_invalid(op, "dtype must be f32 or bf16, got %s (%d)", nm_dtype_name(dtype),
                        (int)dtype);
  }
  return NM_OK;
}

}  // namespace nm_cuda

#endif  // NM_CUDA_VALIDATE_H
