// The 'flash' attention kernels (NM_ATTN_FLASH): f32 causal attention for head dims 16, 32, 64.
// The host side (argument checks, grid sizes, launches) and the description of the algorithm
// are in model_attention_flash.cu.
//
// This header is compiled twice: by nvcc for the CUDA module, and by g++ for the host emulation
// (csrc/cuda/emulation/attention_flash_emulation.cc), which defines NM_CUDA_EMULATION and
// includes emulation/cuda_host_shim.h first. So the kernels keep to what that shim provides:
// __syncthreads, __shfl_xor_sync over whole warps, float4, __fmul_rn / __fsub_rn, int min,
// math.h functions, and shared arrays declared through kernel_compat.cuh's NM_SHARED_ARRAY /
// NM_SHARED_ARRAY_A16 (plain `__shared__` arrays under nvcc).
// `#pragma unroll` is ignored by g++ (the harness builds with -Wno-unknown-pragmas).
#ifndef NM_CUDA_ATTENTION_FLASH_KERNELS_CUH
#define NM_CUDA_ATTENTION_FLASH_KERNELS_CUH

#include <math.h>
#include <stdint.h>

#include "kernel_compat.cuh"

namespace nm_cuda {
namespace flash_f32 {

constexpr int kFwdRows = 64;      // query rows per forward block
constexpr int kFwdKeys = 32;      // keys per forward K/V tile
constexpr int kFwdThreads = 256;  // 4 threads per query row
constexpr int kBwdTile = 32;      // queries and keys per backward tile
constexpr int kBwdThreads = 128;  // 4 threads per row of a tile
constexpr float kLn2 = 0.6931471805599453f;

static_assert(kFwdThreads == 4 * kFwdRows, "4 threads per forward query row");
static_assert(kBwdThreads == 4 * kBwdTile, "4 threads per backward tile row");
static_assert(kFwdKeys % 4 == 0 && kBwdTile % 4 == 0, "tiles split over 4 threads");

__device__ __forceinline__ float dot4(const float4 a, const float4 b, float acc) {
  acc = fmaf(a.x, b.x, acc);
  acc = fmaf(a.y, b.y, acc);
  acc = fmaf(a.z, b.z, acc);
  return fmaf(a.w, b.w, acc);
}

// o[0..4) += p * v
__device__ __forceinline__ void axpy4(const float p, const float4 v, float* o) {
  o[0] = fmaf(p, v.x, o[0]);
  o[1] = fmaf(p, v.y, o[1]);
  o[2] = fmaf(p, v.z, o[2]);
  o[3] = fmaf(p, v.w, o[3]);
}

__device__ __forceinline__ float4 load4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}

// dst[r][0..HD) (row stride HD + 4 floats) = rows row0 + r of a global matrix whose rows are
// `stride` floats apart, for r < ROWS; rows at or past `limit` are zero. Consecutive threads read
// consecutive floats of a row (coalesced); all THREADS threads of the block take part.
template <int HD, int ROWS, int THREADS>
__device__ __forceinline__ void load_tile(float* dst, const float* src, int64_t stride, int row0,
                                          int limit) {
  for (int e = threadIdx.x; e < ROWS * HD; e += THREADS) {
    const int r = e / HD, d = e % HD;
    const int row = row0 + r;
    dst[r * (HD + 4) + d] = row < limit ? src[(int64_t)row * stride + d] : 0.0f;
  }
}

template <int HD>
__global__ void __launch_bounds__(kFwdThreads)
    flash_forward_kernel(float* out, float* lse, const float* qkv, int t, int heads,
                         float scale_log2, int q_tiles) {
  constexpr int kLd = HD + 4;        // shared row stride: float4-aligned, spreads the banks
  constexpr int kPsLd = kFwdKeys + 1;
  constexpr int kChunks = HD / 16;   // float4 chunks of the output row per thread
  NM_SHARED_ARRAY_A16(float, qs, kFwdRows * kLd);
  NM_SHARED_ARRAY_A16(float, ks, kFwdKeys * kLd);
  NM_SHARED_ARRAY_A16(float, vs, kFwdKeys * kLd);
  NM_SHARED_ARRAY(float, ps, kFwdRows * kPsLd);

  const int64_t bh = blockIdx.x / q_tiles;
  const int tile = q_tiles - 1 - (int)(blockIdx.x % q_tiles);  // longest rows first
  const int64_t b = bh / heads, h = bh % heads;
  const int64_t c = (int64_t)heads * HD;
  const int64_t row_stride = 3 * c;
  const float* q_base = qkv + b * t * row_stride + h * HD;  // k at +c, v at +2c
  const int q0 = tile * kFwdRows;
  const int r = threadIdx.x >> 2, g = threadIdx.x & 3;
  const int i = q0 + r;

  load_tile<HD, kFwdRows, kFwdThreads>(qs, q_base, row_stride, q0, t);

  float m = -INFINITY, l = 0.0f;
  float o[4 * kChunks];
#pragma unroll
  for (int e = 0; e < 4 * kChunks; e++) o[e] = 0.0f;

  const int key_end = min(t, q0 + kFwdRows);
  for (int k0 = 0; k0 < key_end; k0 += kFwdKeys) {
    __syncthreads();  // qs is complete; the previous tile's readers of ks, vs, ps are done
    load_tile<HD, kFwdKeys, kFwdThreads>(ks, q_base + c, row_stride, k0, t);
    load_tile<HD, kFwdKeys, kFwdThreads>(vs, q_base + 2 * c, row_stride, k0, t);
    __syncthreads();

    float s[kFwdKeys / 4];
#pragma unroll
    for (int k = 0; k < kFwdKeys / 4; k++) s[k] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < HD; d += 4) {
      const float4 qv = load4(&qs[r * kLd + d]);
#pragma unroll
      for (int k = 0; k < kFwdKeys / 4; k++) s[k] = dot4(qv, load4(&ks[(g + 4 * k) * kLd + d]), s[k]);
    }
    float tile_max = -INFINITY;
#pragma unroll
    for (int k = 0; k < kFwdKeys / 4; k++) {
      const int j = k0 + g + 4 * k;
      s[k] = (j <= i && j < t) ? s[k] * scale_log2 : -INFINITY;
      tile_max = fmaxf(tile_max, s[k]);
    }
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
    tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
    const float m_new = fmaxf(m, tile_max);  // finite: see the top of the file
    const float correction = exp2f(m - m_new);  // 0 on the first tile (m = -inf)
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < kFwdKeys / 4; k++) {
      const float p = exp2f(s[k] - m_new);
      ps[r * kPsLd + g + 4 * k] = p;
      sum += p;
    }
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    l = l * correction + sum;
#pragma unroll
    for (int e = 0; e < 4 * kChunks; e++) o[e] *= correction;
    m = m_new;
    __syncthreads();  // the tile's probabilities are in ps

#pragma unroll 4
    for (int cc = 0; cc < kFwdKeys; cc++) {
      const float p = ps[r * kPsLd + cc];
#pragma unroll
      for (int ch = 0; ch < kChunks; ch++) axpy4(p, load4(&vs[cc * kLd + 4 * (g + 4 * ch)]), &o[4 * ch]);
    }
  }

  if (i < t) {
    const float inv = 1.0f / l;
    float* dst = out + (b * t + i) * c + h * HD;
#pragma unroll
    for (int ch = 0; ch < kChunks; ch++) {
#pragma unroll
      for (int e = 0; e < 4; e++) dst[4 * (g + 4 * ch) + e] = o[4 * ch + e] * inv;
    }
    if (g == 0) lse[bh * t + i] = (m + log2f(l)) * kLn2;
  }
}

