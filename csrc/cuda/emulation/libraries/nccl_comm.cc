// NCCL stand-in, part 1: version, error strings, unique ids, communicators (see nccl_internal.h).
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../runtime/handle_registry.h"
#include "../runtime/runtime.h"
#include "../runtime/stream.h"
#include "nccl_internal.h"

namespace nm_emu {
namespace nccl {
namespace {

std::mutex g_error_mu;
char g_last_error[1024] = "";

HandleRegistry<const ncclComm*>& comms() { return registry_of<const ncclComm*>(); }
bool is_live(const ncclComm* comm) { return comms().contains(comm); }

constexpr char kIdMagic[] = "nm-emulated-nccl-id";
constexpr unsigned kConfigMagic = 0xcafebeef;
constexpr int kInitPolls = 2;

ncclResult_t init(ncclComm_t* out, int nranks, const ncclUniqueId& id, int rank, const ncclConfig_t* config,
                  const char* call) {
  if (out == nullptr) return fail(ncclInvalidArgument, "%s: comm is NULL", call);
  *out = nullptr;
  if (nranks < 1 || rank < 0 || rank >= nranks) {
    return fail(ncclInvalidArgument, "%s: rank %d of %d ranks is out of range", call, rank, nranks);
  }
  if (nranks > 1) {
    return fail(ncclInvalidUsage,
                "%s: the CUDA emulation (newton_muon_cuda_emu.so) runs NCCL communicators of one rank only, "
                "not %d; multi-rank collectives need real GPUs and NCCL",
                call, nranks);
  }
  if (memcmp(id.internal, kIdMagic, sizeof kIdMagic) != 0) {
    return fail(ncclInvalidArgument, "%s: commId was not made by ncclGetUniqueId", call);
  }
  bool blocking = true;
  if (config != nullptr) {
    if (config->magic != kConfigMagic || config->size != sizeof(ncclConfig_t)) {
      return fail(ncclInvalidArgument, "%s: config was not initialized with NCCL_CONFIG_INITIALIZER", call);
    }
    if (config->blocking != NCCL_CONFIG_UNDEF_INT && config->blocking != 0 && config->blocking != 1) {
      return fail(ncclInvalidArgument, "%s: config->blocking must be 0 or 1, got %d", call, config->blocking);
    }
    blocking = config->blocking != 0;
  }
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    return fail(ncclUnhandledCudaError, "%s: no usable CUDA device (%s)", call, cudaGetErrorString(cudaGetLastError()));
  }
  ncclComm* comm = new ncclComm();
  comm->device = device;
  comm->blocking = blocking;
  comm->pending_polls = blocking ? 0 : kInitPolls;
  comms().add(comm);
  *out = comm;
  return blocking ? ncclSuccess : ncclInProgress;
}

ncclResult_t release(ncclComm_t comm, const char* call, bool flush_first) {
  if (comm == nullptr || !comms().remove(comm)) return fail(ncclInvalidArgument, "%s: not a live communicator", call);
  if (flush_first) flush(comm);
  delete comm;
  return ncclSuccess;
}

}  // namespace

ncclResult_t fail(ncclResult_t result, const char* fmt, ...) {
  std::lock_guard<std::mutex> lock(g_error_mu);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_last_error, sizeof g_last_error, fmt, ap);
  va_end(ap);
  if (rt::config().verbose) fprintf(stderr, "cuda emulation: NCCL: %s\n", g_last_error);
  return result;
}

ncclResult_t check_comm(const ncclComm* comm, const char* call) {
  if (!is_live(comm)) return fail(ncclInvalidArgument, "%s: comm is not a live communicator", call);
  if (comm->pending_polls.load() > 0) {
    return fail(ncclInvalidUsage,
                "%s: the non-blocking communicator is still initializing (poll ncclCommGetAsyncError until "
                "it returns ncclSuccess)",
                call);
  }
  if (comm->finalizing.load()) return fail(ncclInvalidUsage, "%s: the communicator was finalized", call);
  return ncclSuccess;
}

void flush(ncclComm* comm) {
  std::set<cudaStream_t> streams;
  {
    std::lock_guard<std::mutex> lock(comm->mu);
    streams = comm->streams;
  }
  for (cudaStream_t s : streams) {
    if (rt::Stream* stream = rt::resolve_stream(s)) stream->wait(stream->last_enqueued());
  }
}

}  // namespace nccl
}  // namespace nm_emu

using namespace nm_emu::nccl;

