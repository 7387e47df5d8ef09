// Host emulation of the CUDA built-ins the module's kernels use, so g++ can compile and run the
// real kernel headers (../attention_flash_bf16_kernels.cuh, ../attention_flash_kernels.cuh,
// ../model_norm_gelu_kernels.cuh, ../model_cross_entropy_kernels.cuh, ../model_rotary_kernels.cuh,
// ../optim_kernels.cuh) without a GPU. Test-only code: it is built by
// test/attention-emulation.test.ts and test/cuda-emulation.test.ts, never into the addon or the
// CUDA module.
//
// Model: a launch runs its blocks one after the other; each block runs blockDim.x std::threads
// (a multiple of 32), one per CUDA thread, that share
//   - the block's dynamic shared memory: a fresh buffer per block, filled with 0xff bytes (a NaN
//     in f32 and in bf16), so a read of shared memory nobody wrote shows up as NaN;
//   - a std::barrier for __syncthreads, and one std::barrier per warp of 32 threads for
//     __syncwarp (and for the warp-collective wmma calls, see wmma_shim.h);
//   - a static shared area of 48 KiB (CUDA's limit for static __shared__ memory), also 0xff
//     filled, from which site_shared hands out one 16-byte aligned buffer per declaration site
//     (kernels declare shared variables and arrays through csrc/cuda/kernel_compat.cuh's
//     NM_SHARED_VAR / NM_SHARED_ARRAY / NM_SHARED_ARRAY_A16, plain `__shared__` under nvcc), as
//     nvcc gives a `__shared__` declaration one copy per block, also in a device helper called
//     many times per kernel;
//   - a warp-shuffle exchange buffer of one 8-byte slot per thread: __shfl_*_sync writes the
//     caller's value to its slot, waits on the warp barrier, reads the source lane's slot and
//     waits again (so the next shuffle cannot overwrite a slot still being read). Full-warp
//     masks and width 32 only, and every lane of the warp must make the call, as the kernels
//     here do (a partial mask or width fails loudly).
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
#include <mutex>
#include <new>
#include <thread>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

struct __attribute__((aligned(16))) float4 {
  float x, y, z, w;
};

// Device-side int min / max (CUDA declares them for device code; host code has std::min).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

// Round-to-nearest f32 multiply / subtract, never contracted into an FMA (g++ on x86-64 does not
// contract without -mfma, and these are separate calls anyway).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
// A single-rounding fused multiply-add (glibc's fmaf is correctly rounded, with or without -mfma).
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __int_as_float(int bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

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

constexpr size_t kStaticSmemBytes = 48 * 1024;

struct Block {
  explicit Block(unsigned threads, size_t smem_bytes)
      : block_barrier((ptrdiff_t)threads),
        smem(static_cast<unsigned char*>(::operator new(smem_bytes + 1, std::align_val_t(128)))),
        static_smem(static_cast<unsigned char*>(
            ::operator new(kStaticSmemBytes, std::align_val_t(128)))),
        shfl_slots(threads, 0) {
    memset(smem, 0xff, smem_bytes + 1);
    memset(static_smem, 0xff, kStaticSmemBytes);
    for (unsigned w = 0; w < threads / 32; w++) {
      warp_barriers.push_back(std::make_unique<std::barrier<>>(32));
    }
  }
  std::barrier<> block_barrier;
  std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
  ~Block() {
    ::operator delete(smem, std::align_val_t(128));
    ::operator delete(static_smem, std::align_val_t(128));
  }
  Block(const Block&) = delete;
  Block& operator=(const Block&) = delete;
  unsigned char* smem;  // 128-byte aligned, like CUDA's shared memory windows
  unsigned char* static_smem;        // kStaticSmemBytes, 128-byte aligned
  std::vector<uint64_t> shfl_slots;  // one per thread, see __shfl_xor_sync
  // Per-declaration shared variables (site_shared): their place in static_smem by site.
  std::mutex site_mutex;
  std::vector<std::pair<const void*, unsigned char*>> sites;
  size_t static_used = 0;
};

inline thread_local Block* current_block = nullptr;
// The block's shared variable declared at `site` (the address of a static object unique to the
// declaration, see csrc/cuda/kernel_compat.cuh): n elements of T, 16-byte aligned, in the block's
// 0xff-filled static shared area, placed by the first thread of the block that reaches the
// declaration. Like a `__shared__` declaration under nvcc there is one per declaration per
// block, however often the declaring function is called (a device helper such as block_sum
// called once per row), and all of them together must fit in 48 KiB.
template <typename T>
T* site_shared(const void* site, size_t n) {
  static_assert(alignof(T) <= 16, "site_shared aligns to 16 bytes");
  Block* b = current_block;
  std::lock_guard<std::mutex> lock(b->site_mutex);
  for (auto& entry : b->sites) {
    if (entry.first == site) return reinterpret_cast<T*>(entry.second);
  }
  const size_t at = (b->static_used + 15) & ~(size_t)15;
  if (at + n * sizeof(T) > kStaticSmemBytes) fail("static shared memory over 48 KiB");
  b->static_used = at + n * sizeof(T);
  unsigned char* p = b->static_smem + at;
  b->sites.emplace_back(site, p);
  return reinterpret_cast<T*>(p);
}

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

namespace nm_emu {

// The value `value` of lane `src` of the calling warp (src in 0..31), every lane taking part.
template <typename T>
T warp_exchange(unsigned mask, T value, unsigned src, int width) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffles move at most 8 bytes");
  if (mask != 0xffffffffu) fail("warp shuffle with a partial mask is not emulated");
  if (width != 32) fail("warp shuffle with width != 32 is not emulated");
  std::vector<uint64_t>& slots = current_block->shfl_slots;
  const unsigned base = threadIdx.x & ~31u;
  uint64_t bits = 0;
  memcpy(&bits, &value, sizeof value);
  slots[threadIdx.x] = bits;
  warp_barrier();  // every lane's value is in its slot
  T got;
  memcpy(&got, &slots[base + (src & 31u)], sizeof got);
  warp_barrier();  // every lane has read before any slot is written again
  return got;
}

}  // namespace nm_emu

template <typename T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  return nm_emu::warp_exchange(mask, value, nm_emu::lane_id() ^ (unsigned)lane_mask, width);
}

template <typename T>
T __shfl_sync(unsigned mask, T value, int src_lane, int width = 32) {
  return nm_emu::warp_exchange(mask, value, (unsigned)src_lane, width);
}

template <typename T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  const unsigned src = nm_emu::lane_id() + delta;
  const T got = nm_emu::warp_exchange(mask, value, src < 32 ? src : nm_emu::lane_id(), width);
  return got;
}

template <typename T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  const unsigned lane = nm_emu::lane_id();
  return nm_emu::warp_exchange(mask, value, lane >= delta ? lane - delta : lane, width);
}

#endif  // NM_CUDA_HOST_SHIM_H
