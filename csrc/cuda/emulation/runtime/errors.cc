// The emulated runtime's errors: names and descriptions (CUDA's wording), each host thread's
// last error, and the context's sticky error (see runtime.h).
#include <stdio.h>

#include <mutex>

#include "runtime.h"

namespace nm_emu {
namespace rt {
namespace {

thread_local cudaError_t g_last_error = cudaSuccess;
std::atomic<int> g_sticky{cudaSuccess};

struct ErrorText {
  cudaError_t error;
  const char* name;
  const char* description;
};

const ErrorText kErrors[] = {
    {cudaSuccess, "cudaSuccess", "no error"},
    {cudaErrorInvalidValue, "cudaErrorInvalidValue", "invalid argument"},
    {cudaErrorMemoryAllocation, "cudaErrorMemoryAllocation", "out of memory"},
    {cudaErrorInitializationError, "cudaErrorInitializationError", "initialization error"},
    {cudaErrorCudartUnloading, "cudaErrorCudartUnloading", "driver shutting down"},
    {cudaErrorInvalidConfiguration, "cudaErrorInvalidConfiguration", "invalid configuration argument"},
    {cudaErrorInvalidPitchValue, "cudaErrorInvalidPitchValue", "invalid pitch argument"},
    {cudaErrorInvalidSymbol, "cudaErrorInvalidSymbol", "invalid device symbol"},
    {cudaErrorInvalidDevicePointer, "cudaErrorInvalidDevicePointer", "invalid device pointer"},
    {cudaErrorInvalidMemcpyDirection, "cudaErrorInvalidMemcpyDirection", "invalid copy direction for memcpy"},
    {cudaErrorStubLibrary, "cudaErrorStubLibrary", "CUDA driver is a stub library"},
    {cudaErrorInsufficientDriver, "cudaErrorInsufficientDriver",
     "CUDA driver version is insufficient for CUDA runtime version"},
    {cudaErrorCallRequiresNewerDriver, "cudaErrorCallRequiresNewerDriver",
     "API call is not supported in the installed CUDA driver"},
    {cudaErrorDevicesUnavailable, "cudaErrorDevicesUnavailable", "CUDA-capable device(s) is/are busy or unavailable"},
    {cudaErrorInvalidDeviceFunction, "cudaErrorInvalidDeviceFunction", "invalid device function"},
    {cudaErrorNoDevice, "cudaErrorNoDevice", "no CUDA-capable device is detected"},
    {cudaErrorInvalidDevice, "cudaErrorInvalidDevice", "invalid device ordinal"},
    {cudaErrorNoKernelImageForDevice, "cudaErrorNoKernelImageForDevice",
     "no kernel image is available for execution on the device"},
    {cudaErrorInvalidPtx, "cudaErrorInvalidPtx", "a PTX JIT compilation failed"},
    {cudaErrorUnsupportedPtxVersion, "cudaErrorUnsupportedPtxVersion",
     "the provided PTX was compiled with an unsupported toolchain."},
    {cudaErrorInvalidResourceHandle, "cudaErrorInvalidResourceHandle", "invalid resource handle"},
    {cudaErrorIllegalState, "cudaErrorIllegalState", "the operation cannot be performed in the present state"},
    {cudaErrorNotReady, "cudaErrorNotReady", "device not ready"},
    {cudaErrorIllegalAddress, "cudaErrorIllegalAddress", "an illegal memory access was encountered"},
    {cudaErrorLaunchOutOfResources, "cudaErrorLaunchOutOfResources", "too many resources requested for launch"},
    {cudaErrorLaunchTimeout, "cudaErrorLaunchTimeout", "the launch timed out and was terminated"},
    {cudaErrorContextIsDestroyed, "cudaErrorContextIsDestroyed", "context is destroyed"},
    {cudaErrorAssert, "cudaErrorAssert", "device-side assert triggered"},
    {cudaErrorHardwareStackError, "cudaErrorHardwareStackError", "hardware stack error"},
    {cudaErrorIllegalInstruction, "cudaErrorIllegalInstruction", "an illegal instruction was encountered"},
    {cudaErrorMisalignedAddress, "cudaErrorMisalignedAddress", "misaligned address"},
    {cudaErrorLaunchFailure, "cudaErrorLaunchFailure", "unspecified launch failure"},
    {cudaErrorNotSupported, "cudaErrorNotSupported", "operation not supported"},
    {cudaErrorSystemDriverMismatch, "cudaErrorSystemDriverMismatch",
     "system has unsupported display driver / cuda driver combination"},
    {cudaErrorCompatNotSupportedOnDevice, "cudaErrorCompatNotSupportedOnDevice",
     "forward compatibility was attempted on non supported HW"},
    {cudaErrorStreamCaptureUnsupported, "cudaErrorStreamCaptureUnsupported",
     "operation not permitted when stream is capturing"},
    {cudaErrorUnknown, "cudaErrorUnknown", "unknown error"},
};

const ErrorText* find(cudaError_t error) {
  for (const ErrorText& e : kErrors) {
    if (e.error == error) return &e;
  }
  return nullptr;
}

}  // namespace

cudaError_t sticky_error() { return (cudaError_t)g_sticky.load(std::memory_order_acquire); }

void set_sticky_error(cudaError_t err, const std::string& detail) {
  int expected = cudaSuccess;
  if (!g_sticky.compare_exchange_strong(expected, (int)err)) return;
  const ErrorText* text = find(err);
  fprintf(stderr, "cuda emulation: sticky error %s (%s): %s\n", text ? text->name : "?",
          text ? text->description : "?", detail.c_str());
  fflush(stderr);
}

cudaError_t note(cudaError_t err) {
  if (err != cudaSuccess) {
    g_last_error = err;
    if (config().verbose) {
      const ErrorText* text = find(err);
      fprintf(stderr, "cuda emulation: a call returns %s\n", text ? text->name : "?");
    }
  }
  return err;
}

cudaError_t check_context() {
  const cudaError_t sticky = sticky_error();
  return sticky == cudaSuccess ? cudaSuccess : note(sticky);
}

}  // namespace rt
}  // namespace nm_emu

using namespace nm_emu::rt;

extern "C" {

const char* cudaGetErrorName(cudaError_t error) {
  NM_EMU_ENTRY("cudaGetErrorName");
  (void)nm_emu_injected_;
  const ErrorText* text = find(error);
  return text ? text->name : "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  NM_EMU_ENTRY("cudaGetErrorString");
  (void)nm_emu_injected_;
  const ErrorText* text = find(error);
  return text ? text->description : "unrecognized error code";
}

cudaError_t cudaGetLastError(void) {
  NM_EMU_ENTRY("cudaGetLastError");
  if (nm_emu_injected_) return (cudaError_t)nm_emu_injected_;
  const cudaError_t sticky = sticky_error();
  if (sticky != cudaSuccess) return sticky;  // never cleared
  const cudaError_t err = g_last_error;
  g_last_error = cudaSuccess;
  return err;
}

cudaError_t cudaPeekAtLastError(void) {
  NM_EMU_ENTRY("cudaPeekAtLastError");
  if (nm_emu_injected_) return (cudaError_t)nm_emu_injected_;
  const cudaError_t sticky = sticky_error();
  return sticky != cudaSuccess ? sticky : g_last_error;
}

}  // extern "C"
