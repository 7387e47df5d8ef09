// Host emulation of the CUDA built-ins the module's kernels use, so g++ compiles and runs the
// real kernel code without a GPU: the whole module (the emulated newton_muon_cuda_emu.so, built
// by scripts/build-cuda-emu.sh, which force-includes this header into every source file) and the
// kernel harnesses next to this file. Kernels run on the launcher in launcher/: the blocks of a
// launch in parallel on a few OS threads, the threads of a block on fibers (block_scheduler.h).
//
// What kernel code sees here:
//   - threadIdx / blockIdx / blockDim / gridDim (thread-local, set by the launcher);
//   - __syncthreads (and _or / _count), __syncwarp: real barriers (fibers park until
//     every thread that has not exited arrives);
//   - __shfl_sync / _xor / _down / _up: a two-slot exchange through a warp barrier. Full masks
//     and width 32 only, every live lane of the warp taking part, as the kernels here do (any
//     other use fails the launch); a source lane that did not take part reads as all-ones bits;
//   - shared memory: kernel_compat.cuh's NM_SHARED_* declarations get one buffer per
//     declaration per block (site_shared), the dynamic area comes from dynamic_shared_memory();
//     both start as 0xff bytes (NaN in f32 / bf16 / f64), so unwritten reads show up;
//   - the round-to-nearest intrinsics (__fadd_rn ...), __float2bfloat16_rn / __bfloat162float,
//     float4, int min / max; math.h functions are glibc's (not CUDA's: see docs/GPU.md).
// Device code runs on other threads than the host code that launched it, as on a GPU.
//
// The harnesses call nm_emu::launch(kernel, grid, block, smem, args...) (synchronous); the module
// launches through NM_CUDA_LAUNCH (kernel_compat.cuh), which enqueues on an emulated stream.
#ifndef NM_CUDA_HOST_SHIM_H
#define NM_CUDA_HOST_SHIM_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <tuple>
#include <type_traits>

#include "launcher/kernel_launch.h"

#ifndef NM_CUDA_EMULATION
#define NM_CUDA_EMULATION 1
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

struct __attribute__((aligned(16))) float4 {
  float x, y, z, w;
};

// Device-side int min / max (CUDA declares them for device code; host code has std::min).
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }

// Round-to-nearest f32 arithmetic, never contracted into an FMA (the emulation is compiled with
// -ffp-contract=off; these are separate operations anyway).
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return sqrtf(a); }
// A single-rounding fused multiply-add (glibc's fmaf is correctly rounded, with or without -mfma).
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __int2float_rn(int v) { return (float)v; }
inline float __int_as_float(int bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
inline int __float_as_int(float f) {
  int bits;
  memcpy(&bits, &f, sizeof bits);
  return bits;
}

// __nv_bfloat16: 16 bits, round-to-nearest-even from float (NaN stays a quiet NaN), the rule of
// cuda_bf16.h's __float2bfloat16_rn.
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

// ---- services of the block scheduler (launcher/device_services.cc) ---------------------------
unsigned sync_block(unsigned pred);  // returns how many threads passed pred != 0
void sync_warp();
uint64_t exchange(uint64_t bits, unsigned src_lane);
unsigned char* shared_site_bytes(const void* site, size_t bytes);
unsigned char* dynamic_shared_memory();
// Inside a kernel: fails the launch with `what`. Outside of one: prints it and aborts.
[[noreturn]] void fail(const char* what);

inline unsigned linear_thread_id() {
  return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
}
inline unsigned lane_id() { return linear_thread_id() & 31u; }
inline void warp_barrier() { sync_warp(); }

// The block's shared variable declared at `site` (a static object unique to the declaration, see
// kernel_compat.cuh): n elements of T, 16-byte aligned, 0xff-filled when the block first reaches
// it. One per declaration per block, however often the declaring function runs.
template <typename T>
T* site_shared(const void* site, size_t n) {
  static_assert(alignof(T) <= 16, "shared declarations are aligned to 16 bytes");
  return reinterpret_cast<T*>(shared_site_bytes(site, n * sizeof(T)));
}

// ---- launching (harnesses): runs the whole grid before returning; aborts on a failed launch ---
template <typename Kernel, typename Tuple>
struct BoundKernel {
  Kernel kernel;
  Tuple args;
  static void invoke(const void* self) {
    const BoundKernel* b = static_cast<const BoundKernel*>(self);
    std::apply(b->kernel, b->args);
  }
};

// Arguments are converted to the kernel's parameter types once, as a launch copies them to the
// device, and every CUDA thread gets its own copy of them.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes, Args... args) {
  typedef std::tuple<std::decay_t<Params>...> Tuple;
  const BoundKernel<void (*)(Params...), Tuple> bound{kernel, Tuple(args...)};
  KernelLaunch l;
  l.name = "(harness kernel)";
  l.invoke = &BoundKernel<void (*)(Params...), Tuple>::invoke;
  l.args = &bound;
  l.grid = grid;
  l.block = block;
  l.dynamic_smem = smem_bytes;
  if (const char* bad = check_launch_config(grid, block)) {
    fprintf(stderr, "cuda emulation: invalid launch configuration: %s\n", bad);
    abort();
  }
  const LaunchOutcome outcome = run_grid(l);
  if (outcome.kind != LaunchOutcome::kOk) {
    fprintf(stderr, "cuda emulation: launch failed: %s\n", outcome.message.c_str());
    abort();
  }
}

template <typename T>
T warp_exchange(unsigned mask, T value, unsigned src, int width) {
  static_assert(sizeof(T) <= sizeof(uint64_t), "shuffles move at most 8 bytes");
  if (mask != 0xffffffffu) fail("warp shuffle with a partial mask is not emulated");
  if (width != 32) fail("warp shuffle with width != 32 is not emulated");
  uint64_t bits = 0;
  memcpy(&bits, &value, sizeof value);
  bits = exchange(bits, src);
  T got;
  memcpy(&got, &bits, sizeof got);
  return got;
}

}  // namespace nm_emu

inline void __syncthreads() { nm_emu::sync_block(0); }
inline int __syncthreads_count(int pred) { return (int)nm_emu::sync_block(pred != 0); }
inline int __syncthreads_or(int pred) { return nm_emu::sync_block(pred != 0) != 0; }

// Every kernel here syncs whole warps; a partial mask would need a different emulation.
inline void __syncwarp(unsigned mask = 0xffffffffu) {
  if (mask != 0xffffffffu) nm_emu::fail("__syncwarp with a partial mask is not emulated");
  nm_emu::sync_warp();
}

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
  return nm_emu::warp_exchange(mask, value, src < 32 ? src : nm_emu::lane_id(), width);
}

template <typename T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  const unsigned lane = nm_emu::lane_id();
  return nm_emu::warp_exchange(mask, value, lane >= delta ? lane - delta : lane, width);
}

#endif  // NM_CUDA_HOST_SHIM_H
