// devices(), loadCuda() and memoryStats(): what the JS layer needs to pick and account devices.
#include "device_bindings.h"

#include <string>
#include <vector>

#include "device_registry.h"

namespace nm::napi {
namespace {

Napi::Object slot_info(Napi::Env env, const DeviceSlot& slot) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("name", slot.name);
  o.Set("available", slot.backend != nullptr);
  if (slot.backend == nullptr) o.Set("reason", slot.unavailable_reason);
  if (!slot.description_json.empty()) o.Set("describe", slot.description_json);
  return o;
}

// loadCuda(candidatePaths: string[], deviceIndex = 0) -> {name, available, reason?, describe?,
// modulePath?}. Loads at most once per process; later calls return the first outcome.
Napi::Value LoadCuda(const Napi::CallbackInfo& info) {
  std::vector<std::string> candidates;
  if (info[0].IsArray()) {
    Napi::Array arr = info[0].As<Napi::Array>();
    for (uint32_t i = 0; i < arr.Length(); ++i) candidates.push_back(arr.Get(i).ToString().Utf8Value());
  }
  int device_index = 0;
  if (info.Length() > 1 && info[1].IsNumber()) device_index = info[1].As<Napi::Number>().Int32Value();
  const DeviceSlot& slot = cuda_device(candidates, device_index);
  Napi::Object o = slot_info(info.Env(), slot);
  if (!cuda_module_path().empty()) o.Set("modulePath", cuda_module_path());
  return o;
}

Napi::Value CpuInfo(const Napi::CallbackInfo& info) { return slot_info(info.Env(), cpu_device()); }

Napi::Value MemoryStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  auto add = [&](const DeviceSlot& slot) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("bytes", static_cast<double>(slot.live_bytes.load()));
    o.Set("peakBytes", static_cast<double>(slot.peak_bytes.load()));
    o.Set("buffers", static_cast<double>(slot.live_buffers.load()));
    out.Set(slot.name, o);
  };
  add(cpu_device());
  if (const DeviceSlot* cuda = cuda_device_if_loaded(); cuda != nullptr && cuda->backend != nullptr) add(*cuda);
  return out;
}

// resetPeakMemory(): every device's peak becomes its current live bytes.
Napi::Value ResetPeakMemory(const Napi::CallbackInfo& info) {
  DeviceSlot& cpu = cpu_device();
  cpu.peak_bytes = cpu.live_bytes.load();
  if (DeviceSlot* cuda = cuda_device_if_loaded(); cuda != nullptr) cuda->peak_bytes = cuda->live_bytes.load();
  return info.Env().Undefined();
}

}  // namespace

void register_device_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("loadCuda", Napi::Function::New(env, LoadCuda, "loadCuda"));
  exports.Set("cpuInfo", Napi::Function::New(env, CpuInfo, "cpuInfo"));
  exports.Set("memoryStats", Napi::Function::New(env, MemoryStats, "memoryStats"));
  exports.Set("resetPeakMemory", Napi::Function::New(env, ResetPeakMemory, "resetPeakMemory"));
  exports.Set("abiVersion", Napi::Number::New(env, NM_BACKEND_ABI_VERSION));
}

}  // namespace nm::napi
