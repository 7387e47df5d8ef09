// Device memory: stream-ordered allocation from the backend's memory pool (cudaMallocFromPoolAsync
// / cudaFreeAsync on the backend's stream), with plain cudaMalloc/cudaFree on devices without
// memory pools. Host staging memory: pinned (cudaMallocHost) so downloads are truly async.
#include <stdint.h>

#include "check.h"
#include "context.h"
#include "ops.h"

namespace nm_cuda {
namespace {

constexpr uintptr_t kAlignment = 256;

// A zero-byte request still gets a real, unique allocation, so every pointer alloc returns can
// be passed to free and compared like any other.
size_t at_least_one(size_t bytes) { return bytes == 0 ? 1 : bytes; }

// "<op>: <call> of N bytes failed: <description>": an allocation error says how much was asked.
nm_status fail_alloc(const char* op, const char* call, size_t bytes, cudaError_t err) {
  fail_cuda(op, call, err);  // clears the thread's last error
  return set_error(status_of(err), "%s: %s of %zu bytes failed: %s (%s)", op, call, bytes,
                   cudaGetErrorString(err), cudaGetErrorName(err));
}

// Device memory from the backend's pool (stream-ordered) or, without pools, cudaMalloc.
nm_status allocate(nm_backend* be, const char* op, size_t bytes, void** out) {
  cudaError_t err;
  if (be->pool != nullptr) {
    err = cudaMallocFromPoolAsync(out, at_least_one(bytes), be->pool, be->stream);
  } else {
    err = cudaMalloc(out, at_least_one(bytes));
  }
  if (err == cudaSuccess) return NM_OK;
  const char* call = be->pool != nullptr ? "cudaMallocFromPoolAsync" : "cudaMalloc";
  return fail_alloc(op, call, bytes, err);
}

}  // namespace

nm_status alloc(nm_backend* be, size_t bytes, void** out) {
  static const char* const kOp = "alloc";
  NM_TRY(enter(be, kOp));
  if (out == nullptr) return fail_invalid(kOp, "out is NULL");
  *out = nullptr;
  void* ptr = nullptr;
  // From the pool it is stream-ordered: the memory is ready for everything enqueued on be->stream
  // after this call, which is every later op of this backend.
  NM_TRY(allocate(be, kOp, bytes, &ptr));
  if (((uintptr_t)ptr & (kAlignment - 1)) != 0) {
    // The allocators guarantee at least 256-byte alignment; check rather than assume, since
    // vectorized kernels and cuBLAS rely on it.
    if (be->pool != nullptr) {
      cudaFreeAsync(ptr, be->stream);
    } else {
      cudaFree(ptr);
    }
    return set_error(NM_ERR_DEVICE, "%s: the allocator returned %p, not %u-byte aligned", kOp, ptr,
                     (unsigned)kAlignment);
  }
  *out = ptr;
  return NM_OK;
}

nm_status free_memory(nm_backend* be, void* ptr) {
  static const char* const kOp = "free";
  NM_TRY(enter(be, kOp));
  if (ptr == nullptr) return NM_OK;
  if (be->pool != nullptr) {
    // Released once everything enqueued before it has run.
    NM_CUDA_CHECK(kOp, cudaFreeAsync(ptr, be->stream));
  } else {
    // cudaFree waits for the device to be idle first, which is stream order and then some.
    NM_CUDA_CHECK(kOp, cudaFree(ptr));
  }
  return NM_OK;
}

nm_status scratch_alloc(nm_backend* be, const char* op, size_t bytes, void** out) {
  *out = nullptr;
  return allocate(be, op, bytes, out);
}

nm_status scratch_free(nm_backend* be, const char* op, void* ptr) {
  if (ptr == nullptr) return NM_OK;
  if (be->pool != nullptr) {
    NM_CUDA_CHECK(op, cudaFreeAsync(ptr, be->stream));
  } else {
    NM_CUDA_CHECK(op, cudaFree(ptr));
  }
  return NM_OK;
}

nm_status host_alloc(nm_backend* be, size_t bytes, void** out) {
  static const char* const kOp = "host_alloc";
  NM_TRY(enter(be, kOp));
  if (out == nullptr) return fail_invalid(kOp, "out is NULL");
  *out = nullptr;
  void* ptr = nullptr;
  const cudaError_t err = cudaMallocHost(&ptr, at_least_one(bytes));
  if (err != cudaSuccess) return fail_alloc(kOp, "cudaMallocHost", bytes, err);
  *out = ptr;
  return NM_OK;
}

nm_status host_free(nm_backend* be, void* ptr) {
  static const char* const kOp = "host_free";
  NM_TRY(enter(be, kOp));
  if (ptr == nullptr) return NM_OK;
  NM_CUDA_CHECK(kOp, cudaFreeHost(ptr));
  return NM_OK;
}

}  // namespace nm_cuda
