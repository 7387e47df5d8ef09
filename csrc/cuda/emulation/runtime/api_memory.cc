// Device memory (cudaMalloc / cudaFree, stream-ordered allocation from memory pools), pinned
// host memory, and pointer attributes. Allocations are host mmaps (memory_map.h): 0xff-filled
// when made, PROT_NONE when freed.
#include <string.h>

#include "handle_registry.h"
#include "memory_map.h"
#include "runtime.h"
#include "stream.h"

struct CUmemPoolHandle_st {
  uint64_t release_threshold = 0;
  int reuse_follow_event_dependencies = 1;
  int reuse_allow_opportunistic = 1;
  int reuse_allow_internal_dependencies = 1;
};

namespace nm_emu {
namespace rt {
namespace {

HandleRegistry<cudaMemPool_t>& pools() { return registry_of<cudaMemPool_t>(); }
bool pool_is_live(cudaMemPool_t pool) { return pools().contains(pool); }

cudaError_t allocate(void** out, size_t size, MemoryKind kind) {
  if (out == nullptr) return note(cudaErrorInvalidValue);
  *out = nullptr;
  if (check_context() != cudaSuccess) return sticky_error();
  if (size == 0) return cudaSuccess;  // CUDA hands out NULL for zero bytes
  void* p = map_allocation(size, kind);
  if (p == nullptr) return note(cudaErrorMemoryAllocation);
  *out = p;
  return cudaSuccess;
}

}  // namespace
}  // namespace rt
}  // namespace nm_emu

using namespace nm_emu::rt;

extern "C" {

cudaError_t cudaMalloc(void** devPtr, size_t size) {
  NM_EMU_RUNTIME_ENTRY("cudaMalloc");
  return allocate(devPtr, size, MemoryKind::kDevice);
}

cudaError_t cudaFree(void* devPtr) {
  NM_EMU_RUNTIME_ENTRY("cudaFree");
  if (check_context() != cudaSuccess) return sticky_error();
  if (devPtr == nullptr) return cudaSuccess;
  synchronize_all();  // cudaFree waits for the device to be idle
  if (!unmap_allocation(devPtr, MemoryKind::kDevice)) return note(cudaErrorInvalidValue);
  return check_context();
}

cudaError_t cudaMallocHost(void** ptr, size_t size) {
  NM_EMU_RUNTIME_ENTRY("cudaMallocHost");
  return allocate(ptr, size, MemoryKind::kPinned);
}

cudaError_t cudaFreeHost(void* ptr) {
  NM_EMU_RUNTIME_ENTRY("cudaFreeHost");
  if (check_context() != cudaSuccess) return sticky_error();
  if (ptr == nullptr) return cudaSuccess;
  synchronize_all();  // like cudaFree, a synchronizing call
  if (!unmap_allocation(ptr, MemoryKind::kPinned)) return note(cudaErrorInvalidValue);
  return check_context();
}

cudaError_t cudaMallocAsync(void** devPtr, size_t size, cudaStream_t stream) {
  NM_EMU_RUNTIME_ENTRY("cudaMallocAsync");
  if (!config().memory_pools) return note(cudaErrorNotSupported);
  if (resolve_stream(stream) == nullptr) return note(cudaErrorInvalidResourceHandle);
  // Fresh memory is usable by anything ordered after this call, whatever stream it is on.
  return allocate(devPtr, size, MemoryKind::kDevice);
}

cudaError_t cudaMallocFromPoolAsync(void** ptr, size_t size, cudaMemPool_t memPool, cudaStream_t stream) {
  NM_EMU_RUNTIME_ENTRY("cudaMallocFromPoolAsync");
  if (!pool_is_live(memPool)) return note(cudaErrorInvalidValue);
  if (resolve_stream(stream) == nullptr) return note(cudaErrorInvalidResourceHandle);
  return allocate(ptr, size, MemoryKind::kDevice);
}

cudaError_t cudaFreeAsync(void* devPtr, cudaStream_t stream) {
  NM_EMU_RUNTIME_ENTRY("cudaFreeAsync");
  if (check_context() != cudaSuccess) return sticky_error();
  Stream* s = resolve_stream(stream);
  if (s == nullptr) return note(cudaErrorInvalidResourceHandle);
  if (devPtr == nullptr) return cudaSuccess;
  // From now on no new work may use it; the pages go once the stream reaches this point.
  if (!mark_free_pending(devPtr)) return note(cudaErrorInvalidValue);
  s->enqueue([devPtr] { unmap_allocation(devPtr, MemoryKind::kDevice); });
  return cudaSuccess;
}

cudaError_t cudaMemPoolCreate(cudaMemPool_t* memPool, const struct cudaMemPoolProps* poolProps) {
  NM_EMU_RUNTIME_ENTRY("cudaMemPoolCreate");
  if (memPool == nullptr || poolProps == nullptr) return note(cudaErrorInvalidValue);
  if (!config().memory_pools) return note(cudaErrorNotSupported);
  if (poolProps->allocType != cudaMemAllocationTypePinned ||
      poolProps->location.type != cudaMemLocationTypeDevice || poolProps->handleTypes != cudaMemHandleTypeNone) {
    return note(cudaErrorInvalidValue);
  }
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || poolProps->location.id < 0 || poolProps->location.id >= count) {
    return note(cudaErrorInvalidDevice);
  }
  if (check_context() != cudaSuccess) return sticky_error();
  cudaMemPool_t pool = new CUmemPoolHandle_st();
  pools().add(pool);
  *memPool = pool;
  return cudaSuccess;
}

