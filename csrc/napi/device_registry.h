// Devices the addon knows: the CPU backend (always) and the CUDA backend (loaded on first use
// from newton_muon_cuda.so). Each device is a slot holding its op table, its backend context and
// its live-byte counter. Slots are created lazily and live for the whole process.
#ifndef NM_NAPI_DEVICE_REGISTRY_H
#define NM_NAPI_DEVICE_REGISTRY_H

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/backend.h"

namespace nm::napi {

struct DeviceSlot {
  std::string name;                 // "cpu" or "cuda"
  const nm_backend_ops* ops = nullptr;
  nm_backend* backend = nullptr;    // null when unavailable
  std::string unavailable_reason;   // why backend is null
  std::string description_json;     // from ops->describe
  void* module_handle = nullptr;    // the dlopen handle of the CUDA module (NCCL's table is there)
  std::atomic<int64_t> live_bytes{0};
  std::atomic<int64_t> peak_bytes{0};  // high-water mark of live_bytes since the last reset
  std::atomic<int64_t> live_buffers{0};
};

// The CPU slot (always available).
DeviceSlot& cpu_device();

// Tries the candidate module paths in order (first one that exists is loaded) unless the CUDA
// module was already loaded or failed, and creates the backend for GPU `device_index` (one GPU
// per process: a data-parallel rank takes the GPU of its local rank). Returns the CUDA slot,
// available or not, with a reason.
DeviceSlot& cuda_device(const std::vector<std::string>& module_candidates, int device_index = 0);

// The CUDA slot if a load was already attempted, else null.
DeviceSlot* cuda_device_if_loaded();

// "cpu" or "cuda" -> slot; throws std::runtime_error naming the device when unavailable.
DeviceSlot& device_by_name(const std::string& name);

// Path of the CUDA module that was loaded (empty if none).
const std::string& cuda_module_path();

}  // namespace nm::napi

#endif  // NM_NAPI_DEVICE_REGISTRY_H