// p and ds of score (i, j), given the dot products s = q_i.k_j and dp = dout_i.v_j, the row's
// lse and delta, and whether (i, j) is inside the causal, in-range triangle. Shared by both
// backward kernels so they agree bit for bit.
__device__ __forceinline__ void p_and_ds(bool valid, float s, float dp, float scale, float lse,
                                         float delta, float* p, float* ds) {
  const float pv = valid ? expf(__fsub_rn(__fmul_rn(s, scale), lse)) : 0.0f;
  *p = pv;
  *ds = __fmul_rn(pv, __fsub_rn(dp, delta));
}

template <int HD>
__global__ void __launch_bounds__(kBwdThreads)
    flash_backward_kv_kernel(float* dqkv, const float* dout, const float* qkv, const float* lse,
                             const float* delta, int t, int heads, float scale, int tiles) {
  constexpr int kLd = HD + 4;
  constexpr int kTLd = kBwdTile + 1;
  constexpr int kChunks = HD / 16;
  NM_SHARED_ARRAY_A16(float, ks, kBwdTile * kLd);
  NM_SHARED_ARRAY_A16(float, vs, kBwdTile * kLd);
  NM_SHARED_ARRAY_A16(float, qs, kBwdTile * kLd);
  NM_SHARED_ARRAY_A16(float, dos, kBwdTile * kLd);
  NM_SHARED_ARRAY(float, pt, kBwdTile * kTLd);   // pt[c][r] = p(i0 + r, k0 + c)
  NM_SHARED_ARRAY(float, dst, kBwdTile * kTLd);  // dst[c][r] = ds(i0 + r, k0 + c)
  NM_SHARED_ARRAY(float, lse_s, kBwdTile);
  NM_SHARED_ARRAY(float, delta_s, kBwdTile);

  const int64_t bh = blockIdx.x / tiles;
  const int tile = (int)(blockIdx.x % tiles);  // early keys (most queries) first
  const int64_t b = bh / heads, h = bh % heads;
  const int64_t c = (int64_t)heads * HD;
  const int64_t row_stride = 3 * c;
  const float* q_base = qkv + b * t * row_stride + h * HD;
  const float* go_base = dout + b * t * c + h * HD;
  const float* lse_bh = lse + bh * t;
  const float* delta_bh = delta + bh * t;
  const int k0 = tile * kBwdTile;
  const int kc = threadIdx.x >> 2, g = threadIdx.x & 3;
  const int j = k0 + kc;

  load_tile<HD, kBwdTile, kBwdThreads>(ks, q_base + c, row_stride, k0, t);
  load_tile<HD, kBwdTile, kBwdThreads>(vs, q_base + 2 * c, row_stride, k0, t);

  float dk[4 * kChunks], dv[4 * kChunks];
#pragma unroll
  for (int e = 0; e < 4 * kChunks; e++) dk[e] = dv[e] = 0.0f;

  // Query tiles from the one holding query k0 (the diagonal) to the end.
  for (int i0 = (k0 / kBwdTile) * kBwdTile; i0 < t; i0 += kBwdTile) {
    __syncthreads();  // ks, vs are complete; the previous tile's readers are done
    load_tile<HD, kBwdTile, kBwdThreads>(qs, q_base, row_stride, i0, t);
    load_tile<HD, kBwdTile, kBwdThreads>(dos, go_base, c, i0, t);
    if (threadIdx.x < kBwdTile) {
      const int ii = i0 + threadIdx.x;
      lse_s[threadIdx.x] = ii < t ? lse_bh[ii] : 0.0f;
      delta_s[threadIdx.x] = ii < t ? delta_bh[ii] : 0.0f;
    }
    __syncthreads();

    float s[kBwdTile / 4], dp[kBwdTile / 4];
#pragma unroll
    for (int k = 0; k < kBwdTile / 4; k++) s[k] = dp[k] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < HD; d += 4) {
      const float4 kv = load4(&ks[kc * kLd + d]);
      const float4 vv = load4(&vs[kc * kLd + d]);
#pragma unroll
      for (int k = 0; k < kBwdTile / 4; k++) {
        const int rr = g + 4 * k;
        s[k] = dot4(load4(&qs[rr * kLd + d]), kv, s[k]);
        dp[k] = dot4(load4(&dos[rr * kLd + d]), vv, dp[k]);
      }
    }
#pragma unroll
    for (int k = 0; k < kBwdTile / 4; k++) {
      const int rr = g + 4 * k;
      const int i = i0 + rr;
      float p, ds;
      p_and_ds(j <= i && i < t && j < t, s[k], dp[k], scale, lse_s[rr], delta_s[rr], &p, &ds);
      pt[kc * kTLd + rr] = p;
      dst[kc * kTLd + rr] = ds;
    }
    __syncthreads();

#pragma unroll 4
    for (int rr = 0; rr < kBwdTile; rr++) {
      const float p = pt[kc * kTLd + rr];
      const float ds = dst[kc * kTLd + rr];
#pragma unroll
      for (int ch = 0; ch < kChunks; ch++) {
        const int col = 4 * (g + 4 * ch);
        axpy4(p, load4(&dos[rr * kLd + col]), &dv[4 * ch]);
        axpy4(ds, load4(&qs[rr * kLd + col]), &dk[4 * ch]);
      }
    }
  }

  if (j < t) {
    float* row = dqkv + (b * t + j) * row_stride + h * HD;
#pragma unroll
    for (int ch = 0; ch < kChunks; ch++) {
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int col = 4 * (g + 4 * ch) + e;
        row[c + col] = dk[4 * ch + e] * scale;
        row[2 * c + col] = dv[4 * ch + e];
      }
    }
  }
}

