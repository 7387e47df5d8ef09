// The 'nccl' engine of csrc/core/comm.h: collectives on CUDA tensors, enqueued on the backend's
// stream, over a non-blocking NCCL communicator (config.blocking = 0).
//
// Never hanging: set-up and every host-side NCCL call that answers ncclInProgress are polled with
// ncclCommGetAsyncError against the group's timeout. Each collective is bracketed by two events;
// a watchdog thread starts an op's clock when its first event completes (the stream reached it)
// and, if the second has not completed within the timeout, or NCCL reports an asynchronous error
// (a peer's connection lost), records the failure and calls ncclCommAbort, which makes the
// kernels of the communicator return, so the stream (and any read waiting on it) moves on. The
// failure is sticky: status() reports it and later ops are skipped.
//
// NCCL calls used (what the host emulation of CUDA provides): ncclGetVersion, ncclGetErrorString,
// ncclGetLastError, ncclGetUniqueId, ncclCommInitRankConfig, ncclCommGetAsyncError, ncclCommAbort,
// ncclCommFinalize, ncclCommDestroy, ncclAllReduce (sum, avg; float32, bfloat16),
// ncclReduceScatter, ncclAllGather, ncclBroadcast.
#include <cuda_runtime.h>
#include <nccl.h>
#include <stdio.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "../core/abi_mismatch.h"
#include "../core/comm.h"
#include "check.h"
#include "context.h"

using Clock = std::chrono::steady_clock;

namespace {

// One enqueued collective, between its two events.
struct Pending {
  uint64_t seq = 0;
  std::string what;
  cudaEvent_t start = nullptr;
  cudaEvent_t end = nullptr;
  bool started = false;
  Clock::time_point deadline;
};

}  // namespace

struct nm_comm {
  nm_backend* be = nullptr;
  ncclComm_t nccl = nullptr;
  int rank = 0;
  int world = 1;
  std::chrono::milliseconds timeout{0};
  uint64_t issued = 0;  // enqueue order: the sequence number in messages
  float* barrier_word = nullptr;  // one device float the barrier all-reduces

  std::mutex mutex;  // guards pending, error, stop
  std::condition_variable wake;
  std::deque<Pending> pending;
  bool stop = false;
  std::thread watchdog;

  std::atomic<bool> failed{false};
  std::atomic<bool> aborted{false};
  std::string error;
};

namespace nm_cuda {
namespace {

std::string seconds(std::chrono::milliseconds ms) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.1f s", ms.count() / 1000.0);
  return buf;
}

// The communicator's own words after a failed call (ncclGetLastError), when it has any.
std::string nccl_detail(ncclComm_t comm, ncclResult_t result) {
  std::string out = ncclGetErrorString(result);
  const char* last = comm != nullptr ? ncclGetLastError(comm) : nullptr;
  if (last != nullptr && last[0] != '\0') out += std::string(": ") + last;
  return out;
}

// Records the first failure and aborts the communicator once (callable from any thread).
void fail(nm_comm* c, const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(c->mutex);
    if (!c->failed.load()) {
      c->error = message;
      c->failed.store(true);
    }
  }
  if (!c->aborted.exchange(true)) ncclCommAbort(c->nccl);
  c->wake.notify_all();
}

