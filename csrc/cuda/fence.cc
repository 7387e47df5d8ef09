// Fences: a cudaEvent recorded at the current end of the backend's stream. Waiting on one blocks
// only the calling thread (the addon waits on a worker thread, never on Node's event loop).
#include <new>

#include "check.h"
#include "context.h"
#include "ops.h"

struct nm_fence {
  cudaEvent_t event = nullptr;
};

namespace nm_cuda {

nm_status fence_create(nm_backend* be, nm_fence** out) {
  static const char* const kOp = "fence_create";
  NM_TRY(enter(be, kOp));
  if (out == nullptr) return fail_invalid(kOp, "out is NULL");
  *out = nullptr;
  nm_fence* fence = new (std::nothrow) nm_fence();
  if (fence == nullptr) return set_error(NM_ERR_OUT_OF_MEMORY, "%s: out of host memory", kOp);
  // No timing: cheaper to record and to wait on.
  cudaError_t err = cudaEventCreateWithFlags(&fence->event, cudaEventDisableTiming);
  if (err != cudaSuccess) {
    delete fence;
    return fail_cuda(kOp, "cudaEventCreateWithFlags", err);
  }
  err = cudaEventRecord(fence->event, be->stream);
  if (err != cudaSuccess) {
    cudaEventDestroy(fence->event);
    delete fence;
    return fail_cuda(kOp, "cudaEventRecord", err);
  }
  *out = fence;
  return NM_OK;
}

nm_status fence_wait(nm_backend* be, nm_fence* fence) {
  static const char* const kOp = "fence_wait";
  NM_TRY(enter(be, kOp));  // may be a worker thread: make the backend's device current here too
  if (fence == nullptr) return fail_invalid(kOp, "fence is NULL");
  // Returns the error of any failed asynchronous work before the fence (illegal address,
  // kernel fault...): such errors are sticky and poison the whole context.
  NM_CUDA_CHECK(kOp, cudaEventSynchronize(fence->event));
  // A fault in work enqueued *after* the fence also shows up here rather than only at the next
  // fence: the stream being busy (cudaErrorNotReady) is the normal case.
  cudaError_t state = cudaStreamQuery(be->stream);
  if (state != cudaSuccess && state != cudaErrorNotReady) {
    return fail_cuda(kOp, "cudaStreamQuery", state);
  }
  return NM_OK;
}

void fence_destroy(nm_backend* be, nm_fence* fence) {
  if (fence == nullptr) return;
  if (be != nullptr) enter(be, "fence_destroy");
  // Safe even while the event is pending: CUDA releases it once the stream reaches it.
  if (fence->event != nullptr) cudaEventDestroy(fence->event);
  delete fence;
}

}  // namespace nm_cuda
