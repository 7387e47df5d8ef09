#include "comm_bindings.h"

#include <cstring>
#include <string>
#include <vector>

#include "../core/comm.h"
#include "../cpu/cpu_backend.h"
#include "args.h"
#include "comm_registry.h"
#include "device_registry.h"

namespace nm::napi {
namespace {

// One communicator as JS holds it (an External). destroy() frees it once the stream has passed
// its last op; the finalizer only aborts a forgotten one (freeing it could race the stream).
struct CommHandle {
  const nm_comm_ops* ops = nullptr;
  nm_comm* comm = nullptr;
  DeviceSlot* device = nullptr;
  int32_t world = 1;
  bool destroyed = false;
};

Napi::Object engine_info(Napi::Env env, const CommEngine& engine) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", engine.name);
  o.Set("available", engine.ops != nullptr);
  if (engine.ops == nullptr) o.Set("reason", engine.unavailable_reason);
  if (!engine.description_json.empty()) o.Set("describe", engine.description_json);
  if (!engine.module_path.empty()) o.Set("modulePath", engine.module_path);
  return o;
}

const CommEngine& engine_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  const std::string name = info[i].IsString() ? info[i].As<Napi::String>().Utf8Value() : "";
  const CommEngine* engine = comm_engine_if_loaded(name);
  if (engine == nullptr) {
    throw Napi::Error::New(info.Env(), std::string(op) + ": engine '" + name + "' was not looked up (call commEngines first)");
  }
  if (engine->ops == nullptr) {
    throw Napi::Error::New(info.Env(), std::string(op) + ": " + name + " is unavailable: " + engine->unavailable_reason);
  }
  return *engine;
}

CommHandle& comm_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (!info[i].IsExternal()) throw Napi::TypeError::New(info.Env(), std::string(op) + ": not a communicator");
  CommHandle* handle = info[i].As<Napi::External<CommHandle>>().Data();
  if (handle == nullptr || handle->destroyed) {
    throw Napi::Error::New(info.Env(), std::string(op) + ": the process group was destroyed");
  }
  return *handle;
}

// A tensor range of `bytes` at arguments (i, i+1), which must live on the communicator's device.
void* comm_operand(const Napi::CallbackInfo& info, size_t i, int64_t bytes, const CommHandle& comm, const std::string& what) {
  Operand operand = operand_arg(info, i, bytes, what);
  if (operand.buffer->device != comm.device) {
    throw Napi::Error::New(info.Env(), what + ": the tensor is on " + operand.buffer->device->name +
                                           " but the process group serves " + comm.device->name);
  }
  return operand.ptr;
}

void check_comm_status(Napi::Env env, const CommHandle& comm, nm_status status) {
  if (status != NM_OK) throw Napi::Error::New(env, std::string(comm.ops->name) + ": " + comm.ops->last_error());
}

int64_t bytes_of(int64_t n, nm_dtype dtype, int64_t copies = 1) {
  return n * copies * static_cast<int64_t>(nm_dtype_size(dtype));
}

// commEngines(glooCandidates: string[]) -> [gloo info, nccl info]
Napi::Value CommEngines(const Napi::CallbackInfo& info) {
  std::vector<std::string> candidates;
  if (info[0].IsArray()) {
    Napi::Array arr = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) candidates.push_back(arr.Get(i).ToString().Utf8Value());
  }
  Napi::Array out = Napi::Array::New(info.Env(), 2);
  out.Set(0u, engine_info(info.Env(), gloo_engine(candidates)));
  out.Set(1u, engine_info(info.Env(), nccl_engine()));
  return out;
}

// commUniqueId(engine) -> ArrayBuffer (NCCL's ncclUniqueId, made on rank 0)
Napi::Value CommUniqueId(const Napi::CallbackInfo& info) {
  const CommEngine& engine = engine_arg(info, 0, "commUniqueId");
  char id[1024];
  size_t written = 0;
  if (engine.ops->unique_id(id, sizeof id, &written) != NM_OK) {
    throw Napi::Error::New(info.Env(), engine.name + ": " + engine.ops->last_error());
  }
  Napi::ArrayBuffer out = Napi::ArrayBuffer::New(info.Env(), written);
  std::memcpy(out.Data(), id, written);
  return out;
}

