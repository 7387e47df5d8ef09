#include "device_registry.h"

#include <dlfcn.h>

#include <cstdlib>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include "../cpu/cpu_backend.h"
#include "cuda_libraries.h"
#include "module_files.h"

namespace nm::napi {
namespace {

std::mutex registry_mutex;
// Never destroyed (released at process exit): a backend's destructor would drain its stream, so a
// process exiting with work still queued (an error path, a collective blocked until its timeout)
// would wait for all of it.
DeviceSlot* cpu_slot = nullptr;
DeviceSlot* cuda_slot = nullptr;
std::string loaded_module_path;

// The backend's JSON description; when describe() fails, its error (so details say why instead
// of silently missing).
void describe_into(DeviceSlot& slot) {
  char buf[1024] = {0};
  if (slot.ops->describe(slot.backend, buf, sizeof buf) == NM_OK) {
    slot.description_json = buf;
    return;
  }
  std::string escaped;
  for (const char* p = slot.ops->last_error(); *p != '\0'; p++) {
    if (*p == '"' || *p == '\\') escaped += '\\';
    if ((unsigned char)*p >= 0x20) escaped += *p;
  }
  slot.description_json = "{\"describeError\":\"" + escaped + "\"}";
}

// The host-emulated module (build-cuda-emu/newton_muon_cuda_emu.so, docs/GPU.md) says so through
// an extra export; its JSON members ("emulated":true, ...) join the device's details, so every
// result obtained with it is marked as an emulation, never mistaken for a GPU run.
void add_emulation_info(DeviceSlot& slot, void* handle) {
  using info_fn = const char* (*)();
  auto info = reinterpret_cast<info_fn>(::dlsym(handle, "nm_cuda_emulation_info"));
  if (info == nullptr) return;
  const std::string members = info();
  if (slot.description_json.size() >= 2 && slot.description_json.back() == '}') {
    slot.description_json.pop_back();
    slot.description_json += "," + members + "}";
  } else {
    slot.description_json = "{" + members + "}";
  }
}

// The reason for a module that exists but could not be dlopen()ed. A missing library gets the
// whole story: what the module needs, where it was looked for, and how to provide it.
std::string open_failure_reason(const std::string& path, const ModuleOpenResult& opened) {
  std::string reason = "could not load the CUDA module " + path + ": " + opened.error;
  if (opened.missing_library.empty()) {
    if (opened.error.find("ELF") != std::string::npos ||
        opened.error.find("file too short") != std::string::npos) {
      reason += " (not a shared library for this machine; rebuild it with `npm run build:cuda` "
                "or unset NM_CUDA_MODULE)";
    }
    return reason;
  }
  const char* user_dirs = std::getenv("NM_CUDA_LIBRARY_PATH");
  reason += ". It links the CUDA 13 libraries (cudart, cuBLAS, cuBLASLt, cuSOLVER, NCCL) and needs "
            "an NVIDIA driver R580 or newer; " + opened.missing_library +
            " is not on LD_LIBRARY_PATH or the system library path, nor in NM_CUDA_LIBRARY_PATH (" +
            (user_dirs && user_dirs[0] ? std::string("'") + user_dirs + "'" : std::string("unset")) +
            ") or the folders of NVIDIA's pip wheels and CUDA toolkits searched (" +
            (opened.search_dirs.empty() ? std::string("none exist here")
                                        : join(opened.search_dirs, ", ")) +
            "). Install them with `pip install nvidia-cuda-runtime nvidia-cublas nvidia-cusolver "
            "nvidia-nccl-cu13` (or a PyTorch built for CUDA 13, or a CUDA 13 toolkit), or set "
            "NM_CUDA_LIBRARY_PATH to the folder that holds " + opened.missing_library;
  return reason;
}

// dlopen (with the CUDA library search of cuda_libraries.h) + entry symbol + create(0). Any
// failure leaves slot.backend null with the reason.
void load_cuda_module(DeviceSlot& slot, const std::vector<std::string>& candidates, int device_index) {
  const std::string path = first_existing_file(candidates);
  if (path.empty()) {
    slot.unavailable_reason =
        "the CUDA module newton_muon_cuda.so was not found (looked in: " + join(candidates, ", ") +
        "); build it with `npm run build:cuda`, install a package with prebuilt binaries, or "
        "point NM_CUDA_MODULE at one";
    return;
  }
  // RTLD_LOCAL: the module's CUDA symbols stay private to it.
  ModuleOpenResult opened = open_cuda_module(path);
  void* handle = opened.handle;
  if (handle == nullptr) {
    slot.unavailable_reason = open_failure_reason(path, opened);
    return;
  }
  ::dlerror();
  auto entry = reinterpret_cast<nm_backend_entry_fn>(::dlsym(handle, NM_CUDA_ENTRY_SYMBOL));
  if (entry == nullptr) {
    const char* why = ::dlerror();
    slot.unavailable_reason = "the CUDA module " + path + " has no entry point " +
                              NM_CUDA_ENTRY_SYMBOL + " (" + (why ? why : "symbol missing") +
                              "); it is not a newton_muon_cuda.so built from this package";
    ::dlclose(handle);
    return;
  }
  char err[1024] = {0};
  const nm_backend_ops* ops = entry(NM_BACKEND_ABI_VERSION, err, sizeof err);
  if (ops == nullptr || ops->abi_version != NM_BACKEND_ABI_VERSION) {
    // The module's own message when it gave one (it says what to do), else ours.
    std::string why = err[0] ? err : "";
    if (why.empty()) {
      why = (ops == nullptr ? std::string("its entry point returned no op table")
                            : "it implements backend ABI version " +
                                  std::to_string(ops->abi_version) + " but this addon expects " +
                                  std::to_string(NM_BACKEND_ABI_VERSION)) +
            "; rebuild it (`npm run build:cuda`) from the same source as the addon";
    }
    slot.unavailable_reason = "the CUDA module " + path + " is incompatible with this addon: " + why;
    ::dlclose(handle);
    return;
  }
  slot.module_handle = handle;
  nm_backend* backend = ops->create(device_index, err, sizeof err);
  if (backend == nullptr) {
    // Keep the module loaded: its reason string may point into it, and it is cheap.
    slot.unavailable_reason = std::string("CUDA is not usable: ") +
                              (err[0] ? err : "unknown error") + " [module " + path + "]";
    return;
  }
  slot.ops = ops;
  slot.backend = backend;
  loaded_module_path = path;
  describe_into(slot);
  add_emulation_info(slot, handle);
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
    cpu_slot = slot.release();
  }
  return *cpu_slot;
}

DeviceSlot& cuda_device(const std::vector<std::string>& module_candidates, int device_index) {
  std::lock_guard<std::mutex> lock(registry_mutex);
  if (!cuda_slot) {
    auto slot = std::make_unique<DeviceSlot>();
    slot->name = "cuda";
    load_cuda_module(*slot, module_candidates, device_index);
    cuda_slot = slot.release();
  }
  return *cuda_slot;
}

DeviceSlot* cuda_device_if_loaded() {
  std::lock_guard<std::mutex> lock(registry_mutex);
  return cuda_slot;
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
