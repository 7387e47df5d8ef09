// What the launcher needs to run one kernel launch: the grid, the block, the dynamic shared
// memory size and a type-erased call of the kernel with its (already converted) arguments.
// Built by nm_emu::launch (cuda_host_shim.h, the harnesses) and by NM_CUDA_LAUNCH (the module,
// through the emulated runtime's streams).
#ifndef NM_CUDA_EMULATION_KERNEL_LAUNCH_H
#define NM_CUDA_EMULATION_KERNEL_LAUNCH_H

#include <stddef.h>

#include <string>

// CUDA's vector types for launch shapes and the built-in indices (threadIdx etc. are uint3).
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

// The built-in indices of the CUDA thread running on this OS thread (set by the launcher).
extern __thread uint3 threadIdx __attribute__((tls_model("initial-exec")));
extern __thread uint3 blockIdx __attribute__((tls_model("initial-exec")));
extern __thread uint3 blockDim __attribute__((tls_model("initial-exec")));
extern __thread uint3 gridDim __attribute__((tls_model("initial-exec")));

namespace nm_emu {

struct KernelLaunch {
  const char* name = "";                     // the kernel instance, e.g. "fill_kernel<unsigned int>"
  void (*invoke)(const void* args) = nullptr;  // runs the kernel body for the current CUDA thread
  const void* args = nullptr;                  // what invoke unpacks (a tuple of the parameters)
  dim3 grid, block;
  size_t dynamic_smem = 0;
  // Host work split into independent items (the emulated libraries' GEMM and sort pieces): each
  // "block" is one call of invoke with blockIdx set, on the OS thread's own stack (deep library
  // code, not a fiber), with blockDim (1,1,1) and no barriers.
  bool host_items = false;
};

// How a launch ended. Anything but kOk leaves the context's sticky error in the runtime.
struct LaunchOutcome {
  enum Kind { kOk, kFault, kStackOverflow, kDeadlock, kDeviceError } kind = kOk;
  std::string message;  // what happened, where (block, thread, address), for stderr
};

// Runs every block of `launch` on the calling thread plus the launcher's worker pool, blocks in
// parallel, the threads of a block on fibers. Returns when all blocks are done or one failed.
LaunchOutcome run_grid(const KernelLaunch& launch);

// Runs fn(arg) on the calling thread with the launcher's fault recovery (for the emulated
// runtime's copies and memsets): false, with what and where in *fault, when fn touched memory
// that is not mapped (a freed allocation, a guard page).
bool run_guarded(void (*fn)(void*), void* arg, std::string* fault);

// Launch configuration limits of an sm_90 part: grid.x < 2^31, grid.y/z <= 65535, block.x/y
// <= 1024, block.z <= 64, at most 1024 threads. Returns NULL when valid, else why not.
const char* check_launch_config(dim3 grid, dim3 block);

// The worker pool's size (threads that run blocks, including the caller): NM_CUDA_EMU_THREADS,
// default the number of CPUs.
unsigned launcher_threads();

// Optional: says what an address that faulted was (e.g. "freed device memory of 4096 bytes");
// set by the emulated runtime, used in fault messages. Must be async-signal-tolerant: it is
// called after the fault, outside the signal handler, on the thread that faulted.
void set_fault_describer(std::string (*describe)(const void* addr));

}  // namespace nm_emu

#endif  // NM_CUDA_EMULATION_KERNEL_LAUNCH_H
