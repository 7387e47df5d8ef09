// The collectives engines the addon knows (csrc/core/comm.h): 'gloo' from newton_muon_gloo.so
// (loaded on first use, like the CUDA module) and 'nccl' from the CUDA module. Each engine is
// loaded once per process and keeps the exact reason when it cannot be used.
#ifndef NM_NAPI_COMM_REGISTRY_H
#define NM_NAPI_COMM_REGISTRY_H

#include <string>
#include <vector>

#include "../core/comm.h"

namespace nm::napi {

struct CommEngine {
  std::string name;                  // "gloo" or "nccl"
  const nm_comm_ops* ops = nullptr;  // null when unavailable
  std::string unavailable_reason;
  std::string description_json;      // from ops->describe
  std::string module_path;
};

// Loads newton_muon_gloo.so from the first candidate path that exists (once per process).
const CommEngine& gloo_engine(const std::vector<std::string>& module_candidates);

// NCCL's table from the CUDA module; available only when the CUDA device is.
const CommEngine& nccl_engine();

// The engine by name once it was looked up (gloo_engine / nccl_engine), else null.
const CommEngine* comm_engine_if_loaded(const std::string& name);

// What a module that exists but cannot be dlopen()ed lacks, said so that the user can act:
// "libgloo.so.0 not found: apt-get install libgloo0 ..." (exposed for the tests' sake).
std::string gloo_open_failure_reason(const std::string& path, const std::string& dlerror_text);

}  // namespace nm::napi

#endif  // NM_NAPI_COMM_REGISTRY_H