extern "C" {

ncclResult_t ncclGetVersion(int* version) {
  NM_EMU_ENTRY("ncclGetVersion");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  if (version == nullptr) return fail(ncclInvalidArgument, "ncclGetVersion: version is NULL");
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

const char* ncclGetErrorString(ncclResult_t result) {
  NM_EMU_ENTRY("ncclGetErrorString");
  (void)nm_emu_injected_;
  switch (result) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
  }
}

const char* ncclGetLastError(ncclComm_t comm) {
  NM_EMU_ENTRY("ncclGetLastError");
  (void)nm_emu_injected_;
  (void)comm;  // NCCL keeps one last error per process too
  return g_last_error;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId* uniqueId) {
  NM_EMU_ENTRY("ncclGetUniqueId");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  if (uniqueId == nullptr) return fail(ncclInvalidArgument, "ncclGetUniqueId: uniqueId is NULL");
  static std::atomic<unsigned> counter{0};
  memset(uniqueId->internal, 0, sizeof uniqueId->internal);
  memcpy(uniqueId->internal, kIdMagic, sizeof kIdMagic);
  snprintf(uniqueId->internal + sizeof kIdMagic, sizeof uniqueId->internal - sizeof kIdMagic, "%d-%u",
           (int)getpid(), counter.fetch_add(1));
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank) {
  NM_EMU_ENTRY("ncclCommInitRank");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  return init(comm, nranks, commId, rank, nullptr, "ncclCommInitRank");
}

ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks, ncclUniqueId commId, int rank,
                                    ncclConfig_t* config) {
  NM_EMU_ENTRY("ncclCommInitRankConfig");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  return init(comm, nranks, commId, rank, config, "ncclCommInitRankConfig");
}

ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError) {
  NM_EMU_ENTRY("ncclCommGetAsyncError");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  if (!is_live(comm)) return fail(ncclInvalidArgument, "ncclCommGetAsyncError: comm is not a live communicator");
  if (asyncError == nullptr) return fail(ncclInvalidArgument, "ncclCommGetAsyncError: asyncError is NULL");
  if (comm->pending_polls.load() > 0) {
    if (--comm->pending_polls > 0) {
      *asyncError = ncclInProgress;
      return ncclSuccess;
    }
    if (comm->finalizing.load()) flush(comm);  // the pending finalize completes now
  }
  // A dead CUDA context is what NCCL would report as an unhandled CUDA error.
  *asyncError = nm_emu::rt::sticky_error() == cudaSuccess ? ncclSuccess : ncclUnhandledCudaError;
  return ncclSuccess;
}

ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  NM_EMU_ENTRY("ncclCommFinalize");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  const ncclResult_t st = check_comm(comm, "ncclCommFinalize");
  if (st != ncclSuccess) return st;
  comm->finalizing = true;
  if (comm->blocking) {
    flush(comm);
    return ncclSuccess;
  }
  comm->pending_polls = kInitPolls;  // finishes while ncclCommGetAsyncError is polled
  return ncclInProgress;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  NM_EMU_ENTRY("ncclCommDestroy");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  return release(comm, "ncclCommDestroy", true);
}

ncclResult_t ncclCommAbort(ncclComm_t comm) {
  NM_EMU_ENTRY("ncclCommAbort");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  // Operations already queued still run (their copies hold no reference to the communicator); a
  // stalled one (NM_CUDA_EMU_NCCL_STALL) returns without moving data, as NCCL's kernels do.
  if (is_live(comm)) {
    const std::shared_ptr<AbortSignal> signal = comm->abort_signal;
    {
      std::lock_guard<std::mutex> lock(signal->mu);
      signal->aborted = true;
    }
    signal->cv.notify_all();
  }
  return release(comm, "ncclCommAbort", false);
}

ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  NM_EMU_ENTRY("ncclCommCount");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  if (!is_live(comm) || count == nullptr) return fail(ncclInvalidArgument, "ncclCommCount: invalid comm or count");
  *count = comm->nranks;
  return ncclSuccess;
}

ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int* device) {
  NM_EMU_ENTRY("ncclCommCuDevice");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  if (!is_live(comm) || device == nullptr) {
    return fail(ncclInvalidArgument, "ncclCommCuDevice: invalid comm or device");
  }
  *device = comm->device;
  return ncclSuccess;
}

ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  NM_EMU_ENTRY("ncclCommUserRank");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  if (!is_live(comm) || rank == nullptr) return fail(ncclInvalidArgument, "ncclCommUserRank: invalid comm or rank");
  *rank = comm->rank;
  return ncclSuccess;
}

}  // extern "C"
