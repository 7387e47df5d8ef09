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

}  // namespace

nm_status alloc(nm_backend* be, size_t bytes, void** out) {
  static const char* const kOp = "alloc";
  NM_TRY(enter(be, kOp));
  if (out == nullptr) return fail_invalid(kOp, "out is NULL");
  *out = nullptr;
  void* ptr = nullptr;
  if (be->pool != nullptr) {
    // Stream-ordered: the memory is ready for everything enqueued on be->stream after this call,
    // which is every later op of this backend.
    NM_CUDA_CHECK(kOp, cudaMallocFromPoolAsync(&ptr, at_least_one(bytes), be->pool, be->stream));
  } else {
    NM_CUDA_CHECK(kOp, cudaMalloc(&ptr, at_least_one(bytes)));
  }
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
  if (be->pool != nullptr) {
    NM_CUDA_CHECK(op, cudaMallocFromPoolAsync(out, at_least_one(bytes), be->pool, be->stream));
  } else {
    NM_CUDA_CHECK(op, cudaMalloc(out, at_least_one(bytes)));
  }
  return NM_OK;
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
  NM_CUDA_CHECK(kOp, cudaMallocHost(&ptr, at_least_one(bytes)));
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
