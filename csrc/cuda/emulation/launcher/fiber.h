// Fibers for the kernel launcher: user-space execution contexts, one per emulated CUDA thread
// that has to wait at a barrier. A switch saves the callee-saved registers on the current stack
// and loads another stack (hand-written x86-64 assembly in fiber.cc, ~a few ns; no system call,
// no signal-mask change). Stacks come from mmap with a PROT_NONE guard page below them, so an
// overflow faults (and the launcher reports it) instead of corrupting a neighbour.
#ifndef NM_CUDA_EMULATION_FIBER_H
#define NM_CUDA_EMULATION_FIBER_H

#include <stddef.h>

namespace nm_emu {

// Usable bytes per fiber stack. The deepest kernels (the flash-bf16 ones: wmma fragments held
// whole by every lane) use about 40 KiB.
constexpr size_t kFiberStackBytes = size_t(256) << 10;

struct FiberStack {
  char* base = nullptr;  // lowest usable byte (the guard page is just below)
  size_t size = 0;
};

// Maps a stack (kFiberStackBytes + a guard page); aborts when the address space is exhausted.
FiberStack fiber_stack_create();
void fiber_stack_destroy(FiberStack& stack);
// True when `addr` lies in the guard page of a stack made by fiber_stack_create.
bool fiber_stack_guard_hit(const FiberStack& stack, const void* addr);

// Prepares `stack` so that the first switch to the returned stack pointer calls entry(arg) on it.
// entry must never return (it switches away for the last time instead).
void* fiber_prepare(const FiberStack& stack, void (*entry)(void*), void* arg);

}  // namespace nm_emu

// Saves the current context's registers on its stack, stores its stack pointer in *save_sp,
// and continues the context whose stack pointer is load_sp.
extern "C" void nm_emu_fiber_switch(void** save_sp, void* load_sp);

#endif  // NM_CUDA_EMULATION_FIBER_H
