// Runs one CUDA block on fibers (see block_scheduler.h).
#include "block_scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <new>

// The CUDA built-in indices of the thread running here. Initial-exec TLS: a plain %fs-relative
// load in the kernels' index arithmetic, also inside the dlopen()ed emulated module.
__thread uint3 threadIdx __attribute__((tls_model("initial-exec"))) = {0, 0, 0};
__thread uint3 blockIdx __attribute__((tls_model("initial-exec"))) = {0, 0, 0};
__thread uint3 blockDim __attribute__((tls_model("initial-exec"))) = {1, 1, 1};
__thread uint3 gridDim __attribute__((tls_model("initial-exec"))) = {1, 1, 1};

namespace nm_emu {
namespace {

__thread BlockScheduler* g_scheduler __attribute__((tls_model("initial-exec"))) = nullptr;

}  // namespace

BlockScheduler* current_scheduler() { return g_scheduler; }
void set_current_scheduler(BlockScheduler* scheduler) { g_scheduler = scheduler; }

BlockScheduler::~BlockScheduler() {
  for (EmuFiber* f : fibers_) {
    fiber_stack_destroy(f->stack);
    delete f;
  }
  ::operator delete(static_smem_);
  ::operator delete(dynamic_smem_);
}

void BlockScheduler::set_thread_index(unsigned tid) {
  if (block_x_ == threads_) {
    threadIdx.x = tid;
    threadIdx.y = 0;
    threadIdx.z = 0;
  } else {
    threadIdx.x = tid % block_x_;
    threadIdx.y = (tid / block_x_) % (block_xy_ / block_x_);
    threadIdx.z = tid / block_xy_;
  }
}

void BlockScheduler::enter(EmuFiber* f) {
  current_ = f;
  set_thread_index(f->tid);
}

EmuFiber* BlockScheduler::take_fiber() {
  EmuFiber* f;
  if (idle_.empty()) {
    f = new EmuFiber();
    f->stack = fiber_stack_create();
    f->owner = this;
    fibers_.push_back(f);
  } else {
    f = idle_.back();
    idle_.pop_back();
  }
  f->finished = false;
  f->sp = fiber_prepare(f->stack, &BlockScheduler::fiber_main, f);
  return f;
}

EmuFiber* BlockScheduler::next_runnable() {
  if (ready_head_ < ready_.size()) {
    EmuFiber* f = ready_[ready_head_++];
    if (ready_head_ == ready_.size()) {
      ready_.clear();
      ready_head_ = 0;
    }
    return f;
  }
  if (started_ < threads_) return take_fiber();
  return nullptr;
}

// A fiber's life: start CUDA threads that have not started yet, one after the other, until none
// is left; a thread that parks keeps the fiber (another one starts the next thread).
void BlockScheduler::fiber_main(void* arg) {
  EmuFiber* f = static_cast<EmuFiber*>(arg);
  BlockScheduler* s = f->owner;
  while (s->started_ < s->threads_) {
    const unsigned tid = s->started_++;
    f->tid = tid;
    s->set_thread_index(tid);
    s->launch_->invoke(s->launch_->args);
    s->thread_exited(tid);
  }
  f->finished = true;
  nm_emu_fiber_switch(&f->sp, s->scheduler_sp_);
  __builtin_unreachable();
}

void BlockScheduler::release(Barrier& b) {
  b.arrived = 0;
  b.generation++;
  b.pred_count[b.generation & 1] = 0;
  for (EmuFiber* w : b.waiters) ready_.push_back(w);
  b.waiters.clear();
}

void BlockScheduler::park(Barrier& b) {
  EmuFiber* self = current_;
  b.waiters.push_back(self);
  EmuFiber* next = next_runnable();
  if (next == nullptr) {
    // Every thread that has not exited waits, and none of the barriers can complete.
    deadlocked_ = true;
    nm_emu_fiber_switch(&self->sp, scheduler_sp_);
    __builtin_unreachable();
  }
  enter(next);
  nm_emu_fiber_switch(&self->sp, next->sp);
  // Resumed: whoever switched here made this thread current again.
}

void BlockScheduler::thread_exited(unsigned tid) {
  Barrier& w = warps_[tid >> 5];
  w.live--;
  if (w.arrived > 0 && w.arrived == w.live) release(w);
  block_.live--;
  if (block_.arrived > 0 && block_.arrived == block_.live) release(block_);
}

unsigned BlockScheduler::block_barrier(unsigned pred) {
  Barrier& b = block_;
  const unsigned gen = b.generation;
  if (pred != 0) b.pred_count[gen & 1]++;
  if (++b.arrived == b.live) {
    release(b);
  } else {
    park(b);
  }
  return b.pred_count[gen & 1];
}

void BlockScheduler::warp_barrier() {
  Barrier& w = warps_[current_->tid >> 5];
  if (++w.arrived == w.live) {
    release(w);
  } else {
    park(w);
  }
}

// Lanes write their value to one of two slots (alternating per shuffle), meet at the warp
// barrier, and read the source lane's slot. Two slots suffice: a lane can write the slot of
// shuffle k+2 only after every lane passed the barrier of shuffle k+1, i.e. after every lane has
// read its value of shuffle k. A source lane that did not take part (exited, or missing from a
// partial warp) yields all-ones bits: NaN, or -1.
uint64_t BlockScheduler::warp_exchange(uint64_t bits, unsigned src_lane) {
  const unsigned tid = current_->tid;
  const uint8_t phase = shuffle_phase_[tid];
  shuffle_phase_[tid] = (uint8_t)(phase + 1);
  shuffle_slots_[phase & 1][tid] = bits;
  warp_barrier();
  const unsigned src = (tid & ~31u) + (src_lane & 31u);
  // The source took part in this shuffle when its count is one or two past ours before it.
  const uint8_t ahead = (uint8_t)(shuffle_phase_[src] - phase);
  if (src >= threads_ || (ahead != 1 && ahead != 2)) return ~uint64_t{0};
  return shuffle_slots_[phase & 1][src];
}

unsigned char* BlockScheduler::shared_site(const void* site, size_t bytes) {
  for (const auto& entry : sites_) {
    if (entry.first == site) return entry.second;
  }
  const size_t at = (static_used_ + 15) & ~(size_t)15;
  if (at + bytes > kStaticSmemBytes) device_error("static shared memory over 48 KiB");
  if (static_smem_ == nullptr) {
    static_smem_ = static_cast<unsigned char*>(::operator new(kStaticSmemBytes));
  }
  static_used_ = at + bytes;
  unsigned char* p = static_smem_ + at;
  memset(p, 0xff, bytes);
  sites_.emplace_back(site, p);
  return p;
}

void BlockScheduler::device_error(const char* what) {
  error_ = what;
  if (current_ == nullptr) {
    fprintf(stderr, "cuda emulation: %s (outside of a kernel)\n", what);
    abort();
  }
  EmuFiber* self = current_;
  nm_emu_fiber_switch(&self->sp, scheduler_sp_);
  __builtin_unreachable();
}

void BlockScheduler::abandon() {
  // Every fiber's stack state is dropped; the stacks themselves are kept for reuse.
  idle_.assign(fibers_.begin(), fibers_.end());
  for (EmuFiber* f : fibers_) f->finished = true;
  ready_.clear();
  ready_head_ = 0;
  current_ = nullptr;
  block_.waiters.clear();
  for (Barrier& w : warps_) w.waiters.clear();
  set_current_scheduler(nullptr);
}

bool BlockScheduler::owns_guard_page(const void* addr) const {
  for (const EmuFiber* f : fibers_) {
    if (fiber_stack_guard_hit(f->stack, addr)) return true;
  }
  return false;
}

bool BlockScheduler::run_block(const KernelLaunch& launch, dim3 block_idx, std::string* why) {
  launch_ = &launch;
  block_x_ = launch.block.x;
  block_xy_ = launch.block.x * launch.block.y;
  threads_ = block_xy_ * launch.block.z;
  started_ = 0;
  blockIdx = uint3{block_idx.x, block_idx.y, block_idx.z};
  blockDim = uint3{launch.block.x, launch.block.y, launch.block.z};
  gridDim = uint3{launch.grid.x, launch.grid.y, launch.grid.z};

  block_.arrived = 0;
  block_.live = threads_;
  block_.generation = 0;
  block_.pred_count[0] = block_.pred_count[1] = 0;
  block_.waiters.clear();
  const unsigned warps = (threads_ + 31) / 32;
  warps_.resize(warps);
  for (unsigned w = 0; w < warps; w++) {
    Barrier& b = warps_[w];
    b.arrived = 0;
    b.live = threads_ - 32 * w < 32 ? threads_ - 32 * w : 32;
    b.generation = 0;
    b.waiters.clear();
  }
  shuffle_phase_.assign(threads_, 0);
  if (shuffle_slots_[0].size() < threads_) {
    shuffle_slots_[0].resize(threads_);
    shuffle_slots_[1].resize(threads_);
  }
  sites_.clear();
  static_used_ = 0;
  if (launch.dynamic_smem > 0) {
    if (launch.dynamic_smem > dynamic_capacity_) {
      ::operator delete(dynamic_smem_);
      dynamic_smem_ = static_cast<unsigned char*>(::operator new(launch.dynamic_smem, std::align_val_t(128)));
      dynamic_capacity_ = launch.dynamic_smem;
    }
    memset(dynamic_smem_, 0xff, launch.dynamic_smem);
  }
  deadlocked_ = false;
  error_.clear();
  set_current_scheduler(this);

  for (;;) {
    EmuFiber* f = next_runnable();
    if (f == nullptr) break;
    enter(f);
    nm_emu_fiber_switch(&scheduler_sp_, f->sp);
    EmuFiber* back = current_;
    if (back != nullptr && back->finished) {
      idle_.push_back(back);
      current_ = nullptr;
      continue;
    }
    break;  // a deadlock or a device error: the fiber that came back is stuck
  }

  bool ok = true;
  if (!error_.empty()) {
    *why = error_;
    ok = false;
  } else if (deadlocked_ || block_.live > 0) {
    unsigned at_block = (unsigned)block_.waiters.size(), at_warp = 0;
    for (const Barrier& w : warps_) at_warp += (unsigned)w.waiters.size();
    char msg[256];
    snprintf(msg, sizeof msg,
             "barrier deadlock: %u of %u threads wait at __syncthreads and %u at a warp-level "
             "barrier (__syncwarp, shuffle, wmma), the other %u have exited",
             at_block, threads_, at_warp, threads_ - block_.live);
    *why = msg;
    ok = false;
  }
  if (!ok) {
    abandon();
  } else {
    set_current_scheduler(nullptr);
  }
  return ok;
}

}  // namespace nm_emu
