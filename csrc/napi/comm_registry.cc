#include "comm_registry.h"

#include <dlfcn.h>

#include <memory>
#include <mutex>

#include "cuda_libraries.h"
#include "device_registry.h"
#include "module_files.h"

namespace nm::napi {
namespace {

std::mutex engines_mutex;
std::unique_ptr<CommEngine> gloo;
std::unique_ptr<CommEngine> nccl;

// Entry symbol -> table, checking the ABI; on failure the engine keeps the reason.
void bind_table(CommEngine& engine, void* handle, const char* symbol, const std::string& what) {
  ::dlerror();
  auto entry = reinterpret_cast<nm_comm_entry_fn>(::dlsym(handle, symbol));
  if (entry == nullptr) {
    engine.unavailable_reason = what + " has no entry point " + symbol +
                                "; it was built from another version of this package: rebuild it";
    return;
  }
  char err[1024] = {0};
  const nm_comm_ops* ops = entry(NM_COMM_ABI_VERSION, err, sizeof err);
  if (ops == nullptr || ops->abi_version != NM_COMM_ABI_VERSION) {
    engine.unavailable_reason = what + " is incompatible with this addon: " +
                                (err[0] ? std::string(err) : std::string("collectives ABI mismatch"));
    return;
  }
  char buf[512] = {0};
  if (ops->describe(buf, sizeof buf) == NM_OK) engine.description_json = buf;
  engine.ops = ops;
}

void load_gloo(CommEngine& engine, const std::vector<std::string>& candidates) {
  const std::string path = first_existing_file(candidates);
  if (path.empty()) {
    engine.unavailable_reason =
        "the Gloo module newton_muon_gloo.so was not found (looked in: " + join(candidates, ", ") +
        "); build it with `npm run build:gloo` (needs Gloo's headers: apt-get install libgloo-dev), "
        "install a package with prebuilt binaries, or point NM_GLOO_MODULE at one";
    return;
  }
  ::dlerror();
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = ::dlerror();
    engine.unavailable_reason = gloo_open_failure_reason(path, why ? why : "unknown dlopen error");
    return;
  }
  engine.module_path = path;
  bind_table(engine, handle, NM_GLOO_COMM_ENTRY_SYMBOL, "the Gloo module " + path);
}

}  // namespace

std::string gloo_open_failure_reason(const std::string& path, const std::string& dlerror_text) {
  std::string missing = missing_library_in(dlerror_text);
  const size_t slash = missing.rfind('/');
  if (slash != std::string::npos) missing = missing.substr(slash + 1);
  if (missing.rfind("libgloo.so", 0) == 0) {
    return missing + " not found: apt-get install libgloo0 (Gloo's runtime library, which the Gloo "
           "module " + path + " links)";
  }
  if (!missing.empty()) {
    return missing + " not found: the Gloo module " + path + " needs it through libgloo0; "
           "apt-get install libgloo0 installs Gloo with its dependencies";
  }
  std::string reason = "could not load the Gloo module " + path + ": " + dlerror_text;
  if (dlerror_text.find("undefined symbol") != std::string::npos) {
    reason += " (the installed libgloo0 is not the version the module was built against; rebuild "
              "it with `npm run build:gloo`)";
  }
  return reason;
}

const CommEngine& gloo_engine(const std::vector<std::string>& module_candidates) {
  std::lock_guard<std::mutex> lock(engines_mutex);
  if (!gloo) {
    auto engine = std::make_unique<CommEngine>();
    engine->name = "gloo";
    load_gloo(*engine, module_candidates);
    gloo = std::move(engine);
  }
  return *gloo;
}

const CommEngine& nccl_engine() {
  DeviceSlot* cuda = cuda_device_if_loaded();
  std::lock_guard<std::mutex> lock(engines_mutex);
  if (nccl) return *nccl;
  auto engine = std::make_unique<CommEngine>();
  engine->name = "nccl";
  if (cuda == nullptr) {
    // Not cached: the CUDA module may still be loaded later in this process.
    static CommEngine not_loaded{"nccl", nullptr, "the CUDA module was not loaded yet (use device 'cuda' first)", "", ""};
    return not_loaded;
  }
  if (cuda->backend == nullptr || cuda->module_handle == nullptr) {
    engine->unavailable_reason = "NCCL runs on CUDA tensors and CUDA is unavailable: " + cuda->unavailable_reason;
  } else {
    engine->module_path = cuda_module_path();
    bind_table(*engine, cuda->module_handle, NM_NCCL_COMM_ENTRY_SYMBOL, "the CUDA module " + engine->module_path);
  }
  nccl = std::move(engine);
  return *nccl;
}

const CommEngine* comm_engine_if_loaded(const std::string& name) {
  std::lock_guard<std::mutex> lock(engines_mutex);
  if (name == "gloo") return gloo.get();
  if (name == "nccl") return nccl.get();
  return nullptr;
}

}  // namespace nm::napi
