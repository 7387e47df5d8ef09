// Internals shared by the emulated CUDA runtime's files (../include/cuda_runtime.h is the API):
// the context's errors, its configuration, and the entry-point bookkeeping every stand-in
// function (runtime and libraries) starts with.
#ifndef NM_EMU_RUNTIME_H
#define NM_EMU_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#include <atomic>
#include <string>

#include "../include/cuda_runtime.h"

namespace nm_emu {
namespace rt {

// ---- errors (errors.cc) ------------------------------------------------------------------------
// As in CUDA: each host thread has a last error (cudaGetLastError returns and clears it); a fault
// in asynchronous work (an illegal address in a kernel or a library call, a failed launch)
// becomes the context's sticky error, which every later call returns and nothing clears.
cudaError_t sticky_error();
// The first sticky error wins; `detail` (what failed, where) is printed to stderr once.
void set_sticky_error(cudaError_t err, const std::string& detail);
// Records err as the calling thread's last error when it is not cudaSuccess; returns err.
cudaError_t note(cudaError_t err);
// For calls that touch the device: the sticky error (recorded as the last error too), if any.
cudaError_t check_context();

// ---- configuration (config.cc), from the environment, read once -----------------------------
struct Config {
  int devices = 1;                 // NM_CUDA_EMU_DEVICES: 0 = no device visible
  int sm_count = 132;              // NM_CUDA_EMU_SM_COUNT: multiprocessors of the sm_90 part
  int cc_major = 9, cc_minor = 0;  // NM_CUDA_EMU_ARCH (e.g. 75): the GPU's compute capability
  int driver_version = 13000;      // NM_CUDA_EMU_DRIVER: 0 = no driver, 12080 = CUDA 12.8's...
  bool memory_pools = true;        // NM_CUDA_EMU_MEMORY_POOLS=0: no stream-ordered allocator
  size_t max_pitch = 2147483647;   // NM_CUDA_EMU_MAX_PITCH: cudaDevAttrMaxPitch
  size_t total_memory = size_t(80) << 30;  // NM_CUDA_EMU_MEMORY_BYTES: what the device reports
  bool lazy = true;                // NM_CUDA_EMU_EAGER=1: streams run work as soon as queued
  bool verbose = false;            // NM_CUDA_EMU_VERBOSE=1: log every failed call to stderr
};
const Config& config();

// The CUDA runtime version the emulation implements (13.0) and its device's compute capability
// as built for: what the module's sm_90 build would contain.
constexpr int kRuntimeVersion = 13000;
constexpr int kBuiltArch = 90;

}  // namespace rt

// ---- entry points (coverage.cc) ------------------------------------------------------------------
// Every stand-in function begins with NM_EMU_ENTRY("name"): the call is counted for the coverage
// report, and NM_CUDA_EMU_FAIL can make it fail (returns the status to fail with, else 0).
// NM_CUDA_EMU_FAIL="name=status[@n|@*],...": the n-th call (default the first; * = every call)
// of `name` returns the numeric `status` without doing anything.
class EntryPoint {
 public:
  explicit EntryPoint(const char* name);
  int call();  // counts; returns the injected status or 0
  const char* name() const { return name_; }

 private:
  const char* name_;
  std::atomic<uint64_t>* calls_;
};

#define NM_EMU_ENTRY(NAME)                        \
  static ::nm_emu::EntryPoint nm_emu_entry_(NAME); \
  const int nm_emu_injected_ = nm_emu_entry_.call()

// The start of a CUDA runtime entry point: count the call and return an injected error the way
// the runtime reports any error (recorded as the last error, sticky where CUDA's would be).
#define NM_EMU_RUNTIME_ENTRY(NAME) \
  NM_EMU_ENTRY(NAME);              \
  if (nm_emu_injected_) return ::nm_emu::rt::note((cudaError_t)nm_emu_injected_)

// Kernel instances (kernel_enqueue.cc registers them at load time; the streams count runs).
// NM_CUDA_EMU_FAIL can name a kernel instance too ("fill_kernel<unsigned int>=700"): when it runs,
// it fails with that CUDA error as the context's sticky error, as a faulting kernel would.
namespace coverage {
int register_kernel(const std::string& name);
const char* kernel_name(int id);
// Counts a run; returns the CUDA error to fail it with, or 0.
int count_kernel(int id);
}  // namespace coverage

}  // namespace nm_emu

#endif  // NM_EMU_RUNTIME_H
