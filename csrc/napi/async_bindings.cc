// The only waiting the addon does: reading a buffer back (download) and synchronize(). The
// copy and the fence are enqueued on the main thread, so they keep their place in the stream;
// only the wait runs on a libuv worker thread, so Node's event loop is never blocked.
// downloadSync is the one exception, for interop code that cannot await (Tensor.readSync()):
// the same stream-ordered copy and fence, waited for on the main thread.
#include "async_bindings.h"

#include <cstring>
#include <string>

#include "args.h"
#include "buffer_handle.h"

namespace nm::napi {
namespace {

class FenceWaiter : public Napi::AsyncWorker {
 public:
  // Takes ownership of fence and of host_staging (may be null: a plain synchronize).
  FenceWaiter(Napi::Env env, DeviceSlot& device, nm_fence* fence, void* host_staging, int64_t bytes)
      : Napi::AsyncWorker(env, "newton-muon:wait"),
        deferred_(Napi::Promise::Deferred::New(env)),
        device_(device),
        fence_(fence),
        staging_(host_staging),
        bytes_(bytes) {}

  ~FenceWaiter() override {
    if (fence_ != nullptr) device_.ops->fence_destroy(device_.backend, fence_);
    if (staging_ != nullptr) device_.ops->host_free(device_.backend, staging_);
  }

  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    if (device_.ops->fence_wait(device_.backend, fence_) != NM_OK) {
      SetError(device_.name + " backend error in " + device_.ops->last_error());
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (staging_ == nullptr) {
      deferred_.Resolve(env.Undefined());
      return;
    }
    auto out = Napi::ArrayBuffer::New(env, static_cast<size_t>(bytes_));
    if (bytes_ > 0) std::memcpy(out.Data(), staging_, static_cast<size_t>(bytes_));
    deferred_.Resolve(out);
  }

  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  DeviceSlot& device_;
  nm_fence* fence_;
  void* staging_;
  int64_t bytes_;
};

nm_fence* record_fence(Napi::Env env, DeviceSlot& device) {
  nm_fence* fence = nullptr;
  check_status(env, device, device.ops->fence_create(device.backend, &fence));
  return fence;
}

// A device->host copy enqueued on the device's stream, then a fence behind it: once the fence
// has been waited for, staging holds the bytes. Owns staging and fence until handed on.
struct PendingDownload {
  DeviceSlot* device;
  void* staging;
  nm_fence* fence;
  int64_t bytes;
};

// Reads (buffer, byteOffset, bytes) from info and enqueues the copy and its fence.
PendingDownload enqueue_download(const Napi::CallbackInfo& info, const char* op) {
  Napi::Env env = info.Env();
  BufferHandle& src = buffer_arg(info[0], op);
  const int64_t bytes = int_arg(info, 2, op, "bytes");
  void* s = buffer_range(src, int_arg(info, 1, op, "byteOffset"), bytes, op);
  DeviceSlot& device = *src.device;
  void* staging = nullptr;
  check_status(env, device, device.ops->host_alloc(device.backend, static_cast<size_t>(bytes), &staging));
  nm_status status = device.ops->download(device.backend, staging, s, static_cast<size_t>(bytes));
  if (status != NM_OK) {
    device.ops->host_free(device.backend, staging);
    check_status(env, device, status);
  }
  nm_fence* fence = nullptr;
  status = device.ops->fence_create(device.backend, &fence);
  if (status != NM_OK) {
    // The copy is enqueued and may still be in flight, and without a fence nothing can say when
    // it is done: freeing staging now could let the device write into freed memory. Keep it
    // (a leak of one read's size, on a path where the backend has already failed).
    check_status(env, device, status);
  }
  return {&device, staging, fence, bytes};
}

// download(buffer, byteOffset, bytes) -> Promise<ArrayBuffer>
Napi::Value Download(const Napi::CallbackInfo& info) {
  const PendingDownload d = enqueue_download(info, "download");
  auto* waiter = new FenceWaiter(info.Env(), *d.device, d.fence, d.staging, d.bytes);
  Napi::Promise promise = waiter->promise();
  waiter->Queue();
  return promise;
}

// downloadSync(buffer, byteOffset, bytes) -> ArrayBuffer. Blocks the calling (main) thread until
// every op enqueued before it has run on the buffer's device.
Napi::Value DownloadSync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const PendingDownload d = enqueue_download(info, "downloadSync");
  DeviceSlot& device = *d.device;
  const nm_status status = device.ops->fence_wait(device.backend, d.fence);
  device.ops->fence_destroy(device.backend, d.fence);
  // The copy has run (or the device failed): staging is released on every path from here.
  struct StagingRelease {
    DeviceSlot& device;
    void* staging;
    ~StagingRelease() { device.ops->host_free(device.backend, staging); }
  } release{device, d.staging};
  check_status(env, device, status);
  auto out = Napi::ArrayBuffer::New(env, static_cast<size_t>(d.bytes));
  if (d.bytes > 0) std::memcpy(out.Data(), d.staging, static_cast<size_t>(d.bytes));
  return out;
}

// synchronize(device) -> Promise<void>
Napi::Value Synchronize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  DeviceSlot& device = device_arg(info, 0, "synchronize");
  auto* waiter = new FenceWaiter(env, device, record_fence(env, device), nullptr, 0);
  Napi::Promise promise = waiter->promise();
  waiter->Queue();
  return promise;
}

}  // namespace

void register_async_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("download", Napi::Function::New(env, Download, "download"));
  exports.Set("downloadSync", Napi::Function::New(env, DownloadSync, "downloadSync"));
  exports.Set("synchronize", Napi::Function::New(env, Synchronize, "synchronize"));
}

}  // namespace nm::napi
