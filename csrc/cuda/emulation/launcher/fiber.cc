// Fiber stacks and the context switch (see fiber.h).
#include "fiber.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#if !defined(__x86_64__)
#error "the CUDA emulation's fiber switch is written for x86-64 (System V ABI) only"
#endif

// nm_emu_fiber_switch(void** save_sp /* rdi */, void* load_sp /* rsi */): push the six
// callee-saved integer registers, publish rsp, adopt the other stack, pop its registers, return
// into it. The SSE/x87 control words are not switched: every fiber of a process shares them.
// nm_emu_fiber_start is where a fresh stack "returns" to: r12 = entry, r13 = its argument.
asm(R"(
  .text
  .globl nm_emu_fiber_switch
  .hidden nm_emu_fiber_switch
  .type nm_emu_fiber_switch, @function
nm_emu_fiber_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size nm_emu_fiber_switch, .-nm_emu_fiber_switch

  .type nm_emu_fiber_start, @function
nm_emu_fiber_start:
  movq %r13, %rdi
  callq *%r12
  ud2
  .size nm_emu_fiber_start, .-nm_emu_fiber_start
  .section .note.GNU-stack,"",@progbits
  .text
)");

extern "C" void nm_emu_fiber_start();

namespace nm_emu {
namespace {

size_t page_size() {
  static const size_t size = (size_t)sysconf(_SC_PAGESIZE);
  return size;
}

}  // namespace

FiberStack fiber_stack_create() {
  const size_t guard = page_size();
  void* mem = mmap(nullptr, kFiberStackBytes + guard, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) {
    fprintf(stderr, "cuda emulation: cannot map a %zu KiB fiber stack\n", kFiberStackBytes >> 10);
    abort();
  }
  if (mprotect(mem, guard, PROT_NONE) != 0) {
    fprintf(stderr, "cuda emulation: cannot protect a fiber stack's guard page\n");
    abort();
  }
  FiberStack stack;
  stack.base = static_cast<char*>(mem) + guard;
  stack.size = kFiberStackBytes;
  return stack;
}

void fiber_stack_destroy(FiberStack& stack) {
  if (stack.base == nullptr) return;
  munmap(stack.base - page_size(), stack.size + page_size());
  stack.base = nullptr;
}

bool fiber_stack_guard_hit(const FiberStack& stack, const void* addr) {
  const uintptr_t a = (uintptr_t)addr, lo = (uintptr_t)stack.base - page_size();
  return stack.base != nullptr && a >= lo && a < (uintptr_t)stack.base;
}

void* fiber_prepare(const FiberStack& stack, void (*entry)(void*), void* arg) {
  // The top is 16-byte aligned; after the six pops and the `ret` into nm_emu_fiber_start the
  // stack pointer is top - 16, so the `call` there enters entry() with the ABI's alignment.
  const uintptr_t top = ((uintptr_t)stack.base + stack.size) & ~(uintptr_t)15;
  void** sp = reinterpret_cast<void**>(top - 72);
  sp[0] = nullptr;                                        // r15
  sp[1] = nullptr;                                        // r14
  sp[2] = arg;                                            // r13
  sp[3] = reinterpret_cast<void*>(entry);                 // r12
  sp[4] = nullptr;                                        // rbx
  sp[5] = nullptr;                                        // rbp
  sp[6] = reinterpret_cast<void*>(&nm_emu_fiber_start);  // return address
  return sp;
}

}  // namespace nm_emu
