// The emulated device: an sm_90 part (compute capability, SM count, driver version and memory
// pool support configurable, runtime.h), versions, current device, attributes.
#include <stdio.h>
#include <string.h>

#include <map>
#include <mutex>

#include "runtime.h"
#include "stream.h"

namespace nm_emu {
namespace rt {
namespace {

thread_local int g_current_device = 0;

// What cudaGetDeviceCount says about the driver and the visible devices.
cudaError_t device_count(int* count) {
  const Config& c = config();
  *count = 0;
  // CUDA 13's runtime needs a driver of the same major version (minor-version compatibility).
  if (c.driver_version == 0 || c.driver_version / 1000 < kRuntimeVersion / 1000) {
    return cudaErrorInsufficientDriver;
  }
  if (c.devices == 0) return cudaErrorNoDevice;
  *count = c.devices;
  return cudaSuccess;
}

cudaError_t check_device(int device) {
  int count = 0;
  const cudaError_t err = device_count(&count);
  if (err != cudaSuccess) return err;
  return device >= 0 && device < count ? cudaSuccess : cudaErrorInvalidDevice;
}

}  // namespace

int current_device() { return g_current_device; }

}  // namespace rt
}  // namespace nm_emu

using namespace nm_emu::rt;

extern "C" {

cudaError_t cudaDriverGetVersion(int* driverVersion) {
  NM_EMU_RUNTIME_ENTRY("cudaDriverGetVersion");
  if (driverVersion == nullptr) return note(cudaErrorInvalidValue);
  *driverVersion = config().driver_version;
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* runtimeVersion) {
  NM_EMU_RUNTIME_ENTRY("cudaRuntimeGetVersion");
  if (runtimeVersion == nullptr) return note(cudaErrorInvalidValue);
  *runtimeVersion = kRuntimeVersion;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  NM_EMU_RUNTIME_ENTRY("cudaGetDeviceCount");
  if (count == nullptr) return note(cudaErrorInvalidValue);
  return note(device_count(count));
}

cudaError_t cudaSetDevice(int device) {
  NM_EMU_RUNTIME_ENTRY("cudaSetDevice");
  const cudaError_t err = check_device(device);
  if (err != cudaSuccess) return note(err);
  g_current_device = device;
  return check_context();
}

cudaError_t cudaGetDevice(int* device) {
  NM_EMU_RUNTIME_ENTRY("cudaGetDevice");
  if (device == nullptr) return note(cudaErrorInvalidValue);
  *device = g_current_device;
  return check_context();
}

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp* prop, int device) {
  NM_EMU_RUNTIME_ENTRY("cudaGetDeviceProperties");
  if (prop == nullptr) return note(cudaErrorInvalidValue);
  const cudaError_t err = check_device(device);
  if (err != cudaSuccess) return note(err);
  const Config& c = config();
  memset(prop, 0, sizeof *prop);
  snprintf(prop->name, sizeof prop->name, "Emulated sm_%d%d GPU (host emulation, %d SMs)", c.cc_major,
           c.cc_minor, c.sm_count);
  prop->totalGlobalMem = c.total_memory;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = 227 * 1024;
  prop->regsPerBlock = 65536;
  prop->warpSize = 32;
  prop->memPitch = c.max_pitch;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->major = c.cc_major;
  prop->minor = c.cc_minor;
  prop->multiProcessorCount = c.sm_count;
  prop->maxThreadsPerMultiProcessor = 2048;
  prop->memoryPoolsSupported = c.memory_pools ? 1 : 0;
  return check_context();
}

cudaError_t cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int device) {
  NM_EMU_RUNTIME_ENTRY("cudaDeviceGetAttribute");
  if (value == nullptr) return note(cudaErrorInvalidValue);
  const cudaError_t err = check_device(device);
  if (err != cudaSuccess) return note(err);
  const Config& c = config();
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
    case cudaDevAttrWarpSize: *value = 32; break;
    case cudaDevAttrMaxPitch: *value = (int)c.max_pitch; break;
    case cudaDevAttrMultiProcessorCount: *value = c.sm_count; break;
    case cudaDevAttrComputeCapabilityMajor: *value = c.cc_major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = c.cc_minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = 227 * 1024; break;
    case cudaDevAttrMemoryPoolsSupported: *value = c.memory_pools ? 1 : 0; break;
    default: return note(cudaErrorInvalidValue);
  }
  return check_context();
}

cudaError_t cudaDeviceSynchronize(void) {
  NM_EMU_RUNTIME_ENTRY("cudaDeviceSynchronize");
  synchronize_all();
  return check_context();
}

}  // extern "C"