class CreateWorker : public Napi::AsyncWorker {
 public:
  CreateWorker(Napi::Env env, const CommEngine& engine, DeviceSlot& device, nm_comm_config config,
               std::vector<char> unique_id, std::string store_host, std::string store_prefix,
               std::string hostname, std::string iface)
      : Napi::AsyncWorker(env, "newton-muon:comm-create"),
        deferred_(Napi::Promise::Deferred::New(env)),
        engine_(engine),
        device_(device),
        config_(config),
        unique_id_(std::move(unique_id)),
        store_host_(std::move(store_host)),
        store_prefix_(std::move(store_prefix)),
        hostname_(std::move(hostname)),
        iface_(std::move(iface)) {
    config_.unique_id = unique_id_.empty() ? nullptr : unique_id_.data();
    config_.unique_id_len = unique_id_.size();
    config_.store_host = store_host_.c_str();
    config_.store_prefix = store_prefix_.c_str();
    config_.hostname = hostname_.c_str();
    config_.iface = iface_.c_str();
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    if (engine_.ops->create(&config_, &comm_) != NM_OK) SetError(engine_.ops->last_error());
  }

  void OnOK() override {
    auto* handle = new CommHandle{engine_.ops, comm_, &device_, config_.world_size, false};
    auto external = Napi::External<CommHandle>::New(Env(), handle, [](Napi::Env, CommHandle* h) {
      if (!h->destroyed) h->ops->abort(h->comm, "the process group was garbage-collected without destroy()");
      // The communicator itself is left allocated: the stream may still hold ops that use it.
      h->destroyed = true;
    });
    deferred_.Resolve(external);
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  const CommEngine& engine_;
  DeviceSlot& device_;
  nm_comm_config config_;
  std::vector<char> unique_id_;
  std::string store_host_, store_prefix_, hostname_, iface_;
  nm_comm* comm_ = nullptr;
};

std::string string_field(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
}

int64_t int_field(Napi::Env env, const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(env, std::string("commCreate: ") + key + " must be a number");
  return v.As<Napi::Number>().Int64Value();
}

// commCreate(engine, device, {rank, worldSize, timeoutMs, uniqueId?, storeHost, storePort,
// storePrefix, hostname, iface}) -> Promise<communicator>
Napi::Value CommCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const CommEngine& engine = engine_arg(info, 0, "commCreate");
  DeviceSlot& device = device_arg(info, 1, "commCreate");
  const std::string wanted = engine.name == "nccl" ? "cuda" : "cpu";
  if (device.name != wanted) {
    throw Napi::Error::New(env, "commCreate: " + engine.name + " serves " + wanted + " tensors, not " + device.name);
  }
  if (!info[2].IsObject()) throw Napi::TypeError::New(env, "commCreate: config must be an object");
  Napi::Object o = info[2].As<Napi::Object>();
  nm_comm_config config;
  std::memset(&config, 0, sizeof config);
  config.rank = static_cast<int32_t>(int_field(env, o, "rank"));
  config.world_size = static_cast<int32_t>(int_field(env, o, "worldSize"));
  config.timeout_ms = int_field(env, o, "timeoutMs");
  config.store_port = static_cast<int32_t>(int_field(env, o, "storePort"));
  config.backend = device.backend;
  if (device.name == "cpu") {
    config.hooks.queue = device.backend;
    config.hooks.enqueue = nm_cpu_enqueue_task;
  }
  std::vector<char> unique_id;
  Napi::Value id = o.Get("uniqueId");
  if (id.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = id.As<Napi::ArrayBuffer>();
    const char* p = static_cast<const char*>(ab.Data());
    unique_id.assign(p, p + ab.ByteLength());
  }
  auto* worker = new CreateWorker(env, engine, device, config, std::move(unique_id), string_field(o, "storeHost"),
                                  string_field(o, "storePrefix"), string_field(o, "hostname"), string_field(o, "iface"));
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

nm_reduce_op reduce_op_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  const int64_t code = int_arg(info, i, op, "reduce op");
  if (code != NM_REDUCE_SUM && code != NM_REDUCE_AVG) {
    throw Napi::TypeError::New(info.Env(), std::string(op) + ": unknown reduce op " + std::to_string(code));
  }
  return static_cast<nm_reduce_op>(code);
}

