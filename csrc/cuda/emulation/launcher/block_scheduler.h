// Runs the threads of one CUDA block on fibers, on one OS thread (see docs/GPU.md, "How the
// emulation runs kernels").
//
// A block starts with a single fiber that runs its threads one after the other, each to its end:
// a kernel without barriers costs one plain function call per CUDA thread. When a thread waits
// at a barrier (__syncthreads, __syncwarp, a warp shuffle, a wmma *_sync call), its fiber parks
// and a fresh fiber starts the next thread that has not started yet; once every thread that can
// still arrive has arrived, the waiters resume in arrival order (the last one to arrive goes on
// without switching). Exited threads no longer count for barriers, as on sm_70 and newer. When
// nothing can run but threads still wait, the block is deadlocked and the launch fails.
//
// Shared memory per block: the dynamic area and each static __shared__ declaration
// (kernel_compat.cuh's NM_SHARED_*) start filled with 0xff bytes, so a read of shared memory
// nobody wrote gives NaN (f32, bf16, f64) or -1.
#ifndef NM_CUDA_EMULATION_BLOCK_SCHEDULER_H
#define NM_CUDA_EMULATION_BLOCK_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include <string>
#include <utility>
#include <vector>

#include "fiber.h"
#include "kernel_launch.h"

namespace nm_emu {

constexpr size_t kStaticSmemBytes = 48 * 1024;  // CUDA's limit for static __shared__ memory

class BlockScheduler;

// One fiber: runs CUDA threads of the current block until one of them has to wait.
struct EmuFiber {
  void* sp = nullptr;
  FiberStack stack;
  BlockScheduler* owner = nullptr;
  unsigned tid = 0;  // linear index of the CUDA thread it runs now
  bool finished = false;
};

// Waiting threads of one barrier (the block's, or one warp's).
struct Barrier {
  unsigned arrived = 0;
  unsigned live = 0;  // threads that can still arrive: not exited (started or not)
  unsigned generation = 0;
  unsigned pred_count[2] = {0, 0};  // __syncthreads_count/or/and, per generation parity
  std::vector<EmuFiber*> waiters;
};

class BlockScheduler {
 public:
  BlockScheduler() = default;
  ~BlockScheduler();
  BlockScheduler(const BlockScheduler&) = delete;
  BlockScheduler& operator=(const BlockScheduler&) = delete;

  // Runs block `block_idx` of `launch` to the end on this OS thread. False with *why on a
  // deadlock or an error raised by device code.
  bool run_block(const KernelLaunch& launch, dim3 block_idx, std::string* why);
  // After a fault was recovered (the stack state of every fiber is lost): back to idle.
  void abandon();
  // The fiber stack that contains addr (a guard page hit means a stack overflow), if any.
  bool owns_guard_page(const void* addr) const;
  // The CUDA thread currently running here, for fault messages.
  unsigned current_tid() const { return current_ != nullptr ? current_->tid : 0; }

  // ---- device-side services (through cuda_host_shim.h) ----
  unsigned block_barrier(unsigned pred);  // returns how many threads passed pred != 0
  void warp_barrier();
  uint64_t warp_exchange(uint64_t bits, unsigned src_lane);
  unsigned char* shared_site(const void* site, size_t bytes);
  unsigned char* dynamic_smem() { return dynamic_smem_; }
  [[noreturn]] void device_error(const char* what);

 private:
  static void fiber_main(void* fiber);
  EmuFiber* take_fiber();
  EmuFiber* next_runnable();
  void enter(EmuFiber* f);                      // makes f's CUDA thread the current one
  void park(Barrier& barrier);                  // current thread waits at barrier
  void release(Barrier& barrier);
  void thread_exited(unsigned tid);
  void set_thread_index(unsigned tid);

  const KernelLaunch* launch_ = nullptr;
  unsigned threads_ = 0, started_ = 0, block_x_ = 1, block_xy_ = 1;
  void* scheduler_sp_ = nullptr;
  EmuFiber* current_ = nullptr;
  std::vector<EmuFiber*> fibers_;      // every fiber this thread made (reused)
  std::vector<EmuFiber*> idle_;        // fibers not running a block now
  std::vector<EmuFiber*> ready_;       // runnable, FIFO from ready_head_
  size_t ready_head_ = 0;
  Barrier block_;
  std::vector<Barrier> warps_;
  std::vector<uint8_t> shuffle_phase_;  // per thread: shuffles done (mod 256); parity = slot
  std::vector<uint64_t> shuffle_slots_[2];
  bool deadlocked_ = false;
  std::string error_;
  // shared memory
  unsigned char* static_smem_ = nullptr;
  size_t static_used_ = 0;
  std::vector<std::pair<const void*, unsigned char*>> sites_;
  unsigned char* dynamic_smem_ = nullptr;
  size_t dynamic_capacity_ = 0;
};

// The scheduler running a block on this OS thread (null outside of one).
BlockScheduler* current_scheduler();
void set_current_scheduler(BlockScheduler* scheduler);

}  // namespace nm_emu

#endif  // NM_CUDA_EMULATION_BLOCK_SCHEDULER_H
