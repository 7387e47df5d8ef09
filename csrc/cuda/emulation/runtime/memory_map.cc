// Device and pinned allocations (see memory_map.h).
#include "memory_map.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <deque>
#include <map>
#include <mutex>

#include "runtime.h"

namespace nm_emu {
namespace rt {
namespace {

struct Allocation {
  size_t bytes;
  size_t mapped;  // pages of data (the guard page follows)
  MemoryKind kind;
  bool free_pending;
};

struct Freed {
  uintptr_t base;
  size_t bytes, mapped;
  MemoryKind kind;
};

// Freed ranges stay reserved (PROT_NONE) so late accesses fault; the oldest are returned to the
// system beyond this many (each costs a kernel mapping, and processes have ~65k of those).
constexpr size_t kQuarantine = 8192;

struct Table {
  std::mutex mu;
  std::map<uintptr_t, Allocation> live;
  std::deque<Freed> quarantine;
  size_t device_bytes = 0;
};

Table& table() {
  static Table* t = new Table();  // never destroyed (streams may free during exit)
  return *t;
}

size_t page() {
  static const size_t p = (size_t)sysconf(_SC_PAGESIZE);
  return p;
}

const char* kind_name(MemoryKind kind) { return kind == MemoryKind::kDevice ? "device" : "pinned host"; }

// The live allocation containing p (lock held).
std::map<uintptr_t, Allocation>::iterator containing(Table& t, uintptr_t p) {
  auto it = t.live.upper_bound(p);
  if (it == t.live.begin()) return t.live.end();
  --it;
  if (p >= it->first + (it->second.bytes == 0 ? 1 : it->second.bytes)) return t.live.end();
  return it;
}

}  // namespace

void* map_allocation(size_t bytes, MemoryKind kind) {
  Table& t = table();
  const size_t mapped = (bytes + page() - 1) / page() * page() + (bytes == 0 ? page() : 0);
  {
    std::lock_guard<std::mutex> lock(t.mu);
    if (kind == MemoryKind::kDevice && t.device_bytes + mapped > config().total_memory) return nullptr;
  }
  void* mem = mmap(nullptr, mapped + page(), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) return nullptr;
  char* base = static_cast<char*>(mem);
  if (mprotect(base + mapped, page(), PROT_NONE) != 0) {
    munmap(mem, mapped + page());
    return nullptr;
  }
  memset(base, 0xff, mapped);
  std::lock_guard<std::mutex> lock(t.mu);
  t.live[(uintptr_t)base] = Allocation{bytes, mapped, kind, false};
  if (kind == MemoryKind::kDevice) t.device_bytes += mapped;
  return base;
}

bool unmap_allocation(void* ptr, MemoryKind kind) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  auto it = t.live.find((uintptr_t)ptr);
  if (it == t.live.end() || it->second.kind != kind) return false;
  const Allocation a = it->second;
  t.live.erase(it);
  if (kind == MemoryKind::kDevice) t.device_bytes -= a.mapped;
  // Fresh PROT_NONE pages over the range: the old pages are released, the addresses stay ours.
  mmap(ptr, a.mapped, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  t.quarantine.push_back(Freed{(uintptr_t)ptr, a.bytes, a.mapped, kind});
  if (t.quarantine.size() > kQuarantine) {
    const Freed old = t.quarantine.front();
    t.quarantine.pop_front();
    munmap(reinterpret_cast<void*>(old.base), old.mapped + page());
  }
  return true;
}

bool mark_free_pending(void* ptr) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  auto it = t.live.find((uintptr_t)ptr);
  if (it == t.live.end() || it->second.kind != MemoryKind::kDevice || it->second.free_pending) {
    return false;
  }
  it->second.free_pending = true;
  return true;
}

bool find_allocation(const void* ptr, AllocationInfo* out) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  auto it = containing(t, (uintptr_t)ptr);
  if (it == t.live.end()) return false;
  out->base = it->first;
  out->bytes = it->second.bytes;
  out->kind = it->second.kind;
  out->free_pending = it->second.free_pending;
  return true;
}

namespace {

const char* check(const void* ptr, size_t bytes, MemoryKind kind, bool pending_ok, std::string* why) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  const uintptr_t p = (uintptr_t)ptr;
  auto it = containing(t, p);
  char buf[256];
  if (it == t.live.end()) {
    snprintf(buf, sizeof buf, "%p is not in any live %s allocation", ptr, kind_name(kind));
  } else if (it->second.kind != kind) {
    snprintf(buf, sizeof buf, "%p is %s memory, not %s memory", ptr, kind_name(it->second.kind), kind_name(kind));
  } else if (it->second.free_pending && !pending_ok) {
    snprintf(buf, sizeof buf, "%p is in a %s allocation already freed by cudaFreeAsync", ptr, kind_name(kind));
  } else if (p + bytes > it->first + it->second.bytes) {
    snprintf(buf, sizeof buf, "[%p, +%zu bytes) runs %zu bytes past the end of a %zu-byte %s allocation",
             ptr, bytes, (size_t)(p + bytes - (it->first + it->second.bytes)), it->second.bytes,
             kind_name(kind));
  } else {
    return nullptr;
  }
  *why = buf;
  return why->c_str();
}

}  // namespace

const char* check_range(const void* ptr, size_t bytes, MemoryKind kind, std::string* why) {
  return check(ptr, bytes, kind, false, why);
}

const char* check_live_range(const void* ptr, size_t bytes, MemoryKind kind, std::string* why) {
  return check(ptr, bytes, kind, true, why);
}

std::string describe_address(const void* addr) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  const uintptr_t p = (uintptr_t)addr;
  char buf[256];
  for (auto f = t.quarantine.rbegin(); f != t.quarantine.rend(); ++f) {
    if (p >= f->base && p < f->base + f->mapped + page()) {
      snprintf(buf, sizeof buf, "inside freed %s memory: a %zu-byte allocation at %p, byte %zu",
               kind_name(f->kind), f->bytes, reinterpret_cast<void*>(f->base), (size_t)(p - f->base));
      return buf;
    }
  }
  auto it = t.live.upper_bound(p);
  if (it != t.live.begin()) {
    --it;
    if (p >= it->first && p < it->first + it->second.mapped + page()) {
      snprintf(buf, sizeof buf, "%zu bytes past the end of a live %zu-byte %s allocation at %p",
               (size_t)(p - it->first - it->second.bytes), it->second.bytes, kind_name(it->second.kind),
               reinterpret_cast<void*>(it->first));
      return buf;
    }
  }
  return "not emulated device memory";
}

size_t device_bytes_in_use() {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mu);
  return t.device_bytes;
}

}  // namespace rt
}  // namespace nm_emu
