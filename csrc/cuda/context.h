// The CUDA backend's per-device state (struct nm_backend) and the small helpers every op uses:
// entering the backend (argument check + making its device current on the calling thread) and
// sizing grid-stride kernel launches.
#ifndef NM_CUDA_CONTEXT_H
#define NM_CUDA_CONTEXT_H

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <stddef.h>
#include <stdint.h>

#include "../core/backend.h"
#include "kernel_compat.cuh"  // NM_CUDA_LAUNCH, how every op launches its kernels

namespace nm_cuda {
struct StagingPool;  // copy.cc: pinned buffers that snapshot upload sources
}

// One per device. Nothing here is global, so several devices (or several backends on one
// device) can live in one process. Ops are enqueued from one thread; fence_wait may run on others.
struct nm_backend {
  int device = -1;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  size_t max_pitch = 0;     // largest row pitch cudaMemcpy2DAsync accepts
  size_t total_memory = 0;
  char name[256] = {};

  cudaStream_t stream = nullptr;  // the one stream every op is enqueued on (non-blocking)
  cudaMemPool_t pool = nullptr;   // stream-ordered allocator; null -> cudaMalloc/cudaFree
  cublasHandle_t cublas = nullptr;
  void* cublas_workspace = nullptr;
  size_t cublas_workspace_bytes = 0;
  cublasLtHandle_t cublaslt = nullptr;
  cusolverDnHandle_t cusolver = nullptr;

  double* reduce_partials = nullptr;  // per-block partial sums of sum / sum_squares (reduce.cu)
  nm_cuda::StagingPool* staging = nullptr;
};

namespace nm_cuda {

// Threads per block for the elementwise and reduction kernels.
constexpr int kThreads = 256;
// Blocks in the first pass of a reduction: fixed, so results do not depend on the GPU model.
constexpr int kReduceBlocks = 512;

// Start of every op: rejects a NULL backend and makes be->device current on this thread (CUDA's
// current device is per thread; ops and fence waits may come from different threads).
nm_status enter(nm_backend* be, const char* op);

// Blocks for a grid-stride loop over n elements: enough to fill the GPU a few times over, never
// more than needed, always >= 1 and far below the 2^31-1 grid limit (n itself may exceed 2^31).
inline unsigned int grid_blocks(const nm_backend* be, int64_t n) {
  const int64_t wanted = (n + kThreads - 1) / kThreads;
  const int64_t resident = (int64_t)(be->sm_count > 0 ? be->sm_count : 1) * (2048 / kThreads) * 4;
  int64_t blocks = wanted < resident ? wanted : resident;
  if (blocks < 1) blocks = 1;
  return (unsigned int)blocks;
}

// Stream-ordered temporary device memory for an op's own work buffers (memory.cc): usable by
// everything enqueued after scratch_alloc, released once everything enqueued before
// scratch_free has run. Errors are reported under `op`.
nm_status scratch_alloc(nm_backend* be, const char* op, size_t bytes, void** out);
nm_status scratch_free(nm_backend* be, const char* op, void* ptr);

// Owns one scratch allocation; the destructor frees it (stream-ordered) on early-return error
// paths. The success path calls release() so a failing free is reported too.
class Scratch {
 public:
  Scratch(nm_backend* be, const char* op) : be_(be), op_(op) {}
  ~Scratch() {
    if (ptr_ != nullptr) scratch_free(be_, op_, ptr_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  nm_status alloc(size_t bytes) { return scratch_alloc(be_, op_, bytes, &ptr_); }
  char* bytes() const { return static_cast<char*>(ptr_); }
  nm_status release() {
    void* ptr = ptr_;
    ptr_ = nullptr;
    return ptr == nullptr ? NM_OK : scratch_free(be_, op_, ptr);
  }

 private:
  nm_backend* be_;
  const char* op_;
  void* ptr_ = nullptr;
};

// Rounds a byte offset up to the 256-byte alignment every sub-buffer of a scratch block keeps.
inline size_t align256(size_t bytes) { return (bytes + 255) / 256 * 256; }

}  // namespace nm_cuda

#endif  // NM_CUDA_CONTEXT_H