// Polls a non-blocking communicator until it is out of ncclInProgress, or the deadline.
ncclResult_t wait_ready(ncclComm_t comm, Clock::time_point deadline, bool* timed_out) {
  *timed_out = false;
  for (;;) {
    ncclResult_t state = ncclSuccess;
    ncclResult_t r = ncclCommGetAsyncError(comm, &state);
    if (r != ncclSuccess) return r;
    if (state != ncclInProgress) return state;
    if (Clock::now() >= deadline) {
      *timed_out = true;
      return ncclInProgress;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

void watch(nm_comm* c) {
  cudaSetDevice(c->be->device);  // events and the communicator belong to the backend's device
  std::unique_lock<std::mutex> lock(c->mutex);
  while (!c->stop) {
    c->wake.wait_for(lock, std::chrono::milliseconds(5));
    if (c->stop) break;
    if (!c->failed.load()) {
      ncclResult_t state = ncclSuccess;
      if (ncclCommGetAsyncError(c->nccl, &state) == ncclSuccess && state != ncclSuccess && state != ncclInProgress) {
        const std::string what = c->pending.empty() ? std::string("between collectives")
                                                    : "in " + c->pending.front().what;
        lock.unlock();
        fail(c, "nccl reported an asynchronous error on rank " + std::to_string(c->rank) + " of " +
                    std::to_string(c->world) + " " + what + ": " + nccl_detail(c->nccl, state) +
                    "; the communicator was aborted");
        lock.lock();
        continue;
      }
    }
    while (!c->pending.empty()) {
      Pending& p = c->pending.front();
      if (!p.started && cudaEventQuery(p.start) == cudaSuccess) {
        p.started = true;
        p.deadline = Clock::now() + c->timeout;
      }
      if (cudaEventQuery(p.end) == cudaSuccess) {
        cudaEventDestroy(p.start);
        cudaEventDestroy(p.end);
        c->pending.pop_front();
        continue;
      }
      if (c->failed.load()) {
        // Aborted: its kernels return without completing; stop watching it.
        cudaEventDestroy(p.start);
        cudaEventDestroy(p.end);
        c->pending.pop_front();
        continue;
      }
      if (p.started && Clock::now() > p.deadline) {
        const std::string message = "nccl " + p.what + " on rank " + std::to_string(c->rank) + " of " +
                                    std::to_string(c->world) + " did not complete within " +
                                    seconds(c->timeout) + "; the communicator was aborted";
        lock.unlock();
        fail(c, message);
        lock.lock();
      }
      break;
    }
  }
}

ncclDataType_t nccl_type(nm_dtype dtype) { return dtype == NM_BF16 ? ncclBfloat16 : ncclFloat32; }
ncclRedOp_t nccl_op(nm_reduce_op op) { return op == NM_REDUCE_AVG ? ncclAvg : ncclSum; }

nm_status check_args(nm_comm* c, const char* op, nm_dtype dtype, int64_t n) {
  if (c == nullptr) return set_error(NM_ERR_INVALID, "%s: communicator is NULL", op);
  if (dtype != NM_F32 && dtype != NM_BF16) return set_error(NM_ERR_INVALID, "%s: dtype must be f32 or bf16", op);
  if (n < 0) return set_error(NM_ERR_INVALID, "%s: negative element count", op);
  return NM_OK;
}

// Enqueues one collective (launch() makes the NCCL call on the stream) between two events the
// watchdog follows. A failed communicator skips it.
template <typename Launch>
nm_status enqueue(nm_comm* c, const char* op, const std::string& what, Launch launch) {
  const uint64_t seq = ++c->issued;
  if (c->failed.load()) return NM_OK;
  nm_status entered = enter(c->be, op);
  if (entered != NM_OK) return entered;  // enter() left its message
  Pending p;
  p.seq = seq;
  p.what = std::string(op) + " #" + std::to_string(seq) + " (" + what + ")";
  cudaError_t err = cudaEventCreateWithFlags(&p.start, cudaEventDisableTiming);
  if (err == cudaSuccess) err = cudaEventCreateWithFlags(&p.end, cudaEventDisableTiming);
  if (err == cudaSuccess) err = cudaEventRecord(p.start, c->be->stream);
  if (err != cudaSuccess) {
    if (p.start) cudaEventDestroy(p.start);
    if (p.end) cudaEventDestroy(p.end);
    return set_error(status_of(err), "%s: %s (%s)", op, cudaGetErrorString(err), cudaGetErrorName(err));
  }
  ncclResult_t r = launch();
  bool timed_out = false;
  if (r == ncclInProgress) r = wait_ready(c->nccl, Clock::now() + c->timeout, &timed_out);
  if (r != ncclSuccess) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.end);
    const std::string message = timed_out
        ? "nccl " + p.what + " on rank " + std::to_string(c->rank) + " could not be enqueued within the timeout"
        : "nccl " + p.what + " failed on rank " + std::to_string(c->rank) + " of " + std::to_string(c->world) +
              ": " + nccl_detail(c->nccl, r);
    fail(c, message);
    return set_error(NM_ERR_DEVICE, "%s", message.c_str());
  }
  err = cudaEventRecord(p.end, c->be->stream);
  if (err != cudaSuccess) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.end);
    return set_error(status_of(err), "%s: cudaEventRecord: %s", op, cudaGetErrorString(err));
  }
  {
    std::lock_guard<std::mutex> lock(c->mutex);
    c->pending.push_back(std::move(p));
  }
  c->wake.notify_all();
  return NM_OK;
}

nm_status describe(char* buf, size_t buf_len) {
  int version = 0;
  ncclResult_t r = ncclGetVersion(&version);
  if (r != ncclSuccess) return set_error(NM_ERR_DEVICE, "ncclGetVersion: %s", ncclGetErrorString(r));
  snprintf(buf, buf_len, "{\"engine\":\"nccl\",\"version\":\"%d.%d.%d\"}", version / 10000, (version / 100) % 100, version % 100);
  return NM_OK;
}

