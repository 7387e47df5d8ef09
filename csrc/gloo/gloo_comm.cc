#include "gloo_comm.h"

#include <gloo/algorithm.h>
#include <gloo/allgather.h>
#include <gloo/allreduce.h>
#include <gloo/barrier.h>
#include <gloo/broadcast.h>
#include <gloo/config.h>
#include <gloo/reduce_scatter.h>
#include <gloo/rendezvous/context.h>
#include <gloo/transport/tcp/device.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdio>
#include <cstring>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "reduce_functions.h"
#include "store_client.h"

// A reduce-scatter ready to run: Gloo's halving-doubling template is built for one buffer and
// count (it allocates its receive buffers and registers them with the pairs), then run as often
// as needed; building it per call costs more than the transfer. Used on the stream's thread only.
struct ReduceScatterPlan {
  nm_dtype dtype;
  size_t count;  // elements per rank
  std::vector<char> scratch;  // world * count elements: the template reduces in place here
  std::unique_ptr<gloo::Algorithm> algorithm;
};

struct nm_comm {
  int rank = 0;
  int world = 1;
  std::chrono::milliseconds timeout{0};
  nm_stream_hooks hooks{};
  std::shared_ptr<gloo::rendezvous::Context> context;
  // Operation count (enqueue order, main thread): the sequence number in messages and the Gloo
  // tag, identical on every rank because every rank issues the same ops in the same order.
  uint64_t issued = 0;

  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::string error;  // the first failure, sticky

  // The few most recent reduce-scatter shapes, newest first (every rank builds and evicts them in
  // the same order, so the templates' pair slots match across ranks).
  std::list<ReduceScatterPlan> reduce_scatter_plans;

  // Records the first failure; later ones are consequences and are dropped.
  void fail(const std::string& message) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (!failed.load()) {
      error = message;
      failed.store(true);
    }
  }
};

