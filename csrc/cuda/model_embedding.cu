// Token embedding on the GPU: the gather forward and a deterministic backward.
//
// Forward: one block per row (grid-stride over rows), threads over the channels, float4 loads and
// stores when the rows allow it.
//
// Backward (deterministic, no float atomics):
//   1. positions 0..n-1 are sorted by id with CUB's stable LSD radix sort (keys = ids, values =
//      positions), so within one id the positions stay in increasing order;
//   2. every run of equal ids (a "head" j starts one) is summed by one thread per channel: the
//      run's end is found by binary search, then dout[pos, ch] is added in double in run order
//      (increasing position), and the sum is added to dwte[id, ch] with one f32 rounding.
// Each (row, channel) of dwte is written by exactly one thread and the order of every sum is
// fixed by the data, so the bits are the same on every run and every GPU, and they equal the
// CPU backend's (csrc/cpu/model_embedding.cc sums in double in the same order). Rows of dwte
// that no id hits are not touched. The sort's scratch (keys, positions and CUB's temporary
// storage) is stream-ordered scratch from the backend's pool, released at the end of the call.
//
// Cost: the sort is a few passes over n 8-byte pairs (16 key bits for GPT-2's vocab); the
// reduction reads dout once. A very frequent token makes one long run, summed sequentially per
// channel (unrolled so its loads overlap); for GPT-2 batches the longest runs are a few percent
// of n, well under the cost of the surrounding GEMMs.
#include <cub/cub.cuh>
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "context.h"
#include "dtypes.cuh"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

// Rows processed concurrently by the row kernels (a grid-stride loop covers the rest).
constexpr int64_t kMaxRowBlocks = int64_t{1} << 20;
// Channels per block of the backward reduction.
constexpr int kReduceThreads = 128;

// out[i, :] = wte[ids[i], :]; V is float or float4 and `width` is c in units of V. A negative id
// (a caller bug; the op is not given vocab, so a too-large one cannot be seen) gives a NaN row.
template <typename V>
__global__ void embedding_forward_kernel(V* out, const V* wte, const int32_t* ids, int64_t n,
                                         int64_t width) {
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    const int32_t id = ids[i];
    V* dst = out + i * width;
    if (id < 0) {
      const float nan = __int_as_float(0x7fc00000);
      V v;
      float* f = reinterpret_cast<float*>(&v);
      for (int k = 0; k < (int)(sizeof(V) / sizeof(float)); k++) f[k] = nan;
      for (int64_t j = threadIdx.x; j < width; j += blockDim.x) dst[j] = v;
      continue;
    }
    const V* src = wte + (int64_t)id * width;
    for (int64_t j = threadIdx.x; j < width; j += blockDim.x) dst[j] = src[j];
  }
}

__global__ void iota_kernel(int32_t* positions, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) positions[i] = (int32_t)i;
}

// First index k in [lo, hi) with keys[k] != key, given keys[lo] == key and keys sorted on their
// low key bits (runs of equal keys are contiguous). Returns hi if the run reaches the end.
__device__ __forceinline__ int64_t run_end(const uint32_t* keys, int64_t lo, int64_t hi,
                                           uint32_t key) {
  // Invariant: keys[lo] == key; the answer is in (lo, hi].
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] == key) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return hi;
}

// grid.x strides over the sorted index j, grid.y over channel chunks of blockDim.x. A block whose
// j starts a run (uniform across the block) sums that run for its channels.
__global__ void embedding_reduce_kernel(float* dwte, const float* dout, const uint32_t* keys,
                                        const int32_t* positions, int64_t n, int64_t c,
                                        uint32_t vocab) {
  const int64_t ch = (int64_t)blockIdx.y * blockDim.x + threadIdx.x;
  for (int64_t j = blockIdx.x; j < n; j += gridDim.x) {
    const uint32_t key = keys[j];
    if (key >= vocab) continue;                        // out of range (a caller bug): skipped
    if (j > 0 && keys[j - 1] == key) continue;         // not the start of a run
    if (ch >= c) continue;
    const int64_t end = run_end(keys, j, n, key);
    double acc = 0.0;
    int64_t k = j;
    // Four loads in flight per step; the adds stay in increasing k.
    for (; k + 4 <= end; k += 4) {
      const float a = dout[(int64_t)positions[k] * c + ch];
      const float b = dout[(int64_t)positions[k + 1] * c + ch];
      const float d = dout[(int64_t)positions[k + 2] * c + ch];
      const float e = dout[(int64_t)positions[k + 3] * c + ch];
      acc += (double)a;
      acc += (double)b;
      acc += (double)d;
      acc += (double)e;
    }
    for (; k < end; k++) acc += (double)dout[(int64_t)positions[k] * c + ch];
    float* dst = dwte + (int64_t)key * c + ch;
    *dst = (float)((double)*dst + acc);
  }
}

// Key bits the radix sort must look at so that ids in [0, vocab) are fully ordered.
int key_bits(int64_t vocab) {
  int bits = 1;
  while (bits < 32 && (int64_t{1} << bits) < vocab) bits++;
  return bits;
}

unsigned int row_blocks(int64_t n) {
  return (unsigned int)(n < kMaxRowBlocks ? n : kMaxRowBlocks);
}

}  // namespace

