// Kernel launches of the emulated module (see kernel_enqueue.h): configuration checks that
// <<<>>> would report through cudaGetLastError, then the grid goes to the stream; the stream's
// worker runs it on the launcher (../launcher/) and turns a failed launch into the context's
// sticky error, as a fault in a kernel does on a GPU.
#include <string.h>

#include <map>
#include <memory>
#include <mutex>

#include "memory_map.h"
#include "runtime.h"
#include "stream.h"

namespace nm_emu {
namespace {

constexpr size_t kDefaultDynamicSmem = 48 * 1024;   // without cudaFuncSetAttribute
constexpr size_t kMaxDynamicSmemOptin = 227 * 1024;  // sm_90's opt-in limit

struct FuncAttributes {
  std::mutex mu;
  std::map<const void*, size_t> max_dynamic_smem;
};

FuncAttributes& func_attributes() {
  static FuncAttributes* a = new FuncAttributes();
  return *a;
}

// "const char* nm_emu::kernel_pretty_function() [with auto Kernel = nm_cuda::{anonymous}::f<int>]"
// -> "f<int>" (namespaces of the module and anonymous ones dropped, others such as flash_f32:: kept).
std::string short_kernel_name(const char* pretty) {
  std::string s = pretty;
  const size_t at = s.find("Kernel = ");
  if (at != std::string::npos) s = s.substr(at + 9);
  if (!s.empty() && s.back() == ']') s.pop_back();
  if (!s.empty() && s[0] == '&') s = s.substr(1);
  for (const char* drop : {"nm_cuda::", "{anonymous}::", "(anonymous namespace)::"}) {
    for (size_t p; (p = s.find(drop)) != std::string::npos;) s.erase(p, strlen(drop));
  }
  return s;
}

cudaError_t error_of(LaunchOutcome::Kind kind) {
  switch (kind) {
    case LaunchOutcome::kFault: return cudaErrorIllegalAddress;
    case LaunchOutcome::kStackOverflow: return cudaErrorLaunchFailure;
    case LaunchOutcome::kDeadlock: return cudaErrorLaunchFailure;
    case LaunchOutcome::kDeviceError: return cudaErrorLaunchFailure;
    case LaunchOutcome::kOk: break;
  }
  return cudaSuccess;
}

struct FaultDescriber {
  FaultDescriber() { set_fault_describer(&rt::describe_address); }
} g_fault_describer;

}  // namespace

int register_kernel(const char* pretty_function, const char* launching_file) {
  const char* slash = strrchr(launching_file, '/');
  const std::string file = slash != nullptr ? slash + 1 : launching_file;
  return coverage::register_kernel(file + ": " + short_kernel_name(pretty_function));
}

const char* kernel_name(int kernel_id) { return coverage::kernel_name(kernel_id); }

void enqueue_kernel(cudaStream_t handle, std::unique_ptr<QueuedKernel> kernel) {
  using namespace rt;
  if (check_context() != cudaSuccess) return;
  const KernelLaunch& l = kernel->launch;
  if (check_launch_config(l.grid, l.block) != nullptr) {
    note(cudaErrorInvalidConfiguration);
    return;
  }
  size_t smem_limit = kDefaultDynamicSmem;
  {
    FuncAttributes& a = func_attributes();
    std::lock_guard<std::mutex> lock(a.mu);
    auto it = a.max_dynamic_smem.find(kernel->func);
    if (it != a.max_dynamic_smem.end()) smem_limit = it->second;
  }
  if (l.dynamic_smem > smem_limit) {
    note(cudaErrorInvalidValue);
    return;
  }
  // A module built for sm_90 has no code a GPU of an older generation can run.
  const Config& c = config();
  if (c.cc_major * 10 + c.cc_minor < kBuiltArch) {
    note(cudaErrorNoKernelImageForDevice);
    return;
  }
  Stream* stream = resolve_stream(handle);
  if (stream == nullptr) {
    note(cudaErrorInvalidResourceHandle);
    return;
  }
  std::shared_ptr<QueuedKernel> queued(std::move(kernel));
  stream->enqueue([queued] {
    if (const int injected = coverage::count_kernel(queued->kernel_id)) {
      set_sticky_error((cudaError_t)injected, std::string("kernel ") + queued->launch.name +
                                                  ": failure injected by NM_CUDA_EMU_FAIL");
      return;
    }
    const LaunchOutcome outcome = run_grid(queued->launch);
    if (outcome.kind != LaunchOutcome::kOk) set_sticky_error(error_of(outcome.kind), outcome.message);
  });
}

}  // namespace nm_emu

using namespace nm_emu::rt;

extern "C" cudaError_t cudaFuncSetAttribute(const void* func, enum cudaFuncAttribute attr, int value) {
  NM_EMU_RUNTIME_ENTRY("cudaFuncSetAttribute");
  if (func == nullptr) return note(cudaErrorInvalidDeviceFunction);
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return note(cudaErrorInvalidValue);
  if (value < 0 || (size_t)value > nm_emu::kMaxDynamicSmemOptin) return note(cudaErrorInvalidValue);
  nm_emu::FuncAttributes& a = nm_emu::func_attributes();
  std::lock_guard<std::mutex> lock(a.mu);
  a.max_dynamic_smem[func] = (size_t)value;
  return check_context();
}
