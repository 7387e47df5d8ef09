// What the addon shows about the emulated module: nm_cuda_emulation_info() is exported next to
// nm_cuda_backend_ops (only by newton_muon_cuda_emu.so), and the addon adds its fields to the
// device's details in devices() (csrc/napi/device_registry.cc).
#include <stdio.h>

#include "../launcher/kernel_launch.h"
#include "runtime.h"

// JSON object members without the braces, spliced into the describe() object.
extern "C" __attribute__((visibility("default"))) const char* nm_cuda_emulation_info(void) {
  static char info[512];
  const nm_emu::rt::Config& c = nm_emu::rt::config();
  snprintf(info, sizeof info,
           "\"emulated\":true,\"emulation\":\"host emulation (g++, no GPU): kernels on fibers over %u "
           "threads, %s streams, cuBLAS/cuSOLVER on OpenBLAS; not a GPU result\"",
           nm_emu::launcher_threads(), c.lazy ? "lazy" : "eager");
  return info;
}
