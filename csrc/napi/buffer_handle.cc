#include "buffer_handle.h"

#include <string>

namespace nm::napi {
namespace {

// Tags the External so buffer_arg can tell our handles from any other External.
const napi_type_tag kBufferTag = {0x6e6d5f6275666665ULL, 0x725f68616e646c65ULL};

void finalize_buffer(Napi::Env, BufferHandle* buffer) {
  release_buffer(*buffer);
  delete buffer;
}

}  // namespace

Napi::Value make_buffer(Napi::Env env, DeviceSlot& device, int64_t bytes) {
  if (bytes < 0) throw Napi::RangeError::New(env, "alloc: bytes must be >= 0, got " + std::to_string(bytes));
  void* ptr = nullptr;
  if (device.ops->alloc(device.backend, static_cast<size_t>(bytes), &ptr) != NM_OK) {
    throw Napi::Error::New(env, std::string(device.name) + " " + device.ops->last_error());
  }
  auto* buffer = new BufferHandle{&device, ptr, bytes, false};
  const int64_t now = device.live_bytes += bytes;
  int64_t peak = device.peak_bytes.load();
  while (now > peak && !device.peak_bytes.compare_exchange_weak(peak, now)) {
  }
  device.live_buffers += 1;
  auto external = Napi::External<BufferHandle>::New(env, buffer, finalize_buffer);
  external.TypeTag(&kBufferTag);
  return external;
}

void release_buffer(BufferHandle& buffer) {
  if (buffer.freed) return;
  buffer.freed = true;
  buffer.device->ops->free(buffer.device->backend, buffer.ptr);
  buffer.device->live_bytes -= buffer.bytes;
  buffer.device->live_buffers -= 1;
  buffer.ptr = nullptr;
}

BufferHandle& buffer_arg(const Napi::Value& value, const char* what) {
  Napi::Env env = value.Env();
  if (!value.IsExternal() || !value.As<Napi::Object>().CheckTypeTag(&kBufferTag)) {
    throw Napi::TypeError::New(env, std::string(what) + ": expected a device buffer handle");
  }
  BufferHandle* buffer = value.As<Napi::External<BufferHandle>>().Data();
  if (buffer->freed) {
    throw Napi::Error::New(env, std::string(what) + ": the buffer was already disposed");
  }
  return *buffer;
}

void* buffer_range(BufferHandle& buffer, int64_t offset, int64_t bytes, const char* what) {
  if (offset < 0 || bytes < 0 || offset + bytes > buffer.bytes) {
    throw std::out_of_range(std::string(what) + ": byte range [" + std::to_string(offset) + ", " +
                            std::to_string(offset + bytes) + ") is outside the buffer of " +
                            std::to_string(buffer.bytes) + " bytes");
  }
  return static_cast<char*>(buffer.ptr) + offset;
}

}  // namespace nm::napi