namespace nm_gloo {
namespace {

thread_local std::string g_error;

nm_status set_error(nm_status status, const std::string& message) {
  g_error = message;
  return status;
}

// Gloo's messages start with the source location ("[/build/gloo/.../pair.cc:598] Read error ...");
// the user needs the rest.
std::string without_location(const std::string& what) {
  if (!what.empty() && what[0] == '[') {
    const size_t end = what.find("] ");
    if (end != std::string::npos) return what.substr(end + 2);
  }
  return what;
}

nm_status check_common(nm_comm* comm, const char* op, nm_dtype dtype, int64_t n) {
  if (comm == nullptr) return set_error(NM_ERR_INVALID, std::string(op) + ": communicator is NULL");
  if (dtype != NM_F32 && dtype != NM_BF16) {
    return set_error(NM_ERR_INVALID, std::string(op) + ": dtype must be f32 or bf16");
  }
  if (n < 0) return set_error(NM_ERR_INVALID, std::string(op) + ": negative element count");
  return NM_OK;
}

struct Task {
  std::function<void()> body;
};

void run_task(void* arg) {
  std::unique_ptr<Task> task(static_cast<Task*>(arg));
  task->body();
}

// Enqueues `body` in stream order under the op's name and sequence number: skipped once the
// communicator failed, and any exception (Gloo's timeouts and I/O errors) fails it with a message
// naming the op, this rank and the cause.
nm_status enqueue(nm_comm* comm, const char* op, const std::string& what, std::function<void()> body) {
  const uint64_t seq = ++comm->issued;
  auto* task = new Task();
  const std::string name = std::string(op);
  task->body = [comm, seq, name, what, body = std::move(body)]() {
    if (comm->failed.load()) return;
    try {
      body();
    } catch (const std::exception& e) {
      comm->fail("gloo " + name + " #" + std::to_string(seq) + " (" + what + ") failed on rank " +
                 std::to_string(comm->rank) + " of " + std::to_string(comm->world) + ": " +
                 without_location(e.what()));
    }
  };
  nm_status s = comm->hooks.enqueue(comm->hooks.queue, &run_task, task);
  if (s != NM_OK) {
    delete task;
    return set_error(s, std::string(op) + ": could not enqueue on the CPU stream");
  }
  return NM_OK;
}

uint32_t tag_of(nm_comm* comm) { return static_cast<uint32_t>(comm->issued + 1); }

std::string describe_op(int64_t n, nm_dtype dtype) {
  return std::to_string(n) + " " + nm_dtype_name(dtype);
}

void divide(void* data, size_t n, nm_dtype dtype, int world) {
  if (dtype == NM_BF16) divide_bf16(data, n, world);
  else divide_f32(data, n, world);
}

constexpr size_t kReduceScatterPlans = 4;

template <typename T>
std::unique_ptr<gloo::Algorithm> make_reduce_scatter(nm_comm* comm, std::vector<char>& scratch, size_t n,
                                                     const gloo::ReductionFunction<T>* fn) {
  std::vector<int> counts(static_cast<size_t>(comm->world), static_cast<int>(n));
  std::vector<T*> ptrs{reinterpret_cast<T*>(scratch.data())};
  return std::make_unique<gloo::ReduceScatterHalvingDoubling<T>>(comm->context, ptrs, static_cast<int>(n * comm->world), counts, fn);
}

const gloo::ReductionFunction<float>& f32_sum() {
  static const gloo::ReductionFunction<float> fn(gloo::SUM, &accumulate_f32);
  return fn;
}

const gloo::ReductionFunction<uint16_t>& bf16_sum() {
  static const gloo::ReductionFunction<uint16_t> fn(gloo::CUSTOM, &accumulate_bf16);
  return fn;
}

}  // namespace

const char* last_error() { return g_error.c_str(); }

nm_status describe(char* buf, size_t buf_len) {
  std::snprintf(buf, buf_len, "{\"engine\":\"gloo\",\"version\":\"%d.%d.%d\",\"transport\":\"tcp\"}",
                GLOO_VERSION_MAJOR, GLOO_VERSION_MINOR, GLOO_VERSION_PATCH);
  return NM_OK;
}

nm_status unique_id(void*, size_t, size_t*) {
  return set_error(NM_ERR_INVALID, "gloo needs no unique id: it joins through the rendezvous store");
}

nm_status create(const nm_comm_config* config, nm_comm** out) {
  if (out == nullptr || config == nullptr) return set_error(NM_ERR_INVALID, "create: NULL argument");
  *out = nullptr;
  if (config->world_size < 1 || config->rank < 0 || config->rank >= config->world_size) {
    return set_error(NM_ERR_INVALID, "create: rank " + std::to_string(config->rank) +
                                         " is not in [0, " + std::to_string(config->world_size) + ")");
  }
  if (config->hooks.enqueue == nullptr) return set_error(NM_ERR_INVALID, "create: no stream hooks");
  if (config->timeout_ms < 1) return set_error(NM_ERR_INVALID, "create: timeout must be >= 1 ms");
  auto comm = std::make_unique<nm_comm>();
  comm->rank = config->rank;
  comm->world = config->world_size;
  comm->timeout = std::chrono::milliseconds(config->timeout_ms);
  comm->hooks = config->hooks;
  const std::string where = std::string(config->store_host ? config->store_host : "") + ":" +
                            std::to_string(config->store_port);
  try {
    gloo::transport::tcp::attr attr;
    if (config->iface != nullptr && config->iface[0] != '\0') attr.iface = config->iface;
    else if (config->hostname != nullptr && config->hostname[0] != '\0') attr.hostname = config->hostname;
    std::shared_ptr<gloo::transport::Device> device = gloo::transport::tcp::CreateDevice(attr);
    RendezvousStore store(config->store_host ? config->store_host : "", config->store_port,
                          config->store_prefix ? config->store_prefix : "", comm->timeout);
    comm->context = std::make_shared<gloo::rendezvous::Context>(comm->rank, comm->world);
    comm->context->setTimeout(comm->timeout);
    comm->context->connectFullMesh(store, device);
  } catch (const std::exception& e) {
    return set_error(NM_ERR_UNAVAILABLE, "gloo: rank " + std::to_string(config->rank) + " of " +
                                             std::to_string(config->world_size) +
                                             " could not connect its process group (store " + where +
                                             "): " + without_location(e.what()));
  }
  *out = comm.release();
  return NM_OK;
}

void destroy(nm_comm* comm) { delete comm; }

void abort(nm_comm* comm, const char* reason) {
  if (comm == nullptr) return;
  comm->fail(reason != nullptr && reason[0] != '\0' ? reason : "the process group was aborted");
}

nm_status status(nm_comm* comm, char* err, size_t err_len) {
  if (comm == nullptr) return set_error(NM_ERR_INVALID, "status: communicator is NULL");
  if (!comm->failed.load()) return NM_OK;
  std::lock_guard<std::mutex> lock(comm->error_mutex);
  if (err != nullptr && err_len > 0) std::snprintf(err, err_len, "%s", comm->error.c_str());
  return NM_ERR_DEVICE;
}

nm_status all_reduce(nm_comm* comm, void* out, const void* in, int64_t n, nm_dtype dtype,
                     nm_reduce_op op) {
  if (nm_status s = check_common(comm, "allReduce", dtype, n); s != NM_OK) return s;
  if (op != NM_REDUCE_SUM && op != NM_REDUCE_AVG) return set_error(NM_ERR_INVALID, "allReduce: unknown reduce op");
  const uint32_t tag = tag_of(comm);
  const size_t count = static_cast<size_t>(n);
  return enqueue(comm, "allReduce", describe_op(n, dtype) + (op == NM_REDUCE_AVG ? ", avg" : ", sum"),
                 [comm, out, in, count, dtype, op, tag] {
    const size_t bytes = count * nm_dtype_size(dtype);
    if (in != out) std::memmove(out, in, bytes);
    if (count == 0) return;
    if (comm->world > 1) {
      gloo::AllreduceOptions opts(comm->context);
      if (dtype == NM_BF16) {
        opts.setOutput(static_cast<uint16_t*>(out), count);
        opts.setReduceFunction(&sum_bf16);
      } else {
        opts.setOutput(static_cast<float*>(out), count);
        opts.setReduceFunction(&sum_f32);
      }
      opts.setTag(tag);
      opts.setTimeout(comm->timeout);
      gloo::allreduce(opts);
    }
    if (op == NM_REDUCE_AVG) divide(out, count, dtype, comm->world);
  });
}

nm_status reduce_scatter(nm_comm* comm, void* out, const void* in, int64_t n, nm_dtype dtype,
                         nm_reduce_op op) {
  if (nm_status s = check_common(comm, "reduceScatter", dtype, n); s != NM_OK) return s;
  if (op != NM_REDUCE_SUM && op != NM_REDUCE_AVG) return set_error(NM_ERR_INVALID, "reduceScatter: unknown reduce op");
  if (n * comm->world > INT_MAX) {
    return set_error(NM_ERR_INVALID, "reduceScatter: Gloo's reduce-scatter counts elements in int; " +
                                         std::to_string(n * comm->world) + " elements is too many");
  }
  const size_t count = static_cast<size_t>(n);
  return enqueue(comm, "reduceScatter", describe_op(n, dtype) + " per rank" + (op == NM_REDUCE_AVG ? ", avg" : ", sum"),
                 [comm, out, in, count, dtype, op] {
    if (count == 0) return;
    const size_t elem = nm_dtype_size(dtype);
    auto& plans = comm->reduce_scatter_plans;
    auto plan = std::find_if(plans.begin(), plans.end(), [&](const ReduceScatterPlan& p) { return p.dtype == dtype && p.count == count; });
    if (plan == plans.end()) {
      ReduceScatterPlan made{dtype, count, std::vector<char>(count * comm->world * elem), nullptr};
      made.algorithm = dtype == NM_BF16 ? make_reduce_scatter(comm, made.scratch, count, &bf16_sum())
                                        : make_reduce_scatter(comm, made.scratch, count, &f32_sum());
      plans.push_front(std::move(made));
      if (plans.size() > kReduceScatterPlans) plans.pop_back();
    } else {
      plans.splice(plans.begin(), plans, plan);
    }
    // The template reduces in place and leaves this rank's part at the front of its buffer: it
    // works on the plan's copy, so `in` is left as it was.
    ReduceScatterPlan& p = plans.front();
    std::memcpy(p.scratch.data(), in, p.scratch.size());
    p.algorithm->run();
    std::memcpy(out, p.scratch.data(), count * elem);
    if (op == NM_REDUCE_AVG) divide(out, count, dtype, comm->world);
  });
}

nm_status all_gather(nm_comm* comm, void* out, const void* in, int64_t n, nm_dtype dtype) {
  if (nm_status s = check_common(comm, "allGather", dtype, n); s != NM_OK) return s;
  const uint32_t tag = tag_of(comm);
  const size_t count = static_cast<size_t>(n);
  return enqueue(comm, "allGather", describe_op(n, dtype) + " per rank", [comm, out, in, count, dtype, tag] {
    if (count == 0) return;
    const size_t bytes = count * nm_dtype_size(dtype);
    char* own = static_cast<char*>(out) + static_cast<size_t>(comm->rank) * bytes;
    // In place (in is this rank's slot of out): hand Gloo a copy as the input.
    std::vector<char> copy;
    const void* input = in;
    if (in == own) {
      copy.assign(own, own + bytes);
      input = copy.data();
    }
    if (comm->world == 1) {
      std::memmove(out, input, bytes);
      return;
    }
    gloo::AllgatherOptions opts(comm->context);
    if (dtype == NM_BF16) {
      opts.setInput(const_cast<uint16_t*>(static_cast<const uint16_t*>(input)), count);
      opts.setOutput(static_cast<uint16_t*>(out), count * comm->world);
    } else {
      opts.setInput(const_cast<float*>(static_cast<const float*>(input)), count);
      opts.setOutput(static_cast<float*>(out), count * comm->world);
    }
    opts.setTag(tag);
    opts.setTimeout(comm->timeout);
    gloo::allgather(opts);
  });
}

nm_status broadcast(nm_comm* comm, void* buf, int64_t n, nm_dtype dtype, int32_t root) {
  if (nm_status s = check_common(comm, "broadcast", dtype, n); s != NM_OK) return s;
  if (root < 0 || root >= comm->world) {
    return set_error(NM_ERR_INVALID, "broadcast: root " + std::to_string(root) + " is not a rank of this group");
  }
  const uint32_t tag = tag_of(comm);
  const size_t count = static_cast<size_t>(n);
  return enqueue(comm, "broadcast", describe_op(n, dtype) + " from rank " + std::to_string(root),
                 [comm, buf, count, dtype, root, tag] {
    if (count == 0 || comm->world == 1) return;
    gloo::BroadcastOptions opts(comm->context);
    if (dtype == NM_BF16) opts.setOutput(static_cast<uint16_t*>(buf), count);
    else opts.setOutput(static_cast<float*>(buf), count);
    opts.setRoot(root);
    opts.setTag(tag);
    opts.setTimeout(comm->timeout);
    gloo::broadcast(opts);
  });
}

nm_status barrier(nm_comm* comm) {
  if (comm == nullptr) return set_error(NM_ERR_INVALID, "barrier: communicator is NULL");
  const uint32_t tag = tag_of(comm);
  return enqueue(comm, "barrier", "all ranks", [comm, tag] {
    if (comm->world == 1) return;
    gloo::BarrierOptions opts(comm->context);
    opts.setTag(tag);
    opts.setTimeout(comm->timeout);
    gloo::barrier(opts);
  });
}

}  // namespace nm_gloo
