// The collectives interface: one table of ops that every process-group engine implements with the
// same semantics. 'gloo' (CPU tensors) lives in newton_muon_gloo.so over Debian's libgloo; 'nccl'
// (CUDA tensors) lives in the CUDA module over NCCL. The addon loads either at run time, like the
// CUDA backend, and reports exactly why one is unavailable.
//
// Why a second table and not more slots in nm_backend_ops: a communicator belongs to a process
// group, not to a device, and the Gloo engine is a module of its own that serves the CPU backend
// of the addon. A separate, separately versioned table keeps the device ABI untouched.
//
// Conventions shared by every op:
// - A communicator serves one backend (one device) and is used from one thread (the one that
//   enqueues ops). Ops are stream-ordered on that backend: a call validates, enqueues and returns;
//   the data moves when the stream reaches it (Gloo: in order on the CPU work queue; NCCL: on the
//   CUDA stream). Pointers are the backend's (host pointers for the CPU) and include offsets.
// - Every rank must issue the same ops in the same order with the same sizes and dtypes.
// - f32 and bf16. Sums of bf16 are formed in f32 and rounded to bf16 after every addition (what
//   NCCL does); AVG is the sum divided by the world size (NCCL forms it as a pre-scaled sum, equal
//   for power-of-two world sizes). Out-of-place ops need disjoint input and output ranges except
//   where stated.
// - Failures never hang: every op runs against the communicator's timeout. A failed or timed-out
//   op makes the communicator "failed" (sticky): status() then returns the first error, later ops
//   are skipped (their outputs are left as they were), and the error names the op, its sequence
//   number and this rank.
#ifndef NM_CORE_COMM_H
#define NM_CORE_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// Bumped whenever the table or the config below changes shape.
#define NM_COMM_ABI_VERSION 1u

typedef struct nm_comm nm_comm;  // one communicator: a rank's end of a process group

typedef enum nm_reduce_op {
  NM_REDUCE_SUM = 0,
  NM_REDUCE_AVG = 1,
} nm_reduce_op;

// How an engine that does not own the stream (Gloo, serving the addon's CPU backend) puts work in
// it: enqueue(queue, task, arg) runs task(arg) once everything enqueued before it on that stream
// has run, on the stream's thread. The engine owns arg.
typedef struct nm_stream_hooks {
  void* queue;
  nm_status (*enqueue)(void* queue, void (*task)(void* arg), void* arg);
} nm_stream_hooks;

typedef struct nm_comm_config {
  int32_t rank;
  int32_t world_size;
  int64_t timeout_ms;          // every op, and the set-up, fail after this long without progress
  nm_backend* backend;         // the device the communicator serves
  nm_stream_hooks hooks;       // Gloo: the CPU backend's work queue (NCCL: unused)
  // NCCL: rank 0's ncclUniqueId, handed to every rank through the rendezvous store.
  const void* unique_id;
  size_t unique_id_len;
  // Gloo: the rendezvous store (lib/dist/store.ts) and this group's key prefix.
  const char* store_host;
  int32_t store_port;
  const char* store_prefix;
  // Gloo: the address other ranks reach this one at (a hostname or IP), or the interface to take
  // it from (GLOO_SOCKET_IFNAME); either may be empty.
  const char* hostname;
  const char* iface;
} nm_comm_config;

typedef struct nm_comm_ops {
  uint32_t abi_version;  // NM_COMM_ABI_VERSION
  const char* name;      // "gloo" or "nccl"

  // The calling thread's last error message (ops return a status; the text is here).
  const char* (*last_error)(void);
  // One-line JSON about the engine (version...).
  nm_status (*describe)(char* buf, size_t buf_len);
  // NCCL: writes rank 0's ncclUniqueId (bytes) into out; Gloo: NM_ERR_INVALID (no id needed).
  nm_status (*unique_id)(void* out, size_t out_len, size_t* written);

  // Joins the group: blocks until every rank has joined or the timeout passed (call it off the
  // event loop). On failure *out is NULL and last_error() says why.
  nm_status (*create)(const nm_comm_config* config, nm_comm** out);
  // Frees the communicator. Call after the stream has passed every op of it (or after abort).
  void (*destroy)(nm_comm* comm);
  // Stops it for good from any thread: in-flight ops end with an error, later ones are skipped,
  // status() reports `reason`.
  void (*abort)(nm_comm* comm, const char* reason);
  // NM_OK while healthy; otherwise the sticky error's status, its message copied into err.
  nm_status (*status)(nm_comm* comm, char* err, size_t err_len);

  // out[i] = reduce over ranks of in[i], i < n. out may equal in (in place).
  nm_status (*all_reduce)(nm_comm* comm, void* out, const void* in, int64_t n, nm_dtype dtype,
                          nm_reduce_op op);
  // out[i] = reduce over ranks r of in_r[rank * n + i], i < n; in holds world_size * n elements.
  nm_status (*reduce_scatter)(nm_comm* comm, void* out, const void* in, int64_t n,
                              nm_dtype dtype, nm_reduce_op op);
  // out[r * n + i] = in_r[i]; out holds world_size * n elements. in may be out + rank * n.
  nm_status (*all_gather)(nm_comm* comm, void* out, const void* in, int64_t n, nm_dtype dtype);
  // buf = root's buf on every rank.
  nm_status (*broadcast)(nm_comm* comm, void* buf, int64_t n, nm_dtype dtype, int32_t root);
  // Returns (in stream order) once every rank has reached it.
  nm_status (*barrier)(nm_comm* comm);
} nm_comm_ops;

// The symbols the two modules export. Each returns NULL (with a reason in err) when abi_version
// does not match the module's.
typedef const nm_comm_ops* (*nm_comm_entry_fn)(uint32_t abi_version, char* err, size_t err_len);
#define NM_GLOO_COMM_ENTRY_SYMBOL "nm_gloo_comm_ops"
#define NM_NCCL_COMM_ENTRY_SYMBOL "nm_cuda_comm_ops"

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // NM_CORE_COMM_H