cudaError_t cudaMemPoolDestroy(cudaMemPool_t memPool) {
  NM_EMU_RUNTIME_ENTRY("cudaMemPoolDestroy");
  // Outstanding allocations stay valid until freed (each is its own mapping here).
  if (!pools().remove(memPool)) return note(cudaErrorInvalidValue);
  return cudaSuccess;
}

cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t memPool, enum cudaMemPoolAttr attr, void* value) {
  NM_EMU_RUNTIME_ENTRY("cudaMemPoolSetAttribute");
  if (!pool_is_live(memPool) || value == nullptr) return note(cudaErrorInvalidValue);
  switch (attr) {
    case cudaMemPoolAttrReleaseThreshold: memPool->release_threshold = *static_cast<uint64_t*>(value); break;
    case cudaMemPoolReuseFollowEventDependencies:
      memPool->reuse_follow_event_dependencies = *static_cast<int*>(value);
      break;
    case cudaMemPoolReuseAllowOpportunistic: memPool->reuse_allow_opportunistic = *static_cast<int*>(value); break;
    case cudaMemPoolReuseAllowInternalDependencies:
      memPool->reuse_allow_internal_dependencies = *static_cast<int*>(value);
      break;
    default: return note(cudaErrorInvalidValue);  // the memory counters are read-only
  }
  return check_context();
}

cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t memPool, enum cudaMemPoolAttr attr, void* value) {
  NM_EMU_RUNTIME_ENTRY("cudaMemPoolGetAttribute");
  if (!pool_is_live(memPool) || value == nullptr) return note(cudaErrorInvalidValue);
  switch (attr) {
    case cudaMemPoolAttrReleaseThreshold: *static_cast<uint64_t*>(value) = memPool->release_threshold; break;
    case cudaMemPoolReuseFollowEventDependencies:
      *static_cast<int*>(value) = memPool->reuse_follow_event_dependencies;
      break;
    case cudaMemPoolReuseAllowOpportunistic: *static_cast<int*>(value) = memPool->reuse_allow_opportunistic; break;
    case cudaMemPoolReuseAllowInternalDependencies:
      *static_cast<int*>(value) = memPool->reuse_allow_internal_dependencies;
      break;
    case cudaMemPoolAttrReservedMemCurrent:
    case cudaMemPoolAttrReservedMemHigh:
    case cudaMemPoolAttrUsedMemCurrent:
    case cudaMemPoolAttrUsedMemHigh:
      *static_cast<uint64_t*>(value) = device_bytes_in_use();  // every device allocation
      break;
    default: return note(cudaErrorInvalidValue);
  }
  return check_context();
}

cudaError_t cudaPointerGetAttributes(struct cudaPointerAttributes* attributes, const void* ptr) {
  NM_EMU_RUNTIME_ENTRY("cudaPointerGetAttributes");
  if (attributes == nullptr) return note(cudaErrorInvalidValue);
  if (check_context() != cudaSuccess) return sticky_error();
  memset(attributes, 0, sizeof *attributes);
  AllocationInfo info;
  if (!find_allocation(ptr, &info)) {
    attributes->type = cudaMemoryTypeUnregistered;  // pageable host memory (CUDA 11+)
    attributes->device = -2;
    return cudaSuccess;
  }
  attributes->device = 0;
  attributes->devicePointer = const_cast<void*>(ptr);
  if (info.kind == MemoryKind::kPinned) {
    attributes->type = cudaMemoryTypeHost;
    attributes->hostPointer = const_cast<void*>(ptr);
  } else {
    attributes->type = cudaMemoryTypeDevice;
  }
  return cudaSuccess;
}

}  // extern "C"
