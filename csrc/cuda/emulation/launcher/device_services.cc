// The device-side calls of cuda_host_shim.h, forwarded to the block scheduler of this OS thread.
#include <stdio.h>
#include <stdlib.h>

#include "../cuda_host_shim.h"
#include "block_scheduler.h"

namespace nm_emu {
namespace {

BlockScheduler& scheduler() {
  BlockScheduler* s = current_scheduler();
  if (s == nullptr) {
    fprintf(stderr, "cuda emulation: a device-side call (barrier, shuffle, shared memory) outside of a kernel\n");
    abort();
  }
  return *s;
}

}  // namespace

unsigned sync_block(unsigned pred) { return scheduler().block_barrier(pred); }
void sync_warp() { scheduler().warp_barrier(); }
uint64_t exchange(uint64_t bits, unsigned src_lane) { return scheduler().warp_exchange(bits, src_lane); }
unsigned char* shared_site_bytes(const void* site, size_t bytes) {
  return scheduler().shared_site(site, bytes);
}
unsigned char* dynamic_shared_memory() { return scheduler().dynamic_smem(); }

void fail(const char* what) {
  if (BlockScheduler* s = current_scheduler()) s->device_error(what);
  fprintf(stderr, "cuda emulation: %s\n", what);
  fflush(stderr);
  abort();
}

}  // namespace nm_emu
