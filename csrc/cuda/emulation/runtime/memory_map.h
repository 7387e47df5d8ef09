// The emulated device's memory and the pinned host memory: every allocation is its own mmap with
// a PROT_NONE guard page after it, filled with 0xff bytes (NaN in f32 / bf16 / f64) when it is
// made. Freeing replaces the pages by PROT_NONE ones (the memory goes back to the system, the
// addresses stay reserved for a while), so a kernel that touches freed memory faults and the
// launch fails with cudaErrorIllegalAddress instead of reading stale data. The table also
// answers the range checks of copies and library calls (is [p, p + n) inside one live
// allocation of the right kind?) and pointer-attribute queries.
#ifndef NM_EMU_MEMORY_MAP_H
#define NM_EMU_MEMORY_MAP_H

#include <stddef.h>
#include <stdint.h>

#include <string>

namespace nm_emu {
namespace rt {

enum class MemoryKind { kDevice, kPinned };

struct AllocationInfo {
  uintptr_t base = 0;
  size_t bytes = 0;
  MemoryKind kind = MemoryKind::kDevice;
  bool free_pending = false;  // cudaFreeAsync enqueued, not yet executed
};

// nullptr when out of (emulated or host) memory.
void* map_allocation(size_t bytes, MemoryKind kind);
// False when ptr is not the start of a live allocation of that kind.
bool unmap_allocation(void* ptr, MemoryKind kind);
// Marks a live allocation as freed in stream order (new work may no longer use it).
bool mark_free_pending(void* ptr);

// The live allocation that contains ptr, if any.
bool find_allocation(const void* ptr, AllocationInfo* out);
// NULL when [ptr, ptr + bytes) lies inside one live allocation of `kind` that is not pending a
// free (bytes == 0: ptr itself may be anywhere in it), else a description of what is wrong. For
// work being enqueued: memory passed to cudaFreeAsync may no longer be used by new work.
const char* check_range(const void* ptr, size_t bytes, MemoryKind kind, std::string* why);
// The same for work that is running now, in stream order: memory whose stream-ordered free has
// not run yet is still valid for it.
const char* check_live_range(const void* ptr, size_t bytes, MemoryKind kind, std::string* why);
// What an address is, for fault messages: "inside a freed device allocation of N bytes" ...
std::string describe_address(const void* addr);

size_t device_bytes_in_use();

}  // namespace rt
}  // namespace nm_emu

#endif  // NM_EMU_MEMORY_MAP_H
