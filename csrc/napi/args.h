// Argument readers for the bindings: each names the op and argument in its error.
// The TypeScript layer validates user input first; these checks keep a wrong call from the
// TS layer from ever reaching a kernel with garbage.
#ifndef NM_NAPI_ARGS_H
#define NM_NAPI_ARGS_H

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "../core/backend.h"
#include "buffer_handle.h"
#include "device_registry.h"

namespace nm::napi {

inline int64_t int_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(op) + ": " + name + " must be a number");
  }
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!std::isfinite(d) || std::floor(d) != d || std::fabs(d) > 9007199254740991.0) {
    throw Napi::TypeError::New(info.Env(), std::string(op) + ": " + name + " must be an integer, got " +
                                               std::to_string(d));
  }
  return static_cast<int64_t>(d);
}

inline double number_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  const Napi::Value v = info[i];
  if (!v.IsNumber()) {
    throw Napi::TypeError::New(info.Env(), std::string(op) + ": " + name + " must be a number");
  }
  return v.As<Napi::Number>().DoubleValue();
}

inline nm_dtype dtype_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  const int64_t code = int_arg(info, i, op, "dtype");
  if (code < 0 || code > NM_U16) {
    throw Napi::TypeError::New(info.Env(), std::string(op) + ": unknown dtype code " + std::to_string(code));
  }
  return static_cast<nm_dtype>(code);
}

inline DeviceSlot& device_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  if (!info[i].IsString()) {
    throw Napi::TypeError::New(info.Env(), std::string(op) + ": device must be a string");
  }
  try {
    return device_by_name(info[i].As<Napi::String>().Utf8Value());
  } catch (const std::exception& e) {
    throw Napi::Error::New(info.Env(), std::string(op) + ": " + e.what());
  }
}

// Turns a backend status into a JS exception carrying the backend's message.
inline void check_status(Napi::Env env, const DeviceSlot& device, nm_status status) {
  if (status != NM_OK) {
    throw Napi::Error::New(env, device.name + " backend error in " + device.ops->last_error());
  }
}

// One operand: the buffer handle and the address of its bounds-checked byte range.
struct Operand {
  BufferHandle* buffer;
  void* ptr;
};

// Arguments i and i+1 are (buffer, byteOffset); the operand spans `bytes` bytes from there.
inline Operand operand_arg(const Napi::CallbackInfo& info, size_t i, int64_t bytes, const std::string& what) {
  BufferHandle& b = buffer_arg(info[i], what.c_str());
  return {&b, buffer_range(b, int_arg(info, i + 1, what.c_str(), "byteOffset"), bytes, what.c_str())};
}

// The device all operands share; a mix is a caller error caught here as a last resort.
inline DeviceSlot& common_device(Napi::Env env, const char* op, std::initializer_list<Operand> operands) {
  DeviceSlot* device = operands.begin()->buffer->device;
  for (const Operand& o : operands) {
    if (o.buffer->device != device) {
      throw Napi::Error::New(env, std::string(op) + ": operands are on different devices (" + device->name +
                                      " and " + o.buffer->device->name + ")");
    }
  }
  return *device;
}

}  // namespace nm::napi

#endif  // NM_NAPI_ARGS_H
