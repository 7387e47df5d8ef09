// A device allocation as JS sees it: an External wrapping BufferHandle. JS frees it explicitly
// (Tensor.dispose -> free); the External's finalizer frees it only if JS forgot (safety net).
#ifndef NM_NAPI_BUFFER_HANDLE_H
#define NM_NAPI_BUFFER_HANDLE_H

#include <napi.h>

#include <cstdint>
#include <string>

#include "device_registry.h"

namespace nm::napi {

struct BufferHandle {
  DeviceSlot* device = nullptr;
  void* ptr = nullptr;
  int64_t bytes = 0;
  bool freed = false;
};

Napi::Value make_buffer(Napi::Env env, DeviceSlot& device, int64_t bytes);
// Releases the memory (stream-ordered) and updates the device's counters; idempotent.
void release_buffer(BufferHandle& buffer);

// The handle in value, or a TypeError naming `what` (e.g. "gemm: a") when it is not one or
// was already freed.
BufferHandle& buffer_arg(const Napi::Value& value, const char* what);

// A byte range [offset, offset + bytes) inside a buffer, bounds-checked; returns its address.
void* buffer_range(BufferHandle& buffer, int64_t offset, int64_t bytes, const char* what);

}  // namespace nm::napi

#endif  // NM_NAPI_BUFFER_HANDLE_H
