// NCCL stand-in, part 2: groups, collectives and send / recv at world size 1 (see
// nccl_internal.h). Arguments are checked when called, as NCCL does (communicator, data type,
// reduction, root / peer in range, buffers in device memory of the needed size); the data
// movement is stream-ordered on the caller's stream. With one rank every reduction of a buffer is
// the buffer itself, so each collective is a copy from send to receive buffer (none in place),
// bit-exact. Inside ncclGroupStart / ncclGroupEnd operations are collected and issued at the
// outermost ncclGroupEnd, where each ncclSend to self is paired with an ncclRecv from self of
// the same communicator (in call order; same count and type); a send or receive left without
// its partner makes the group fail with ncclInvalidUsage, as it could never complete.
#include <stdlib.h>
#include <string.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "../runtime/memory_map.h"
#include "../runtime/runtime.h"
#include "../runtime/stream.h"
#include "nccl_internal.h"

namespace nm_emu {
namespace nccl {
namespace {

size_t type_bytes(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
    case ncclFloat8e4m3:
    case ncclFloat8e5m2: return 1;
    case ncclFloat16:
    case ncclBfloat16: return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32: return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64: return 8;
    default: return 0;
  }
}

struct Op {
  enum Kind { kCopy, kSend, kRecv } kind;
  const char* call;
  ncclComm* comm;
  cudaStream_t stream;
  const char* src;  // kCopy, kSend
  char* dst;        // kCopy, kRecv
  size_t bytes;
  size_t count;
  ncclDataType_t type;
};

thread_local int g_group_depth = 0;
thread_local std::vector<Op> g_group;

ncclResult_t check_buffer(const char* call, const char* name, const void* p, size_t bytes) {
  if (bytes == 0) return ncclSuccess;
  std::string why;
  if (p == nullptr || rt::check_range(p, bytes, rt::MemoryKind::kDevice, &why)) {
    return fail(ncclInvalidArgument, "%s: %s must be device memory of %zu bytes: %s", call, name, bytes,
                p == nullptr ? "it is NULL" : why.c_str());
  }
  return ncclSuccess;
}

ncclResult_t check_common(const char* call, ncclComm* comm, ncclDataType_t type, size_t count,
                          cudaStream_t stream, size_t* bytes) {
  const ncclResult_t st = check_comm(comm, call);
  if (st != ncclSuccess) return st;
  const size_t size = type_bytes(type);
  if (size == 0) return fail(ncclInvalidArgument, "%s: invalid data type %d", call, (int)type);
  if (count > SIZE_MAX / size) return fail(ncclInvalidArgument, "%s: count %zu overflows", call, count);
  if (rt::resolve_stream(stream) == nullptr) return fail(ncclInvalidArgument, "%s: invalid CUDA stream", call);
  if (rt::sticky_error() != cudaSuccess) {
    return fail(ncclUnhandledCudaError, "%s: the CUDA context has failed: %s", call,
                cudaGetErrorString(rt::sticky_error()));
  }
  *bytes = count * size;
  return ncclSuccess;
}

ncclResult_t check_red_op(const char* call, ncclRedOp_t op) {
  if ((int)op < 0 || (int)op >= (int)ncclNumOps) return fail(ncclInvalidArgument, "%s: invalid reduction %d", call, (int)op);
  return ncclSuccess;
}

ncclResult_t check_root(const char* call, const ncclComm* comm, int root, const char* what) {
  if (root < 0 || root >= comm->nranks) {
    return fail(ncclInvalidArgument, "%s: %s %d is out of range (%d rank%s)", call, what, root, comm->nranks,
                comm->nranks == 1 ? "" : "s");
  }
  return ncclSuccess;
}

// The arguments every collective checks: the communicator, type, count and stream; the reduction
// (red_op >= 0) and the root (root >= 0) when it has one; the buffers, each `count` elements or,
// where the collective gathers or scatters, count x nranks. *bytes = count elements in bytes.
struct CollectiveArgs {
  const char* call;
  ncclComm* comm;
  ncclDataType_t type;
  size_t count;
  cudaStream_t stream;
  int red_op, root;
  const void* send;
  bool send_all_ranks;
  const void* recv;
  bool recv_all_ranks;
};

ncclResult_t check_collective(const CollectiveArgs& a, size_t* bytes) {
  ncclResult_t st = check_common(a.call, a.comm, a.type, a.count, a.stream, bytes);
  if (st == ncclSuccess && a.red_op >= 0) st = check_red_op(a.call, (ncclRedOp_t)a.red_op);
  if (st == ncclSuccess && a.root >= 0) st = check_root(a.call, a.comm, a.root, "root");
  if (st == ncclSuccess) {
    st = check_buffer(a.call, "sendbuff", a.send, *bytes * (a.send_all_ranks ? (size_t)a.comm->nranks : 1));
  }
  if (st == ncclSuccess) {
    st = check_buffer(a.call, "recvbuff", a.recv, *bytes * (a.recv_all_ranks ? (size_t)a.comm->nranks : 1));
  }
  return st;
}

struct Move {
  const char* call;
  char* dst;
  const char* src;
  size_t bytes;
  static void run(void* self) {
    const Move* m = static_cast<const Move*>(self);
    memmove(m->dst, m->src, m->bytes);
  }
};

// The copy task: the buffers are checked again when it runs (a free may have come in between).
void run_move(Move m) {
  std::string why;
  if (rt::check_live_range(m.src, m.bytes, rt::MemoryKind::kDevice, &why) ||
      rt::check_live_range(m.dst, m.bytes, rt::MemoryKind::kDevice, &why)) {
    rt::set_sticky_error(cudaErrorIllegalAddress, std::string(m.call) + ": " + why);
    return;
  }
  std::string fault;
  if (!run_guarded(&Move::run, &m, &fault)) rt::set_sticky_error(cudaErrorIllegalAddress, std::string(m.call) + ": " + fault);
}

void use_stream(ncclComm* comm, cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(comm->mu);
  comm->streams.insert(stream);
}

// NM_CUDA_EMU_NCCL_STALL=n: the n-th collective of the process never completes by itself, as one
// whose peer never joins would not; once its communicator is aborted it returns without moving
// data, as NCCL's kernels do. It lets the module's timeout handling (the watchdog that aborts a
// collective outliving the group's timeout) run without a second GPU. If nothing aborts it within
// kStallLimit, the context fails (a sticky error) rather than hanging the test run.
constexpr std::chrono::seconds kStallLimit{120};

bool stalls_now() {
  static const long stall_at = [] {
    const char* v = getenv("NM_CUDA_EMU_NCCL_STALL");
    return v != nullptr ? strtol(v, nullptr, 10) : 0L;
  }();
  static std::atomic<long> collectives{0};
  return stall_at > 0 && ++collectives == stall_at;
}

void stall_until_aborted(const std::shared_ptr<AbortSignal>& signal, const char* call) {
  std::unique_lock<std::mutex> lock(signal->mu);
  if (!signal->cv.wait_for(lock, kStallLimit, [&] { return signal->aborted; })) {
    rt::set_sticky_error(cudaErrorLaunchTimeout,
                         std::string(call) + ": stalled by NM_CUDA_EMU_NCCL_STALL and never aborted");
  }
}

void issue_copy(const Op& op) {
  use_stream(op.comm, op.stream);
  rt::Stream* s = rt::resolve_stream(op.stream);
  if (stalls_now()) {
    const std::shared_ptr<AbortSignal> signal = op.comm->abort_signal;
    const char* call = op.call;
    s->enqueue([signal, call] { stall_until_aborted(signal, call); });
    return;
  }
  if (op.bytes == 0 || op.src == op.dst) {
    s->enqueue([] {});  // an in-place collective still takes its place in the stream
    return;
  }
  const Move m{op.call, op.dst, op.src, op.bytes};
  s->enqueue([m] { run_move(m); });
}

// Send on stream S, receive on stream R: the copy runs on R after everything before the send on
// S, and S's later work waits for the copy (the send buffer is free only then).
void issue_pair(const Op& send, const Op& recv) {
  use_stream(send.comm, send.stream);
  use_stream(recv.comm, recv.stream);
  rt::Stream* s = rt::resolve_stream(send.stream);
  rt::Stream* r = rt::resolve_stream(recv.stream);
  const Move m{"ncclSend/ncclRecv", recv.dst, send.src, recv.bytes};
  if (s == r) {
    r->enqueue([m] { if (m.bytes > 0) run_move(m); });
    return;
  }
  const uint64_t before_send = s->last_enqueued();
  const uint64_t copied = r->enqueue([s, before_send, m] {
    s->wait(before_send);
    if (m.bytes > 0) run_move(m);
  });
  s->enqueue([r, copied] { r->wait(copied); });
}

ncclResult_t issue_group(std::vector<Op>& ops) {
  // Pair each communicator's sends and receives in call order.
  std::vector<int> partner(ops.size(), -1);
  for (size_t i = 0; i < ops.size(); i++) {
    if (ops[i].kind != Op::kSend || partner[i] >= 0) continue;
    for (size_t j = 0; j < ops.size(); j++) {
      if (ops[j].kind == Op::kRecv && partner[j] < 0 && ops[j].comm == ops[i].comm) {
        if (ops[j].count != ops[i].count || ops[j].type != ops[i].type) {
          return fail(ncclInvalidUsage,
                      "ncclGroupEnd: ncclSend of %zu elements of type %d to self is paired with ncclRecv of %zu "
                      "elements of type %d",
                      ops[i].count, (int)ops[i].type, ops[j].count, (int)ops[j].type);
        }
        partner[i] = (int)j;
        partner[j] = (int)i;
        break;
      }
    }
  }
  for (size_t i = 0; i < ops.size(); i++) {
    if (ops[i].kind != Op::kCopy && partner[i] < 0) {
      return fail(ncclInvalidUsage,
                  "%s to self (peer 0) has no matching %s in the same group: at world size 1 a send needs its "
                  "receive between the same ncclGroupStart / ncclGroupEnd",
                  ops[i].call, ops[i].kind == Op::kSend ? "ncclRecv" : "ncclSend");
    }
  }
  for (size_t i = 0; i < ops.size(); i++) {
    if (ops[i].kind == Op::kCopy) {
      issue_copy(ops[i]);
    } else if (ops[i].kind == Op::kSend) {
      issue_pair(ops[i], ops[(size_t)partner[i]]);
    }
  }
  return ncclSuccess;
}

ncclResult_t submit(const Op& op) {
  if (g_group_depth > 0) {
    g_group.push_back(op);
    return ncclSuccess;
  }
  std::vector<Op> single{op};
  return issue_group(single);
}

Op copy_op(const char* call, ncclComm* comm, cudaStream_t stream, const void* src, void* dst, size_t bytes,
           size_t count, ncclDataType_t type) {
  return Op{Op::kCopy, call, comm, stream, static_cast<const char*>(src), static_cast<char*>(dst), bytes, count, type};
}

// ncclSend / ncclRecv: checked now, paired with their partner at the group's end.
ncclResult_t point_to_point(Op::Kind kind, const char* call, void* buf, size_t count, ncclDataType_t type, int peer,
                            ncclComm* comm, cudaStream_t stream) {
  size_t bytes = 0;
  ncclResult_t st = check_common(call, comm, type, count, stream, &bytes);
  if (st == ncclSuccess) st = check_root(call, comm, peer, "peer");
  if (st == ncclSuccess) st = check_buffer(call, kind == Op::kSend ? "sendbuff" : "recvbuff", buf, bytes);
  if (st != ncclSuccess) return st;
  const char* src = kind == Op::kSend ? static_cast<const char*>(buf) : nullptr;
  char* dst = kind == Op::kRecv ? static_cast<char*>(buf) : nullptr;
  return submit(Op{kind, call, comm, stream, src, dst, bytes, count, type});
}

}  // namespace
}  // namespace nccl
}  // namespace nm_emu

