// Host emulation of the CUDA built-ins the flash-bf16 kernels use, so g++ can compile and run
// the real kernel header (../attention_flash_bf16_kernels.cuh) without a GPU. Test-only code:
// it is built by test/attention-emulation.test.ts, never into the addon or the CUDA module.
//
// Model: a launch runs its blocks one after the other; each block runs blockDim.x std::threads
// (a multiple of 32), one per CUDA thread, that share
//   - the block's dynamic shared memory: a fresh buffer per block, filled with 0xff bytes (a NaN
//     in f32 and in bf16), so a read of shared memory nobody wrote shows up as NaN;
//   - a std::barrier for __syncthreads, and one std::barrier per warp of 32 threads for
//     __syncwarp (and for the warp-collective wmma calls, see wmma_shim.h).
// threadIdx / blockIdx / blockDim / gridDim are thread_local. A thread that returns drops out of
// its barriers (arrive_and_drop), as an exited CUDA thread no longer takes part in them.
// Real threads make missing synchronisation visible: a kernel that reads what another thread
// writes without a barrier in between races here too.
//
// __nv_bfloat16 is a 16-bit struct with round-to-nearest-even conversion from float (NaN stays
// NaN), the rule of cuda_bf16.h's __float2bfloat16_rn.
#ifndef NM_CUDA_HOST_SHIM_H
#define NM_CUDA_HOST_SHIM_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <barrier>
#include <memory>
#include <new>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local dim3 threadIdx{0, 0, 0};
inline thread_local dim3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};

struct __nv_bfloat16 {
  uint16_t bits;
};

inline __nv_bfloat16 __float2bfloat16_rn(float value) {
  uint32_t u;
  memcpy(&u, &value, sizeof u);
  __nv_bfloat16 h;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    h.bits = (uint16_t)((u >> 16) | 0x0040u);  // quiet NaN
  } else {
    h.bits = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
  return h;
}

inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t u = (uint32_t)h.bits << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

namespace nm_emu {

[[noreturn]] inline void fail(const char* what) {
  fprintf(stderr, "cuda emulation: %s (block %u, thread %u)\n", what, blockIdx.x, threadIdx.x);
  fflush(stderr);
  abort();
}

struct Block {
  explicit Block(unsigned threads, size_t smem_bytes)
      : block_barrier((ptrdiff_t)threads),
        smem(static_cast<unsigned char*>(::operator new(smem_bytes + 1, std::align_val_t(128)))) {
    memset(smem, 0xff, smem_bytes + 1);
    for (unsigned w = 0; w < threads / 32; w++) {
      warp_barriers.push_back(std::make_unique<std::barrier<>>(32));
    }
  }
  std::barrier<> block_barrier;
  std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
  ~Block() { ::operator delete(smem, std::align_val_t(128)); }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
  unsigned char* smem;  // 128-byte aligned, like CUDA's shared memory windows
};

inline thread_local Block* current_block = nullptr;

inline unsigned char* dynamic_shared_memory() { return current_block->smem; }

inline void warp_barrier() { current_block->warp_barriers[threadIdx.x / 32]->arrive_and_wait(); }

inline unsigned lane_id() { return threadIdx.x % 32; }

// Runs kernel(args...) over a 1-D grid of 1-D blocks; smem_bytes of dynamic shared memory per
// block. Arguments are copied into each thread, as a launch copies them to the device.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes, Args... args) {
  if (grid.y != 1 || grid.z != 1 || block.y != 1 || block.z != 1) fail("only 1-D launches");
  if (block.x == 0 || block.x % 32 != 0 || block.x > 1024) fail("blockDim.x must be 32k <= 1024");
  for (unsigned bx = 0; bx < grid.x; bx++) {
    Block ctx(block.x, smem_bytes);
    std::vector<std::thread> threads;
    threads.reserve(block.x);
    for (unsigned tx = 0; tx < block.x; tx++) {
      threads.emplace_back([&ctx, kernel, grid, block, bx, tx, args...]() {
        threadIdx = dim3(tx, 0, 0);
        blockIdx = dim3(bx, 0, 0);
        blockDim = block;
        gridDim = grid;
        current_block = &ctx;
        kernel(args...);
        ctx.warp_barriers[tx / 32]->arrive_and_drop();
        ctx.block_barrier.arrive_and_drop();
        current_block = nullptr;
      });
    }
    for (std::thread& th : threads) th.join();
  }
}

}  // namespace nm_emu

inline void __syncthreads() { nm_emu::current_block->block_barrier.arrive_and_wait(); }

// Every kernel here syncs whole warps; a partial mask would need a different emulation.
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) nm_emu::fail("__syncwarp with a partial mask is not emulated");
  nm_emu::warp_barrier();
}

#endif  // NM_CUDA_HOST_SHIM_H