nm_dtype float_dtype_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  nm_dtype dtype = dtype_arg(info, i, op);
  if (dtype != NM_F32 && dtype != NM_BF16) throw Napi::TypeError::New(info.Env(), std::string(op) + ": dtype must be f32 or bf16");
  return dtype;
}

int64_t count_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  const int64_t n = int_arg(info, i, op, "n");
  if (n < 0) throw Napi::RangeError::New(info.Env(), std::string(op) + ": n must be >= 0");
  return n;
}

// The arguments the out-of-place collectives share: (comm, out, outOffset, in, inOffset, n,
// dtype); out spans out_copies x n elements and in in_copies x n (a copy per rank where the op
// gathers or scatters).
struct PairArgs {
  CommHandle* comm;
  int64_t n;
  nm_dtype dtype;
  void* out;
  void* in;
};

PairArgs pair_args(const Napi::CallbackInfo& info, const char* op, int64_t out_copies, int64_t in_copies) {
  CommHandle& c = comm_arg(info, 0, op);
  const int64_t n = count_arg(info, 5, op);
  const nm_dtype dtype = float_dtype_arg(info, 6, op);
  void* out = comm_operand(info, 1, bytes_of(n, dtype, out_copies == 0 ? c.world : out_copies), c, std::string(op) + ": out");
  void* in = comm_operand(info, 3, bytes_of(n, dtype, in_copies == 0 ? c.world : in_copies), c, std::string(op) + ": in");
  return {&c, n, dtype, out, in};
}

constexpr int64_t kPerRank = 0;  // pair_args: one copy per rank

// commAllReduce(comm, out, outOffset, in, inOffset, n, dtype, op)
Napi::Value CommAllReduce(const Napi::CallbackInfo& info) {
  const PairArgs a = pair_args(info, "allReduce", 1, 1);
  check_comm_status(info.Env(), *a.comm, a.comm->ops->all_reduce(a.comm->comm, a.out, a.in, a.n, a.dtype, reduce_op_arg(info, 7, "allReduce")));
  return info.Env().Undefined();
}

// commReduceScatter(comm, out, outOffset, in, inOffset, n, dtype, op): in holds worldSize * n
Napi::Value CommReduceScatter(const Napi::CallbackInfo& info) {
  const PairArgs a = pair_args(info, "reduceScatter", 1, kPerRank);
  check_comm_status(info.Env(), *a.comm,
                    a.comm->ops->reduce_scatter(a.comm->comm, a.out, a.in, a.n, a.dtype, reduce_op_arg(info, 7, "reduceScatter")));
  return info.Env().Undefined();
}

// commAllGather(comm, out, outOffset, in, inOffset, n, dtype): out holds worldSize * n
Napi::Value CommAllGather(const Napi::CallbackInfo& info) {
  const PairArgs a = pair_args(info, "allGather", kPerRank, 1);
  check_comm_status(info.Env(), *a.comm, a.comm->ops->all_gather(a.comm->comm, a.out, a.in, a.n, a.dtype));
  return info.Env().Undefined();
}

// commBroadcast(comm, buf, offset, n, dtype, root)
Napi::Value CommBroadcast(const Napi::CallbackInfo& info) {
  const char* op = "broadcast";
  CommHandle& c = comm_arg(info, 0, op);
  const int64_t n = count_arg(info, 3, op);
  const nm_dtype dtype = float_dtype_arg(info, 4, op);
  void* buf = comm_operand(info, 1, bytes_of(n, dtype), c, "broadcast: tensor");
  const int64_t root = int_arg(info, 5, op, "root");
  check_comm_status(info.Env(), c, c.ops->broadcast(c.comm, buf, n, dtype, static_cast<int32_t>(root)));
  return info.Env().Undefined();
}