nm_status embedding_forward(nm_backend* be, void* out_f32, const void* wte_f32,
                            const void* ids_i32, int64_t n, int64_t c) {
  static const char* const kOp = "embedding_forward";
  NM_TRY(enter(be, kOp));
  if (n < 0 || c < 0) {
    return fail_invalid(kOp, "n and c must be >= 0, got %lld and %lld", (long long)n,
                        (long long)c);
  }
  if (c > 0 && n > INT64_MAX / 4 / c) return fail_invalid(kOp, "n * c overflows");
  if (n == 0 || c == 0) return NM_OK;
  NM_TRY(check_ptr(kOp, "out", out_f32, n));
  NM_TRY(check_ptr(kOp, "wte", wte_f32, n));
  NM_TRY(check_ptr(kOp, "ids", ids_i32, n));
  const int32_t* ids = static_cast<const int32_t*>(ids_i32);
  const bool vec4 = c % 4 == 0 && reinterpret_cast<uintptr_t>(out_f32) % 16 == 0 &&
                    reinterpret_cast<uintptr_t>(wte_f32) % 16 == 0;
  const int64_t width = vec4 ? c / 4 : c;
  const int threads = width >= 256 ? 256 : (int)((width + 31) / 32 * 32);
  if (vec4) {
    NM_CUDA_LAUNCH(row_blocks(n), threads, 0, be->stream, embedding_forward_kernel<float4>)(
        static_cast<float4*>(out_f32), static_cast<const float4*>(wte_f32), ids, n, width);
  } else {
    NM_CUDA_LAUNCH(row_blocks(n), threads, 0, be->stream, embedding_forward_kernel<float>)(
        static_cast<float*>(out_f32), static_cast<const float*>(wte_f32), ids, n, width);
  }
  NM_CUDA_CHECK_LAUNCH(kOp, "embedding_forward_kernel");
  return NM_OK;
}

nm_status embedding_backward(nm_backend* be, void* dwte_f32, const void* dout_f32,
                             const void* ids_i32, int64_t n, int64_t c, int64_t vocab) {
  static const char* const kOp = "embedding_backward";
  NM_TRY(enter(be, kOp));
  if (n < 0 || c < 0 || vocab < 0) {
    return fail_invalid(kOp, "n, c and vocab must be >= 0, got %lld, %lld, %lld", (long long)n,
                        (long long)c, (long long)vocab);
  }
  if (n == 0 || c == 0) return NM_OK;  // nothing to add
  if (vocab < 1) return fail_invalid(kOp, "vocab must be >= 1 when there are ids");
  // The sort works on 32-bit keys and positions.
  if (n > INT32_MAX) return fail_invalid(kOp, "n (%lld) must be < 2^31", (long long)n);
  if (vocab > INT32_MAX) return fail_invalid(kOp, "vocab (%lld) must be < 2^31", (long long)vocab);
  if (c > (int64_t)65535 * kReduceThreads) {
    return fail_invalid(kOp, "c (%lld) is too large (at most %lld)", (long long)c,
                        (long long)65535 * kReduceThreads);
  }
  if (n > INT64_MAX / 4 / c || vocab > INT64_MAX / 4 / c) return fail_invalid(kOp, "size overflows");
  NM_TRY(check_ptr(kOp, "dwte", dwte_f32, n));
  NM_TRY(check_ptr(kOp, "dout", dout_f32, n));
  NM_TRY(check_ptr(kOp, "ids", ids_i32, n));

  // ids are in [0, vocab) (the caller checks), so as unsigned keys they sort the same.
  const uint32_t* keys_in = static_cast<const uint32_t*>(ids_i32);
  const int num_items = (int)n;
  const int end_bit = key_bits(vocab);

  size_t sort_bytes = 0;
  NM_CUDA_CHECK(kOp, cub::DeviceRadixSort::SortPairs(
                         nullptr, sort_bytes, keys_in, (uint32_t*)nullptr, (const int32_t*)nullptr,
                         (int32_t*)nullptr, num_items, 0, end_bit, be->stream));

  // One scratch block: sorted keys, positions, sorted positions, CUB's temporary storage.
  const size_t item_bytes = align256((size_t)n * sizeof(int32_t));
  Scratch scratch(be, kOp);
  NM_TRY(scratch.alloc(3 * item_bytes + align256(sort_bytes)));
  uint32_t* keys_sorted = reinterpret_cast<uint32_t*>(scratch.bytes());
  int32_t* positions = reinterpret_cast<int32_t*>(scratch.bytes() + item_bytes);
  int32_t* positions_sorted = reinterpret_cast<int32_t*>(scratch.bytes() + 2 * item_bytes);
  void* sort_temp = scratch.bytes() + 3 * item_bytes;

  NM_CUDA_LAUNCH(grid_blocks(be, n), kThreads, 0, be->stream, iota_kernel)(positions, n);
  NM_CUDA_CHECK_LAUNCH(kOp, "iota_kernel");
  NM_CUDA_CHECK(kOp, cub::DeviceRadixSort::SortPairs(sort_temp, sort_bytes, keys_in, keys_sorted,
                                                     positions, positions_sorted, num_items, 0,
                                                     end_bit, be->stream));

  const int64_t chunks = (c + kReduceThreads - 1) / kReduceThreads;
  const int64_t wanted_x = (int64_t)(be->sm_count > 0 ? be->sm_count : 1) * 64;
  const dim3 grid((unsigned int)(n < wanted_x ? n : wanted_x), (unsigned int)chunks);
  NM_CUDA_LAUNCH(grid, kReduceThreads, 0, be->stream, embedding_reduce_kernel)(
      static_cast<float*>(dwte_f32), static_cast<const float*>(dout_f32), keys_sorted,
      positions_sorted, n, c, (uint32_t)vocab);
  NM_CUDA_CHECK_LAUNCH(kOp, "embedding_reduce_kernel");
  return scratch.release();
}

}  // namespace nm_cuda