template <int HD>
__global__ void __launch_bounds__(kBwdThreads)
    flash_backward_q_kernel(float* dqkv, const float* dout, const float* qkv, const float* lse,
                            const float* delta, int t, int heads, float scale, int tiles) {
  constexpr int kLd = HD + 4;
  constexpr int kTLd = kBwdTile + 1;
  constexpr int kChunks = HD / 16;
  NM_SHARED_ARRAY_A16(float, qs, kBwdTile * kLd);
  NM_SHARED_ARRAY_A16(float, dos, kBwdTile * kLd);
  NM_SHARED_ARRAY_A16(float, ks, kBwdTile * kLd);
  NM_SHARED_ARRAY_A16(float, vs, kBwdTile * kLd);
  NM_SHARED_ARRAY(float, dss, kBwdTile * kTLd);  // dss[r][c] = ds(i0 + r, k0 + c)

  const int64_t bh = blockIdx.x / tiles;
  const int tile = tiles - 1 - (int)(blockIdx.x % tiles);  // longest rows first
  const int64_t b = bh / heads, h = bh % heads;
  const int64_t c = (int64_t)heads * HD;
  const int64_t row_stride = 3 * c;
  const float* q_base = qkv + b * t * row_stride + h * HD;
  const float* go_base = dout + b * t * c + h * HD;
  const int i0 = tile * kBwdTile;
  const int r = threadIdx.x >> 2, g = threadIdx.x & 3;
  const int i = i0 + r;
  const float row_lse = i < t ? lse[bh * t + i] : 0.0f;
  const float row_delta = i < t ? delta[bh * t + i] : 0.0f;

  load_tile<HD, kBwdTile, kBwdThreads>(qs, q_base, row_stride, i0, t);
  load_tile<HD, kBwdTile, kBwdThreads>(dos, go_base, c, i0, t);

  float dq[4 * kChunks];
#pragma unroll
  for (int e = 0; e < 4 * kChunks; e++) dq[e] = 0.0f;

  const int key_end = min(t, i0 + kBwdTile);
  for (int k0 = 0; k0 < key_end; k0 += kBwdTile) {
    __syncthreads();  // qs, dos are complete; the previous tile's readers are done
    load_tile<HD, kBwdTile, kBwdThreads>(ks, q_base + c, row_stride, k0, t);
    load_tile<HD, kBwdTile, kBwdThreads>(vs, q_base + 2 * c, row_stride, k0, t);
    __syncthreads();

    float s[kBwdTile / 4], dp[kBwdTile / 4];
#pragma unroll
    for (int k = 0; k < kBwdTile / 4; k++) s[k] = dp[k] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < HD; d += 4) {
      const float4 qv = load4(&qs[r * kLd + d]);
      const float4 gv = load4(&dos[r * kLd + d]);
#pragma unroll
      for (int k = 0; k < kBwdTile / 4; k++) {
        const int cc = g + 4 * k;
        s[k] = dot4(qv, load4(&ks[cc * kLd + d]), s[k]);
        dp[k] = dot4(gv, load4(&vs[cc * kLd + d]), dp[k]);
      }
    }
#pragma unroll
    for (int k = 0; k < kBwdTile / 4; k++) {
      const int cc = g + 4 * k;
      const int j = k0 + cc;
      float p, ds;
      p_and_ds(j <= i && i < t && j < t, s[k], dp[k], scale, row_lse, row_delta, &p, &ds);
      dss[r * kTLd + cc] = ds;
    }
    __syncthreads();

#pragma unroll 4
    for (int cc = 0; cc < kBwdTile; cc++) {
      const float ds = dss[r * kTLd + cc];
#pragma unroll
      for (int ch = 0; ch < kChunks; ch++) axpy4(ds, load4(&ks[cc * kLd + 4 * (g + 4 * ch)]), &dq[4 * ch]);
    }
  }

  if (i < t) {
    float* row = dqkv + (b * t + i) * row_stride + h * HD;
#pragma unroll
    for (int ch = 0; ch < kChunks; ch++) {
#pragma unroll
      for (int e = 0; e < 4; e++) row[4 * (g + 4 * ch) + e] = dq[4 * ch + e] * scale;
    }
  }
}

