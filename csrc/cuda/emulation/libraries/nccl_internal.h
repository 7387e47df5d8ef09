// Shared by the NCCL stand-in's files: the communicator object and NCCL's last-error text.
// nccl_comm.cc: version, errors, unique ids, communicator life cycle and queries.
// nccl_ops.cc: groups, the collectives and send / recv.
// World size 1 only: every collective of one rank is a copy (or nothing, in place), which is
// exact for every reduction; more ranks are refused with ncclInvalidUsage and a message.
#ifndef NM_EMU_NCCL_INTERNAL_H
#define NM_EMU_NCCL_INTERNAL_H

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "../include/nccl.h"

namespace nm_emu {
namespace nccl {
// Raised by ncclCommAbort. A collective stalled by NM_CUDA_EMU_NCCL_STALL (nccl_ops.cc) waits for
// it; shared, because the stalled stream task outlives the communicator object.
struct AbortSignal {
  std::mutex mu;
  std::condition_variable cv;
  bool aborted = false;
};
}  // namespace nccl
}  // namespace nm_emu

struct ncclComm {
  int device = 0;
  int nranks = 1;
  int rank = 0;
  bool blocking = true;
  // Non-blocking communicators report ncclInProgress for a few ncclCommGetAsyncError polls after
  // init (and after finalize), as real initialization takes a while.
  std::atomic<int> pending_polls{0};
  std::atomic<bool> finalizing{false};
  std::mutex mu;
  std::set<cudaStream_t> streams;  // every stream an operation of this communicator used
  std::shared_ptr<nm_emu::nccl::AbortSignal> abort_signal = std::make_shared<nm_emu::nccl::AbortSignal>();
};

namespace nm_emu {
namespace nccl {

// Sets NCCL's last-error text (ncclGetLastError) and returns `result`.
ncclResult_t fail(ncclResult_t result, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// A live, initialized communicator? Else the error to return (with its message set).
ncclResult_t check_comm(const ncclComm* comm, const char* call);

// Waits for every stream a communicator used (finalize / destroy flush its operations).
void flush(ncclComm* comm);

}  // namespace nccl
}  // namespace nm_emu

#endif  // NM_EMU_NCCL_INTERNAL_H