nm_status unique_id(void* out, size_t out_len, size_t* written) {
  if (out == nullptr || written == nullptr || out_len < sizeof(ncclUniqueId)) {
    return set_error(NM_ERR_INVALID, "unique_id: needs %zu bytes", sizeof(ncclUniqueId));
  }
  ncclUniqueId id;
  ncclResult_t r = ncclGetUniqueId(&id);
  if (r != ncclSuccess) {
    return set_error(NM_ERR_UNAVAILABLE, "ncclGetUniqueId failed: %s (no usable network interface? set NCCL_SOCKET_IFNAME)",
                      ncclGetErrorString(r));
  }
  memcpy(out, &id, sizeof id);
  *written = sizeof id;
  return NM_OK;
}

nm_status create(const nm_comm_config* config, nm_comm** out) {
  if (config == nullptr || out == nullptr) return set_error(NM_ERR_INVALID, "create: NULL argument");
  *out = nullptr;
  if (config->backend == nullptr) return set_error(NM_ERR_INVALID, "create: no CUDA backend");
  if (config->unique_id == nullptr || config->unique_id_len != sizeof(ncclUniqueId)) {
    return set_error(NM_ERR_INVALID, "create: NCCL needs rank 0's %zu-byte unique id, got %zu bytes", sizeof(ncclUniqueId),
                      config->unique_id_len);
  }
  if (config->world_size < 1 || config->rank < 0 || config->rank >= config->world_size) {
    return set_error(NM_ERR_INVALID, "create: rank %d is not in [0, %d)", config->rank, config->world_size);
  }
  nm_status entered = enter(config->backend, "nccl create");
  if (entered != NM_OK) return entered;  // enter() left its message
  auto* c = new nm_comm();
  c->be = config->backend;
  c->rank = config->rank;
  c->world = config->world_size;
  c->timeout = std::chrono::milliseconds(config->timeout_ms);
  ncclUniqueId id;
  memcpy(&id, config->unique_id, sizeof id);
  ncclConfig_t nccl_config = NCCL_CONFIG_INITIALIZER;
  nccl_config.blocking = 0;
  ncclResult_t r = ncclCommInitRankConfig(&c->nccl, c->world, id, c->rank, &nccl_config);
  bool timed_out = false;
  if (r == ncclInProgress || (r == ncclSuccess && c->nccl != nullptr)) {
    r = wait_ready(c->nccl, Clock::now() + c->timeout, &timed_out);
  }
  if (r != ncclSuccess) {
    std::string why = timed_out
        ? "the NCCL communicator was not set up within " + seconds(c->timeout) +
              " (a rank did not join, or the ranks cannot reach each other: check NCCL_SOCKET_IFNAME)"
        : "ncclCommInitRankConfig failed: " + nccl_detail(c->nccl, r);
    if (c->nccl != nullptr) ncclCommAbort(c->nccl);
    delete c;
    return set_error(NM_ERR_UNAVAILABLE, "nccl: rank %d of %d: %s", config->rank, config->world_size, why.c_str());
  }
  cudaError_t err = cudaMalloc(&c->barrier_word, sizeof(float));
  if (err == cudaSuccess) err = cudaMemsetAsync(c->barrier_word, 0, sizeof(float), c->be->stream);
  if (err != cudaSuccess) {
    ncclCommAbort(c->nccl);
    if (c->barrier_word) cudaFree(c->barrier_word);
    delete c;
    return set_error(status_of(err), "nccl create: %s (%s)", cudaGetErrorString(err), cudaGetErrorName(err));
  }
  c->watchdog = std::thread(watch, c);
  *out = c;
  return NM_OK;
}

void destroy(nm_comm* c) {
  if (c == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(c->mutex);
    c->stop = true;
  }
  c->wake.notify_all();
  if (c->watchdog.joinable()) c->watchdog.join();
  enter(c->be, "nccl destroy");
  if (!c->aborted.load()) {
    // A clean finish: flush NCCL's outstanding work, then free; abort if that does not end.
    bool timed_out = false;
    ncclResult_t r = ncclCommFinalize(c->nccl);
    if (r == ncclInProgress || r == ncclSuccess) r = wait_ready(c->nccl, Clock::now() + c->timeout, &timed_out);
    if (r == ncclSuccess) ncclCommDestroy(c->nccl);
    else ncclCommAbort(c->nccl);
  }
  for (Pending& p : c->pending) {
    cudaEventDestroy(p.start);
    cudaEventDestroy(p.end);
  }
  if (c->barrier_word != nullptr) cudaFree(c->barrier_word);
  delete c;
}

void abort(nm_comm* c, const char* reason) {
  if (c == nullptr) return;
  fail(c, reason != nullptr && reason[0] != '\0' ? reason : "the process group was aborted");
}