// delta_r = sum_d dout_rd * out_rd for the rows r = (b*H + h)*T + i of [B, T, H, D] tensors: the
// backward passes' delta (both the flash kernels above and the naive path read it). One warp per
// row, grid-stride over rows; the sum runs in double and is rounded to f32 once. static: the
// header is included by two translation units (flash and naive), each gets its own copy.
constexpr int kRowDotThreads = 256;

static __global__ void row_dot_kernel(float* delta, const float* dout, const float* out,
                                      int64_t rows, int64_t t, int64_t heads, int64_t head_dim) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_per_block = blockDim.x >> 5;
  const int64_t first = (int64_t)blockIdx.x * warps_per_block + (threadIdx.x >> 5);
  const int64_t step = (int64_t)gridDim.x * warps_per_block;
  const int64_t c = heads * head_dim;
  for (int64_t r = first; r < rows; r += step) {
    const int64_t bh = r / t, i = r - bh * t;
    const int64_t b = bh / heads, h = bh - b * heads;
    const int64_t at = (b * t + i) * c + h * head_dim;
    double acc = 0.0;
    for (int64_t d = lane; d < head_dim; d += 32) acc += (double)dout[at + d] * (double)out[at + d];
    for (int offset = 16; offset > 0; offset >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, offset);
    if (lane == 0) delta[r] = (float)acc;
  }
}

}  // namespace flash_f32
}  // namespace nm_cuda

#endif  // NM_CUDA_ATTENTION_FLASH_KERNELS_CUH
