#include "device_registry.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <memory>
#include <mutex>
#include <stdexcept>

#include "../cpu/cpu_backend.h"

namespace nm::napi {
namespace {

std::mutex registry_mutex;
std::unique_ptr<DeviceSlot> cpu_slot;
std::unique_ptr<DeviceSlot> cuda_slot;
std::string loaded_module_path;

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

void describe_into(DeviceSlot& slot) {
  char buf[1024] = {0};
  if (slot.ops->describe(slot.backend, buf, sizeof buf) == NM_OK) slot.description_json = buf;
}

// dlopen + entry symbol + create(0). Any failure leaves slot.backend null with the reason.
void load_cuda_module(DeviceSlot& slot, const std::vector<std::string>& candidates) {
  std::string path;
  for (const auto& candidate : candidates) {
    if (file_exists(candidate)) {
      path = candidate;
      break;
    }
  }
  if (path.empty()) {
    std::string looked;
    for (const auto& c : candidates) looked += (looked.empty() ? "" : ", ") + c;
    slot.unavailable_reason =
        "the CUDA module newton_muon_cuda.so was not found (looked in: " + looked +
        "); build it with `npm run build:cuda` or install a package with prebuilt binaries";
    return;
  }
  // RTLD_LOCAL: the module's CUDA symbols stay private to it.
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    slot.unavailable_reason = "could not load the CUDA module " + path + ": " +
                              (why ? why : "unknown dlopen error");
    return;
  }
  ::dlerror();
  auto entry = reinterpret_cast<nm_backend_entry_fn>(::dlsym(handle, NM_CUDA_ENTRY_SYMBOL));
  if (entry == nullptr) {
    const char* why = ::dlerror();
    slot.unavailable_reason = "the CUDA module " + path + " has no entry point " +
                              NM_CUDA_ENTRY_SYMBOL + ": " + (why ? why : "symbol missing");
    ::dlclose(handle);
    return;
  }
  char err[1024] = {0};
  const nm_backend_ops* ops = entry(NM_BACKEND_ABI_VERSION, err, sizeof err);
  if (ops == nullptr || ops->abi_version != NM_BACKEND_ABI_VERSION) {
    slot.unavailable_reason = "the CUDA module " + path + " is incompatible with this addon: " +
                              (err[0] ? err : "ABI version mismatch");
    ::dlclose(handle);
    return;
  }
  nm_backend* backend = ops->create(0, err, sizeof err);
  if (backend == nullptr) {
    // Keep the module loaded: its reason string may point into it, and it is cheap.
    slot.unavailable_reason = std::string("CUDA is not usable: ") + (err[0] ? err : "unknown");
    return;
  }
  slot.ops = ops;
  slot.backend = backend;
  loaded_module_path = path;
  describe_into(slot);
}

}  // namespace

DeviceSlot& cpu_device() {
  std::lock_guard<std::mutex> lock(registry_mutex);
  if (!cpu_slot) {
    auto slot = std::make_unique<DeviceSlot>();
    slot->name = "cpu";
    slot->ops = nm_cpu_backend_ops();
    char err[256] = {0};
    slot->backend = slot->ops->create(0, err, sizeof err);
    if (slot->backend == nullptr) throw std::runtime_error(std::string("cpu backend: ") + err);
    describe_into(*slot);
    cpu_slot = std::move(slot);
  }
  return *cpu_slot;
}

DeviceSlot& cuda_device(const std::vector<std::string>& module_candidates) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  if (!cuda_slot) {
    auto slot = std::make_unique<DeviceSlot>();
    slot->name = "cuda";
    load_cuda_module(*slot, module_candidates);
    cuda_slot = std::move(slot);
  }
  return *cuda_slot;
}

DeviceSlot* cuda_device_if_loaded() {
  std::lock_guard<std::mutex> lock(registry_mutex);
  return cuda_slot.get();
}

DeviceSlot& device_by_name(const std::string& name) {
  if (name == "cpu") return cpu_device();
  if (name == "cuda") {
    DeviceSlot* slot = cuda_device_if_loaded();
    if (slot == nullptr) {
      throw std::runtime_error("device 'cuda' was used before the CUDA module was loaded");
    }
    if (slot->backend == nullptr) {
      throw std::runtime_error("device 'cuda' is unavailable: " + slot->unavailable_reason);
    }
    return *slot;
  }
  throw std::runtime_error("unknown device '" + name + "' (expected 'cpu' or 'cuda')");
}

const std::string& cuda_module_path() { return loaded_module_path; }

}  // namespace nm::napi