using namespace nm_emu::nccl;

extern "C" {

ncclResult_t ncclGroupStart(void) {
  NM_EMU_ENTRY("ncclGroupStart");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  if (g_group_depth++ == 0) g_group.clear();
  return ncclSuccess;
}

ncclResult_t ncclGroupEnd(void) {
  NM_EMU_ENTRY("ncclGroupEnd");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  if (g_group_depth == 0) return fail(ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart");
  if (--g_group_depth > 0) return ncclSuccess;
  std::vector<Op> ops;
  ops.swap(g_group);
  return issue_group(ops);
}

ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  NM_EMU_ENTRY("ncclAllReduce");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  size_t bytes = 0;
  const CollectiveArgs a{"ncclAllReduce", comm, datatype, count, stream, (int)op, -1, sendbuff, false, recvbuff, false};
  const ncclResult_t st = check_collective(a, &bytes);
  if (st != ncclSuccess) return st;
  return submit(copy_op(a.call, comm, stream, sendbuff, recvbuff, bytes, count, datatype));
}

ncclResult_t ncclReduceScatter(const void* sendbuff, void* recvbuff, size_t recvcount, ncclDataType_t datatype,
                               ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
  NM_EMU_ENTRY("ncclReduceScatter");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  size_t bytes = 0;
  const CollectiveArgs a{"ncclReduceScatter", comm, datatype, recvcount, stream, (int)op, -1, sendbuff, true, recvbuff,
                         false};
  const ncclResult_t st = check_collective(a, &bytes);
  if (st != ncclSuccess) return st;
  const char* mine = static_cast<const char*>(sendbuff) + (size_t)comm->rank * bytes;
  return submit(copy_op(a.call, comm, stream, mine, recvbuff, bytes, recvcount, datatype));
}

ncclResult_t ncclAllGather(const void* sendbuff, void* recvbuff, size_t sendcount, ncclDataType_t datatype,
                           ncclComm_t comm, cudaStream_t stream) {
  NM_EMU_ENTRY("ncclAllGather");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  size_t bytes = 0;
  const CollectiveArgs a{"ncclAllGather", comm, datatype, sendcount, stream, -1, -1, sendbuff, false, recvbuff, true};
  const ncclResult_t st = check_collective(a, &bytes);
  if (st != ncclSuccess) return st;
  char* mine = static_cast<char*>(recvbuff) + (size_t)comm->rank * bytes;
  return submit(copy_op(a.call, comm, stream, sendbuff, mine, bytes, sendcount, datatype));
}

ncclResult_t ncclBroadcast(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype, int root,
                           ncclComm_t comm, cudaStream_t stream) {
  NM_EMU_ENTRY("ncclBroadcast");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  size_t bytes = 0;
  if (root < 0) return fail(ncclInvalidArgument, "ncclBroadcast: root %d is out of range", root);
  const CollectiveArgs a{"ncclBroadcast", comm, datatype, count, stream, -1, root, sendbuff, false, recvbuff, false};
  const ncclResult_t st = check_collective(a, &bytes);
  if (st != ncclSuccess) return st;
  return submit(copy_op(a.call, comm, stream, sendbuff, recvbuff, bytes, count, datatype));
}

ncclResult_t ncclReduce(const void* sendbuff, void* recvbuff, size_t count, ncclDataType_t datatype,
                        ncclRedOp_t op, int root, ncclComm_t comm, cudaStream_t stream) {
  NM_EMU_ENTRY("ncclReduce");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  size_t bytes = 0;
  if (root < 0) return fail(ncclInvalidArgument, "ncclReduce: root %d is out of range", root);
  const CollectiveArgs a{"ncclReduce", comm, datatype, count, stream, (int)op, root, sendbuff, false, recvbuff, false};
  const ncclResult_t st = check_collective(a, &bytes);
  if (st != ncclSuccess) return st;
  return submit(copy_op(a.call, comm, stream, sendbuff, recvbuff, bytes, count, datatype));
}

ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  NM_EMU_ENTRY("ncclSend");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  return point_to_point(Op::kSend, "ncclSend", const_cast<void*>(sendbuff), count, datatype, peer, comm, stream);
}

ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype, int peer, ncclComm_t comm,
                      cudaStream_t stream) {
  NM_EMU_ENTRY("ncclRecv");
  if (nm_emu_injected_) return (ncclResult_t)nm_emu_injected_;
  return point_to_point(Op::kRecv, "ncclRecv", recvbuff, count, datatype, peer, comm, stream);
}

}  // extern "C"