Napi::Value CommBarrier(const Napi::CallbackInfo& info) {
  CommHandle& c = comm_arg(info, 0, "barrier");
  check_comm_status(info.Env(), c, c.ops->barrier(c.comm));
  return info.Env().Undefined();
}

// commStatus(comm) -> null while healthy, else the first error's message
Napi::Value CommStatus(const Napi::CallbackInfo& info) {
  CommHandle& c = comm_arg(info, 0, "status");
  char err[2048] = {0};
  if (c.ops->status(c.comm, err, sizeof err) == NM_OK) return info.Env().Null();
  return Napi::String::New(info.Env(), err);
}

// commAbort(comm, reason)
Napi::Value CommAbort(const Napi::CallbackInfo& info) {
  CommHandle& c = comm_arg(info, 0, "abort");
  const std::string reason = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  c.ops->abort(c.comm, reason.c_str());
  return info.Env().Undefined();
}

// Frees a communicator once the device stream has passed everything enqueued so far.
class DestroyWorker : public Napi::AsyncWorker {
 public:
  DestroyWorker(Napi::Env env, const nm_comm_ops* ops, nm_comm* comm, DeviceSlot& device, nm_fence* fence)
      : Napi::AsyncWorker(env, "newton-muon:comm-destroy"),
        deferred_(Napi::Promise::Deferred::New(env)), ops_(ops), comm_(comm), device_(device), fence_(fence) {}
  ~DestroyWorker() override { device_.ops->fence_destroy(device_.backend, fence_); }
  Napi::Promise promise() const { return deferred_.Promise(); }
  void Execute() override {
    const bool drained = device_.ops->fence_wait(device_.backend, fence_) == NM_OK;
    ops_->destroy(comm_);
    if (!drained) SetError(device_.name + " backend error in " + device_.ops->last_error());
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  const nm_comm_ops* ops_;
  nm_comm* comm_;
  DeviceSlot& device_;
  nm_fence* fence_;
};

// commDestroy(comm) -> Promise<void>; the handle is unusable at once.
Napi::Value CommDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  CommHandle& c = comm_arg(info, 0, "destroy");
  nm_fence* fence = nullptr;
  check_status(env, *c.device, c.device->ops->fence_create(c.device->backend, &fence));
  c.destroyed = true;
  auto* worker = new DestroyWorker(env, c.ops, c.comm, *c.device, fence);
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

// glooOpenFailureReason(path, dlerrorText) -> the message devices-style reporting would give
Napi::Value GlooOpenFailureReason(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), gloo_open_failure_reason(info[0].ToString().Utf8Value(), info[1].ToString().Utf8Value()));
}

}  // namespace

void register_comm_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("commEngines", Napi::Function::New(env, CommEngines, "commEngines"));
  exports.Set("commUniqueId", Napi::Function::New(env, CommUniqueId, "commUniqueId"));
  exports.Set("commCreate", Napi::Function::New(env, CommCreate, "commCreate"));
  exports.Set("commAllReduce", Napi::Function::New(env, CommAllReduce, "commAllReduce"));
  exports.Set("commReduceScatter", Napi::Function::New(env, CommReduceScatter, "commReduceScatter"));
  exports.Set("commAllGather", Napi::Function::New(env, CommAllGather, "commAllGather"));
  exports.Set("commBroadcast", Napi::Function::New(env, CommBroadcast, "commBroadcast"));
  exports.Set("commBarrier", Napi::Function::New(env, CommBarrier, "commBarrier"));
  exports.Set("commStatus", Napi::Function::New(env, CommStatus, "commStatus"));
  exports.Set("commAbort", Napi::Function::New(env, CommAbort, "commAbort"));
  exports.Set("commDestroy", Napi::Function::New(env, CommDestroy, "commDestroy"));
  exports.Set("glooOpenFailureReason", Napi::Function::New(env, GlooOpenFailureReason, "glooOpenFailureReason"));
}

}  // namespace nm::napi
