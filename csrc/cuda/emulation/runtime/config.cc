// The emulated device's configuration, from the environment (see runtime.h for each variable).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

namespace nm_emu {
namespace rt {
namespace {

long env_long(const char* name, long fallback, long lo, long hi) {
  const char* v = getenv(name);
  if (v == nullptr || v[0] == '\0') return fallback;
  char* end = nullptr;
  const long n = strtol(v, &end, 10);
  if (end == v || *end != '\0' || n < lo || n > hi) {
    fprintf(stderr, "cuda emulation: ignoring %s='%s' (expected an integer in [%ld, %ld])\n", name, v, lo, hi);
    return fallback;
  }
  return n;
}

Config read_config() {
  Config c;
  c.devices = (int)env_long("NM_CUDA_EMU_DEVICES", c.devices, 0, 1);
  c.sm_count = (int)env_long("NM_CUDA_EMU_SM_COUNT", c.sm_count, 1, 1024);
  const long arch = env_long("NM_CUDA_EMU_ARCH", 90, 30, 120);
  c.cc_major = (int)(arch / 10);
  c.cc_minor = (int)(arch % 10);
  c.driver_version = (int)env_long("NM_CUDA_EMU_DRIVER", c.driver_version, 0, 99000);
  c.memory_pools = env_long("NM_CUDA_EMU_MEMORY_POOLS", 1, 0, 1) != 0;
  c.max_pitch = (size_t)env_long("NM_CUDA_EMU_MAX_PITCH", (long)c.max_pitch, 1, 2147483647L);
  c.total_memory = (size_t)env_long("NM_CUDA_EMU_MEMORY_BYTES", (long)c.total_memory, 1 << 20, 1L << 50);
  c.lazy = env_long("NM_CUDA_EMU_EAGER", 0, 0, 1) == 0;
  c.verbose = env_long("NM_CUDA_EMU_VERBOSE", 0, 0, 1) != 0;
  return c;
}

}  // namespace

const Config& config() {
  static const Config c = read_config();
  return c;
}

}  // namespace rt
}  // namespace nm_emu