nm_status status(nm_comm* c, char* err, size_t err_len) {
  if (c == nullptr) return set_error(NM_ERR_INVALID, "status: communicator is NULL");
  if (!c->failed.load()) return NM_OK;
  std::lock_guard<std::mutex> lock(c->mutex);
  if (err != nullptr && err_len > 0) snprintf(err, err_len, "%s", c->error.c_str());
  return NM_ERR_DEVICE;
}

std::string sized(int64_t n, nm_dtype dtype) {
  return std::to_string(n) + " " + nm_dtype_name(dtype);
}

nm_status all_reduce(nm_comm* c, void* out, const void* in, int64_t n, nm_dtype dtype, nm_reduce_op op) {
  NM_TRY(check_args(c, "allReduce", dtype, n));
  if (n == 0) return NM_OK;
  return enqueue(c, "allReduce", sized(n, dtype) + (op == NM_REDUCE_AVG ? ", avg" : ", sum"), [&] {
    return ncclAllReduce(in, out, static_cast<size_t>(n), nccl_type(dtype), nccl_op(op), c->nccl, c->be->stream);
  });
}

nm_status reduce_scatter(nm_comm* c, void* out, const void* in, int64_t n, nm_dtype dtype, nm_reduce_op op) {
  NM_TRY(check_args(c, "reduceScatter", dtype, n));
  if (n == 0) return NM_OK;
  return enqueue(c, "reduceScatter", sized(n, dtype) + " per rank" + (op == NM_REDUCE_AVG ? ", avg" : ", sum"), [&] {
    return ncclReduceScatter(in, out, static_cast<size_t>(n), nccl_type(dtype), nccl_op(op), c->nccl, c->be->stream);
  });
}

nm_status all_gather(nm_comm* c, void* out, const void* in, int64_t n, nm_dtype dtype) {
  NM_TRY(check_args(c, "allGather", dtype, n));
  if (n == 0) return NM_OK;
  return enqueue(c, "allGather", sized(n, dtype) + " per rank", [&] {
    return ncclAllGather(in, out, static_cast<size_t>(n), nccl_type(dtype), c->nccl, c->be->stream);
  });
}

nm_status broadcast(nm_comm* c, void* buf, int64_t n, nm_dtype dtype, int32_t root) {
  NM_TRY(check_args(c, "broadcast", dtype, n));
  if (root < 0 || root >= c->world) return set_error(NM_ERR_INVALID, "broadcast: root %d is not a rank of this group", root);
  if (n == 0) return NM_OK;
  return enqueue(c, "broadcast", sized(n, dtype) + " from rank " + std::to_string(root), [&] {
    return ncclBroadcast(buf, buf, static_cast<size_t>(n), nccl_type(dtype), root, c->nccl, c->be->stream);
  });
}

nm_status barrier(nm_comm* c) {
  if (c == nullptr) return set_error(NM_ERR_INVALID, "barrier: communicator is NULL");
  // NCCL has no barrier: an all-reduce of one word returns on a rank only once every rank joined.
  return enqueue(c, "barrier", "all ranks", [&] {
    return ncclAllReduce(c->barrier_word, c->barrier_word, 1, ncclFloat32, ncclSum, c->nccl, c->be->stream);
  });
}

nm_comm_ops make_ops() {
  nm_comm_ops ops;
  memset(&ops, 0, sizeof ops);
  ops.abi_version = NM_COMM_ABI_VERSION;
  ops.name = "nccl";
  ops.last_error = nm_cuda::last_error;  // the module's thread-local message (check.h)
  ops.describe = describe;
  ops.unique_id = unique_id;
  ops.create = create;
  ops.destroy = destroy;
  ops.abort = abort;
  ops.status = status;
  ops.all_reduce = all_reduce;
  ops.reduce_scatter = reduce_scatter;
  ops.all_gather = all_gather;
  ops.broadcast = broadcast;
  ops.barrier = barrier;
  return ops;
}

const nm_comm_ops g_comm_ops = make_ops();

}  // namespace
}  // namespace nm_cuda

// The module's second exported symbol (the first is nm_cuda_backend_ops, entry.cc).
extern "C" __attribute__((visibility("default"))) const nm_comm_ops* nm_cuda_comm_ops(uint32_t abi_version, char* err,
                                                                                  size_t err_len) {
  if (abi_version != NM_COMM_ABI_VERSION) {
    nm_report_abi_mismatch(err, err_len, "newton_muon_cuda.so", "collectives", NM_COMM_ABI_VERSION, abi_version,
                           "rebuild the CUDA module from the same source as the addon");
    return nullptr;
  }
  return &nm_cuda::g_comm_ops;
}

[[maybe_unused]] static constexpr nm_comm_entry_fn kCommEntryTypeCheck = &nm_cuda_comm_ops;
