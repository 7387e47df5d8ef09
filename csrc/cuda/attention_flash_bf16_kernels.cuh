// The 'flash-bf16' attention kernels (NM_ATTN_FLASH_BF16): causal softmax attention for head dim
// 64 on the tensor cores through nvcuda::wmma (bf16 16x16x16 fragments, f32 accumulators).
// The host side (argument checks, scratch, launches) is model_attention_flash_bf16.cu.
//
// This header is compiled twice: by nvcc for the CUDA module, and by g++ for the host emulation
// (csrc/cuda/emulation/), which defines NM_CUDA_EMULATION and includes its shims of the CUDA
// built-ins and of wmma first. So the kernels keep to what the emulation provides: wmma's
// load_matrix_sync / store_matrix_sync / mma_sync / fill_fragment, element-wise operations on
// fragment elements applied uniformly to all of them (the register layout of a fragment is
// opaque), __syncthreads / __syncwarp, dynamic shared memory, no warp shuffles (a row's two lanes
// exchange partial results through shared memory instead), and math.h functions.
//
// ---- Semantics (the same on the CPU, csrc/cpu/model_attention_bf16.cc) ----------------------
// r(x) is f32 -> bf16 rounding to nearest even. Inputs and outputs are f32 in the layouts of
// core/backend.h; scale_log2 = f32(scale * log2(e)), s2_ij = (q^_i . k^_j) * scale_log2.
//   q^ = r(q), k^ = r(k), v^ = r(v), dO^ = r(dout)          (before any product)
// Forward, for the keys j <= i:
//   l_i   = sum_j 2^(s2_ij - M_i)                          (f32, unrounded terms)
//   out_i = (sum_j r(2^(s2_ij - M_i)) v^_j) / l_i           (P rounded before P.V)
//   lse_i = (M_i + log2(l_i)) * ln(2)                       (natural log, as the other algos)
// where M_i is an integer (the kernel's running maximum of ceil(s2) over the key tiles seen so
// far; the CPU takes ceil of the row maximum). Because M_i is an integer, r(2^(s2 - M)) * 2^M
// does not depend on which integer is used (bf16 rounding commutes with powers of two), and
// rescaling the running sums when M grows multiplies by an exact power of two: the rounded
// probabilities are r(e^{s_ij}) up to that power of two, whatever the tiling.
// Backward, with the forward's lse and out given:
//   delta_i = sum_d dO^_id * out_id                          (f64 sum, rounded to f32 once)
//   p_ij    = 2^(s2_ij - lse_i * log2(e))                    (the normalised probability, f32)
//   dp_ij   = dO^_i . v^_j ;  ds_ij = p_ij * (dp_ij - delta_i)          (f32)
//   dV_j = sum_i r(p_ij) dO^_i ;  dK_j = scale * sum_i r(ds_ij) q^_i ;  dQ_i = scale * sum_j r(ds_ij) k^_j
// Every product above has bf16 operands (exact in f32) and is accumulated in f32 by the tensor
// cores; the summation order inside a 16x16x16 mma is the hardware's, the order over fragments
// and tiles is fixed, and no float atomics are used: the results are deterministic.
//
// ---- Tiling ----------------------------------------------------------------------------------
// Every kernel but delta_kernel runs 128 threads (4 warps) per block, one block per (batch,
// head, tile of 64 rows); warp w owns rows 16w..16w+15 of the block's tile. Tiles are stored in
// shared memory as bf16 [rows][72] (64 + 8 padding elements: a 16-byte multiple, as wmma needs,
// that also spreads the rows over the banks). Per-warp scratch holds f32 score tiles that the
// warp's lanes read element-wise: lane L owns row L/2 of the warp's 16 rows and the columns of
// parity L%2; the two lanes of a row combine their partial maxima / sums through a 32-float
// exchange buffer.
//   forward_kernel:   64 query rows; K/V tiles of 64 keys up to the causal limit. Per tile:
//                     S = Q K^T (16 fragments of mma), lanes do the online softmax and write
//                     r(P) (bf16) over the score scratch, PV = r(P) V (16 mma), and the lanes
//                     update their 32 output values o = o * 2^(M_old - M_new) + PV.
//   delta_kernel:     one thread per (batch, head, query) row.
//   backward_kv_kernel: 64 keys; query tiles of 32 from the diagonal to T. dK and dV stay in
//                     accumulator fragments across the whole loop (no rescaling is needed).
//   backward_q_kernel:  64 queries; key tiles of 32 up to the causal limit; dQ in fragments.
// The mask is j <= i && j < T (and i < T in backward): rows past T are loaded as zeros, still
// see key 0, so their maxima stay finite, and are never stored.
#ifndef NM_CUDA_ATTENTION_FLASH_BF16_KERNELS_CUH
#define NM_CUDA_ATTENTION_FLASH_BF16_KERNELS_CUH

#include <math.h>
#include <stdint.h>

#ifdef NM_CUDA_EMULATION
#if !defined(NM_CUDA_HOST_SHIM_H) || !defined(NM_CUDA_WMMA_SHIM_H)
#error "the emulation includes emulation/cuda_host_shim.h and emulation/wmma_shim.h first"
#endif
#define NM_BF16_DYNAMIC_SMEM(name) unsigned char* name = nm_emu::dynamic_shared_memory()
#define NM_BF16_UNROLL
#else
#include <cuda_bf16.h>
#include <mma.h>
#define NM_BF16_DYNAMIC_SMEM(name) extern __shared__ __align__(128) unsigned char name[]
// Fragment arrays must stay in registers: every loop indexing one is unrolled.
#define NM_BF16_UNROLL _Pragma("unroll")
#endif

namespace nm_cuda {
namespace flash_bf16 {

namespace wmma = nvcuda::wmma;
typedef __nv_bfloat16 bf16;

constexpr int kHeadDim = 64;
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kWarpRows = 16;                   // a wmma tile's rows: the rows a warp owns
constexpr int kBlockRows = kWarps * kWarpRows;  // 64 rows (queries or keys) per block
constexpr int kFwdKeys = 64;                    // keys per forward K/V tile
constexpr int kBwdCols = 32;                    // queries (kv kernel) / keys (q kernel) per tile
constexpr int kDeltaThreads = 128;
constexpr int kLdH = kHeadDim + 8;  // bf16 [rows][64] tiles: row stride in elements
constexpr int kLdS = kHeadDim + 4;  // f32 [16][64] scratch: row stride (wmma: multiple of 4)
constexpr int kLdB = kBwdCols + 4;  // f32 [16][32] backward score scratch
constexpr int kLdP = kBwdCols + 8;  // bf16 [16][32] backward P / dS tiles
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

static_assert(kThreads == 128 && kBlockRows == 64, "the index math below assumes 4 warps");
static_assert(kFwdKeys == 64 && kBwdCols == 32, "lanes own 32 (forward) / 16 (backward) columns");

// ---- shared memory layouts (byte offsets into the dynamic shared memory) ---------------------
// Every offset is a multiple of 128 bytes (wmma wants 32-byte aligned fragment pointers).
constexpr int kTileBytes = kBlockRows * kLdH * 2;   // bf16 [64][72]: 9216
constexpr int kHalfTileBytes = kBwdCols * kLdH * 2; // bf16 [32][72]: 4608
constexpr int kXchBytes = 32 * 4;                   // a warp's exchange buffer

// forward: qs, ks, vs tiles, then per warp a f32 [16][68] scratch (also r(P) as bf16 [16][72])
// and an exchange buffer.
constexpr int kFwdWarpScratch = kWarpRows * kLdS * 4;  // 4352
constexpr int kFwdWarpBytes = kFwdWarpScratch + kXchBytes;
constexpr int kFwdQ = 0, kFwdK = kTileBytes, kFwdV = 2 * kTileBytes, kFwdWarps = 3 * kTileBytes;
constexpr int kFwdSmemBytes = kFwdWarps + kWarps * kFwdWarpBytes;

// backward_kv: qs, dos (32 queries), lse2 and delta of those queries, then per warp: S^T and
// dP^T f32 [16][36] (together also the f32 [16][68] staging of dK and dV at the end), r(P)^T and
// r(dS)^T bf16 [16][40]. The K / V staging tiles (bf16 [64][72] each) alias the per-warp area:
// they are read into fragments once, before the loop.
constexpr int kBwdScore = kWarpRows * kLdB * 4;  // 2304
constexpr int kBwdRounded = kWarpRows * kLdP * 2;  // 1280
constexpr int kKvWarpBytes = 2 * kBwdScore + 2 * kBwdRounded;  // 7168
constexpr int kKvQ = 0, kKvDo = kHalfTileBytes, kKvLse = 2 * kHalfTileBytes;
constexpr int kKvDelta = kKvLse + kBwdCols * 4, kKvWarps = kKvDelta + kBwdCols * 4;
constexpr int kKvSmemBytes = kKvWarps + kWarps * kKvWarpBytes;

// backward_q: ks, vs (32 keys), then per warp: S and dP f32 [16][36] (the dQ staging at the
// end), r(dS) bf16 [16][40]. The Q / dO staging tiles alias the per-warp area.
constexpr int kQWarpBytes = 2 * kBwdScore + kBwdRounded;  // 5888
constexpr int kQK = 0, kQV = kHalfTileBytes, kQWarps = 2 * kHalfTileBytes;
constexpr int kQSmemBytes = kQWarps + kWarps * kQWarpBytes;

static_assert(kWarpRows * kLdS * 4 <= 2 * kBwdScore, "the f32 [16][68] staging fits S + dP");
static_assert(2 * kTileBytes <= kWarps * kKvWarpBytes, "K/V staging fits the per-warp area");
static_assert(2 * kTileBytes <= kWarps * kQWarpBytes, "Q/dO staging fits the per-warp area");
static_assert(kFwdSmemBytes <= 48 * 1024 && kKvSmemBytes <= 48 * 1024 &&
                  kQSmemBytes <= 48 * 1024,
              "dynamic shared memory above 48 KiB would need cudaFuncSetAttribute");
static_assert(kFwdWarps % 128 == 0 && kFwdWarpBytes % 128 == 0 && kKvWarps % 128 == 0 &&
                  kKvWarpBytes % 128 == 0 && kQWarps % 128 == 0 && kQWarpBytes % 128 == 0 &&
                  kBwdScore % 128 == 0 && kHalfTileBytes % 128 == 0,
              "128-byte aligned sub-buffers");

// Grid of the three tiled kernels: one block per (batch, head, tile of 64 rows), block index
// (b * heads + h) * tiles + tile. Host code (the .cu and the emulation) sizes launches with it.
inline int64_t row_tiles(int64_t t) { return (t + kBlockRows - 1) / kBlockRows; }
// The scale of the scores in the log2 domain, formed in double and rounded to f32 once.
inline float scale_log2_of(float scale) { return (float)((double)scale * 1.4426950408889634); }

// ---- helpers ----------------------------------------------------------------------------------

// dst[r][0..64) (row stride kLdH) = r(src rows row0 + r), r < ROWS, `stride` floats between
// source rows; rows at or past `limit` are zero. Consecutive threads read consecutive floats.
template <int ROWS>
__device__ __forceinline__ void load_tile_bf16(bf16* dst, const float* src, int64_t stride,
                                               int row0, int limit) {
  for (int e = threadIdx.x; e < ROWS * kHeadDim; e += kThreads) {
    const int r = e / kHeadDim, d = e % kHeadDim;
    const int row = row0 + r;
    dst[r * kLdH + d] = __float2bfloat16_rn(row < limit ? src[(int64_t)row * stride + d] : 0.0f);
  }
}

// The maximum of v over the two lanes of a row (lane ^ 1), the same value on both.
__device__ __forceinline__ float pair_max(float* xch, int lane, float v) {
  xch[lane] = v;
  __syncwarp();
  const float other = xch[lane ^ 1];
  __syncwarp();  // both reads are done before the buffer is written again
  return fmaxf(v, other);
}

// The sum over the two lanes of a row, added in the same order on both (even lane's part first),
// so both get the same bits.
__device__ __forceinline__ float pair_sum(float* xch, int lane, float v) {
  xch[lane] = v;
  __syncwarp();
  const float other = xch[lane ^ 1];
  __syncwarp();
  return (lane & 1) ? other + v : v + other;
}

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> FragA;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> FragBRow;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> FragBCol;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> FragC;

// ---- forward ------------------------------------------------------------------------------------

// out [B, T, H, 64], lse [B, H, T] from qkv [B, T, 3, H, 64]; grid b*heads*q_tiles blocks.
__global__ void __launch_bounds__(kThreads)
    forward_kernel(float* out, float* lse, const float* qkv, int t, int heads, float scale_log2,
                   int q_tiles) {
  NM_BF16_DYNAMIC_SMEM(smem);
  bf16* qs = reinterpret_cast<bf16*>(smem + kFwdQ);
  bf16* ks = reinterpret_cast<bf16*>(smem + kFwdK);
  bf16* vs = reinterpret_cast<bf16*>(smem + kFwdV);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  unsigned char* mine = smem + kFwdWarps + warp * kFwdWarpBytes;
  float* sc = reinterpret_cast<float*>(mine);      // f32 [16][kLdS]: S, then P.V
  bf16* pb = reinterpret_cast<bf16*>(mine);        // bf16 [16][kLdH]: r(P), over S
  float* xch = reinterpret_cast<float*>(mine + kFwdWarpScratch);

  const int64_t bh = blockIdx.x / q_tiles;
  const int tile = q_tiles - 1 - (int)(blockIdx.x % q_tiles);  // longest rows first
  const int64_t b = bh / heads, h = bh % heads;
  const int64_t c = (int64_t)heads * kHeadDim;
  const int64_t row_stride = 3 * c;
  const float* q_base = qkv + b * t * row_stride + h * kHeadDim;  // k at +c, v at +2c
  const int q0 = tile * kBlockRows;
  const int r = lane >> 1, half = lane & 1;
  const int i = q0 + warp * kWarpRows + r;

  load_tile_bf16<kBlockRows>(qs, q_base, row_stride, q0, t);
  __syncthreads();
  FragA qf[4];
  NM_BF16_UNROLL
  for (int d = 0; d < 4; d++) {
    wmma::load_matrix_sync(qf[d], qs + warp * kWarpRows * kLdH + d * 16, kLdH);
  }

  float m = -INFINITY;  // integer valued once finite
  float l = 0.0f;
  float o[32];  // o[k] = unnormalised out_i[2k + half], scaled by 2^-m
  NM_BF16_UNROLL
  for (int k = 0; k < 32; k++) o[k] = 0.0f;

  const int key_end = t < q0 + kBlockRows ? t : q0 + kBlockRows;
  for (int k0 = 0; k0 < key_end; k0 += kFwdKeys) {
    __syncthreads();  // the previous tile's readers of ks and vs are done
    load_tile_bf16<kFwdKeys>(ks, q_base + c, row_stride, k0, t);
    load_tile_bf16<kFwdKeys>(vs, q_base + 2 * c, row_stride, k0, t);
    __syncthreads();

    // S = Q K^T for the warp's 16 rows: K stored [key][d] is K^T in column-major order.
    NM_BF16_UNROLL
    for (int n = 0; n < 4; n++) {
      FragC acc;
      wmma::fill_fragment(acc, 0.0f);
      NM_BF16_UNROLL
      for (int d = 0; d < 4; d++) {
        FragBCol kb;
        wmma::load_matrix_sync(kb, ks + n * 16 * kLdH + d * 16, kLdH);
        wmma::mma_sync(acc, qf[d], kb, acc);
      }
      wmma::store_matrix_sync(sc + n * 16, acc, kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    float s[32];
    float tile_max = -INFINITY;
    NM_BF16_UNROLL
    for (int k = 0; k < 32; k++) {
      const int col = 2 * k + half, j = k0 + col;
      s[k] = (j <= i && j < t) ? sc[r * kLdS + col] * scale_log2 : -INFINITY;
      tile_max = fmaxf(tile_max, s[k]);
    }
    tile_max = pair_max(xch, lane, tile_max);  // its __syncwarp also ends the reads of sc
    // Key tile 0 always holds key 0 <= i, so m is finite from the first tile on.
    const float m_new = fmaxf(m, ceilf(tile_max));
    const float correction = exp2f(m - m_new);  // an exact power of two; 0 on the first tile
    float sum = 0.0f;
    NM_BF16_UNROLL
    for (int k = 0; k < 32; k++) {
      const float e = exp2f(s[k] - m_new);  // 0 for masked keys
      sum += e;
      pb[r * kLdH + 2 * k + half] = __float2bfloat16_rn(e);
    }
    sum = pair_sum(xch, lane, sum);  // its first __syncwarp also publishes r(P)
    l = l * correction + sum;
    m = m_new;

    // PV = r(P) V: P [16 x 64 keys] row-major, V stored [key][d] row-major.
    FragA pf[4];
    NM_BF16_UNROLL
    for (int kc = 0; kc < 4; kc++) wmma::load_matrix_sync(pf[kc], pb + kc * 16, kLdH);
    __syncwarp();  // every lane holds r(P) before P.V overwrites the scratch
    NM_BF16_UNROLL
    for (int n = 0; n < 4; n++) {
      FragC acc;
      wmma::fill_fragment(acc, 0.0f);
      NM_BF16_UNROLL
      for (int kc = 0; kc < 4; kc++) {
        FragBRow vb;
        wmma::load_matrix_sync(vb, vs + kc * 16 * kLdH + n * 16, kLdH);
        wmma::mma_sync(acc, pf[kc], vb, acc);
      }
      wmma::store_matrix_sync(sc + n * 16, acc, kLdS, wmma::mem_row_major);
    }
    __syncwarp();
    NM_BF16_UNROLL
    for (int k = 0; k < 32; k++) o[k] = o[k] * correction + sc[r * kLdS + 2 * k + half];
    // The next tile's first __syncthreads orders these reads before sc is written again.
  }

  if (i < t) {
    const float inv = 1.0f / l;
    float* dst = out + (b * t + i) * c + h * kHeadDim;
    NM_BF16_UNROLL
    for (int k = 0; k < 32; k++) dst[2 * k + half] = o[k] * inv;
    if (half == 0) lse[bh * t + i] = (m + log2f(l)) * kLn2;
  }
}

// ---- backward -----------------------------------------------------------------------------------

// delta[(b*H + h)*T + i] = sum_d r(dout[b, i, h, d]) * out[b, i, h, d], in double, one thread
// per row; rows = B*H*T.
__global__ void __launch_bounds__(kDeltaThreads)
    delta_kernel(float* delta, const float* dout, const float* out, int64_t rows, int t,
                 int heads) {
  const int64_t row = (int64_t)blockIdx.x * kDeltaThreads + threadIdx.x;
  if (row >= rows) return;
  const int64_t bh = row / t, i = row % t;
  const int64_t b = bh / heads, h = bh % heads;
  const int64_t at = (b * t + i) * heads * kHeadDim + h * kHeadDim;
  double acc = 0.0;
  for (int d = 0; d < kHeadDim; d++) {
    acc += (double)__bfloat162float(__float2bfloat16_rn(dout[at + d])) * (double)out[at + d];
  }
  delta[row] = (float)acc;
}

// p and ds of one score, given s = q^.k^, dp = dO^.v^, the query's lse2 = lse*log2(e) and delta.
__device__ __forceinline__ void p_and_ds(bool valid, float s, float dp, float scale_log2,
                                         float lse2, float delta, float* p, float* ds) {
  const float pv = valid ? exp2f(s * scale_log2 - lse2) : 0.0f;
  *p = pv;
  *ds = pv * (dp - delta);
}

// dK and dV (columns [C, 3C) of dqkv) for one tile of 64 keys.
__global__ void __launch_bounds__(kThreads)
    backward_kv_kernel(float* dqkv, const float* dout, const float* qkv, const float* lse,
                       const float* delta, int t, int heads, float scale, float scale_log2,
                       int k_tiles) {
  NM_BF16_DYNAMIC_SMEM(smem);
  bf16* qs = reinterpret_cast<bf16*>(smem + kKvQ);
  bf16* dos = reinterpret_cast<bf16*>(smem + kKvDo);
  float* lse2_s = reinterpret_cast<float*>(smem + kKvLse);
  float* delta_s = reinterpret_cast<float*>(smem + kKvDelta);
  bf16* kstage = reinterpret_cast<bf16*>(smem + kKvWarps);  // aliases the per-warp area
  bf16* vstage = reinterpret_cast<bf16*>(smem + kKvWarps + kTileBytes);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  unsigned char* mine = smem + kKvWarps + warp * kKvWarpBytes;
  float* st = reinterpret_cast<float*>(mine);               // S^T  f32 [16][kLdB]
  float* dpt = reinterpret_cast<float*>(mine + kBwdScore);  // dP^T f32 [16][kLdB]
  float* stage = st;                                        // f32 [16][kLdS] at the end
  bf16* pt = reinterpret_cast<bf16*>(mine + 2 * kBwdScore);                // r(P)^T
  bf16* dst = reinterpret_cast<bf16*>(mine + 2 * kBwdScore + kBwdRounded);  // r(dS)^T

  const int64_t bh = blockIdx.x / k_tiles;
  const int tile = (int)(blockIdx.x % k_tiles);  // early keys (most queries) first
  const int64_t b = bh / heads, h = bh % heads;
  const int64_t c = (int64_t)heads * kHeadDim;
  const int64_t row_stride = 3 * c;
  const float* q_base = qkv + b * t * row_stride + h * kHeadDim;
  const float* go_base = dout + b * t * c + h * kHeadDim;
  const float* lse_bh = lse + bh * t;
  const float* delta_bh = delta + bh * t;
  const int k0 = tile * kBlockRows;
  const int r = lane >> 1, half = lane & 1;
  const int j = k0 + warp * kWarpRows + r;

  load_tile_bf16<kBlockRows>(kstage, q_base + c, row_stride, k0, t);
  load_tile_bf16<kBlockRows>(vstage, q_base + 2 * c, row_stride, k0, t);
  __syncthreads();
  FragA kf[4], vf[4];
  NM_BF16_UNROLL
  for (int d = 0; d < 4; d++) {
    wmma::load_matrix_sync(kf[d], kstage + warp * kWarpRows * kLdH + d * 16, kLdH);
    wmma::load_matrix_sync(vf[d], vstage + warp * kWarpRows * kLdH + d * 16, kLdH);
  }
  FragC dk[4], dv[4];
  NM_BF16_UNROLL
  for (int n = 0; n < 4; n++) {
    wmma::fill_fragment(dk[n], 0.0f);
    wmma::fill_fragment(dv[n], 0.0f);
  }

  // Query tiles from the diagonal (k0 is a multiple of 64, so of 32) to the end.
  for (int i0 = k0; i0 < t; i0 += kBwdCols) {
    __syncthreads();  // fragments are loaded / the previous tile's readers are done
    load_tile_bf16<kBwdCols>(qs, q_base, row_stride, i0, t);
    load_tile_bf16<kBwdCols>(dos, go_base, c, i0, t);
    if (threadIdx.x < kBwdCols) {
      const int ii = i0 + threadIdx.x;
      lse2_s[threadIdx.x] = ii < t ? lse_bh[ii] * kLog2e : 0.0f;
      delta_s[threadIdx.x] = ii < t ? delta_bh[ii] : 0.0f;
    }
    __syncthreads();

    // S^T = K Q^T and dP^T = V dO^T for the warp's 16 keys and the tile's 32 queries.
    NM_BF16_UNROLL
    for (int n = 0; n < 2; n++) {
      FragC sacc, dacc;
      wmma::fill_fragment(sacc, 0.0f);
      wmma::fill_fragment(dacc, 0.0f);
      NM_BF16_UNROLL
      for (int d = 0; d < 4; d++) {
        FragBCol qb, gb;
        wmma::load_matrix_sync(qb, qs + n * 16 * kLdH + d * 16, kLdH);
        wmma::mma_sync(sacc, kf[d], qb, sacc);
        wmma::load_matrix_sync(gb, dos + n * 16 * kLdH + d * 16, kLdH);
        wmma::mma_sync(dacc, vf[d], gb, dacc);
      }
      wmma::store_matrix_sync(st + n * 16, sacc, kLdB, wmma::mem_row_major);
      wmma::store_matrix_sync(dpt + n * 16, dacc, kLdB, wmma::mem_row_major);
    }
    __syncwarp();
    NM_BF16_UNROLL
    for (int k = 0; k < 16; k++) {
      const int col = 2 * k + half, ii = i0 + col;
      float p, ds;
      p_and_ds(j <= ii && ii < t && j < t, st[r * kLdB + col], dpt[r * kLdB + col], scale_log2,
               lse2_s[col], delta_s[col], &p, &ds);
      pt[r * kLdP + col] = __float2bfloat16_rn(p);
      dst[r * kLdP + col] = __float2bfloat16_rn(ds);
    }
    __syncwarp();

    // dV += r(P)^T dO^, dK += r(dS)^T Q^ over the tile's 32 queries (stored [query][d]).
    FragA pa[2], da[2];
    NM_BF16_UNROLL
    for (int kc = 0; kc < 2; kc++) {
      wmma::load_matrix_sync(pa[kc], pt + kc * 16, kLdP);
      wmma::load_matrix_sync(da[kc], dst + kc * 16, kLdP);
    }
    NM_BF16_UNROLL
    for (int n = 0; n < 4; n++) {
      NM_BF16_UNROLL
      for (int kc = 0; kc < 2; kc++) {
        FragBRow gb, qb;
        wmma::load_matrix_sync(gb, dos + kc * 16 * kLdH + n * 16, kLdH);
        wmma::mma_sync(dv[n], pa[kc], gb, dv[n]);
        wmma::load_matrix_sync(qb, qs + kc * 16 * kLdH + n * 16, kLdH);
        wmma::mma_sync(dk[n], da[kc], qb, dk[n]);
      }
    }
  }

  // Stage dK (times scale), then dV, through the scratch and write the rows j < T.
  NM_BF16_UNROLL
  for (int part = 0; part < 2; part++) {
    __syncwarp();  // the previous reads of the staging area are done
    NM_BF16_UNROLL
    for (int n = 0; n < 4; n++) {
      if (part == 0) {
        for (int e = 0; e < dk[n].num_elements; e++) dk[n].x[e] *= scale;
        wmma::store_matrix_sync(stage + n * 16, dk[n], kLdS, wmma::mem_row_major);
      } else {
        wmma::store_matrix_sync(stage + n * 16, dv[n], kLdS, wmma::mem_row_major);
      }
    }
    __syncwarp();
    if (j < t) {
      float* dst_row = dqkv + (b * t + j) * row_stride + (part == 0 ? c : 2 * c) + h * kHeadDim;
      NM_BF16_UNROLL
      for (int k = 0; k < 32; k++) dst_row[2 * k + half] = stage[r * kLdS + 2 * k + half];
    }
  }
}

// dQ (columns [0, C) of dqkv) for one tile of 64 queries.
__global__ void __launch_bounds__(kThreads)
    backward_q_kernel(float* dqkv, const float* dout, const float* qkv, const float* lse,
                      const float* delta, int t, int heads, float scale, float scale_log2,
                      int q_tiles) {
  NM_BF16_DYNAMIC_SMEM(smem);
  bf16* ks = reinterpret_cast<bf16*>(smem + kQK);
  bf16* vs = reinterpret_cast<bf16*>(smem + kQV);
  bf16* qstage = reinterpret_cast<bf16*>(smem + kQWarps);  // aliases the per-warp area
  bf16* gstage = reinterpret_cast<bf16*>(smem + kQWarps + kTileBytes);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  unsigned char* mine = smem + kQWarps + warp * kQWarpBytes;
  float* sf = reinterpret_cast<float*>(mine);               // S  f32 [16][kLdB]
  float* dpf = reinterpret_cast<float*>(mine + kBwdScore);  // dP f32 [16][kLdB]
  float* stage = sf;                                        // f32 [16][kLdS] at the end
  bf16* dsb = reinterpret_cast<bf16*>(mine + 2 * kBwdScore);  // r(dS) bf16 [16][kLdP]

  const int64_t bh = blockIdx.x / q_tiles;
  const int tile = q_tiles - 1 - (int)(blockIdx.x % q_tiles);  // longest rows first
  const int64_t b = bh / heads, h = bh % heads;
  const int64_t c = (int64_t)heads * kHeadDim;
  const int64_t row_stride = 3 * c;
  const float* q_base = qkv + b * t * row_stride + h * kHeadDim;
  const float* go_base = dout + b * t * c + h * kHeadDim;
  const int q0 = tile * kBlockRows;
  const int r = lane >> 1, half = lane & 1;
  const int i = q0 + warp * kWarpRows + r;
  const float row_lse2 = i < t ? lse[bh * t + i] * kLog2e : 0.0f;
  const float row_delta = i < t ? delta[bh * t + i] : 0.0f;

  load_tile_bf16<kBlockRows>(qstage, q_base, row_stride, q0, t);
  load_tile_bf16<kBlockRows>(gstage, go_base, c, q0, t);
  __syncthreads();
  FragA qf[4], gf[4];
  NM_BF16_UNROLL
  for (int d = 0; d < 4; d++) {
    wmma::load_matrix_sync(qf[d], qstage + warp * kWarpRows * kLdH + d * 16, kLdH);
    wmma::load_matrix_sync(gf[d], gstage + warp * kWarpRows * kLdH + d * 16, kLdH);
  }
  FragC dq[4];
  NM_BF16_UNROLL
  for (int n = 0; n < 4; n++) wmma::fill_fragment(dq[n], 0.0f);

  const int key_end = t < q0 + kBlockRows ? t : q0 + kBlockRows;
  for (int k0 = 0; k0 < key_end; k0 += kBwdCols) {
    __syncthreads();  // fragments are loaded / the previous tile's readers are done
    load_tile_bf16<kBwdCols>(ks, q_base + c, row_stride, k0, t);
    load_tile_bf16<kBwdCols>(vs, q_base + 2 * c, row_stride, k0, t);
    __syncthreads();

    // S = Q K^T and dP = dO V^T for the warp's 16 queries and the tile's 32 keys.
    NM_BF16_UNROLL
    for (int n = 0; n < 2; n++) {
      FragC sacc, dacc;
      wmma::fill_fragment(sacc, 0.0f);
      wmma::fill_fragment(dacc, 0.0f);
      NM_BF16_UNROLL
      for (int d = 0; d < 4; d++) {
        FragBCol kb, vb;
        wmma::load_matrix_sync(kb, ks + n * 16 * kLdH + d * 16, kLdH);
        wmma::mma_sync(sacc, qf[d], kb, sacc);
        wmma::load_matrix_sync(vb, vs + n * 16 * kLdH + d * 16, kLdH);
        wmma::mma_sync(dacc, gf[d], vb, dacc);
      }
      wmma::store_matrix_sync(sf + n * 16, sacc, kLdB, wmma::mem_row_major);
      wmma::store_matrix_sync(dpf + n * 16, dacc, kLdB, wmma::mem_row_major);
    }
    __syncwarp();
    NM_BF16_UNROLL
    for (int k = 0; k < 16; k++) {
      const int col = 2 * k + half, jj = k0 + col;
      float p, ds;
      p_and_ds(jj <= i && jj < t && i < t, sf[r * kLdB + col], dpf[r * kLdB + col], scale_log2,
               row_lse2, row_delta, &p, &ds);
      dsb[r * kLdP + col] = __float2bfloat16_rn(ds);
    }
    __syncwarp();

    // dQ += r(dS) K^ over the tile's 32 keys (stored [key][d]).
    FragA da[2];
    NM_BF16_UNROLL
    for (int kc = 0; kc < 2; kc++) wmma::load_matrix_sync(da[kc], dsb + kc * 16, kLdP);
    NM_BF16_UNROLL
    for (int n = 0; n < 4; n++) {
      NM_BF16_UNROLL
      for (int kc = 0; kc < 2; kc++) {
        FragBRow kb;
        wmma::load_matrix_sync(kb, ks + kc * 16 * kLdH + n * 16, kLdH);
        wmma::mma_sync(dq[n], da[kc], kb, dq[n]);
      }
    }
  }

  __syncwarp();  // the last reads of sf / dpf are done before the staging overwrites them
  NM_BF16_UNROLL
  for (int n = 0; n < 4; n++) {
    for (int e = 0; e < dq[n].num_elements; e++) dq[n].x[e] *= scale;
    wmma::store_matrix_sync(stage + n * 16, dq[n], kLdS, wmma::mem_row_major);
  }
  __syncwarp();
  if (i < t) {
    float* dst_row = dqkv + (b * t + i) * row_stride + h * kHeadDim;
    NM_BF16_UNROLL
    for (int k = 0; k < 32; k++) dst_row[2 * k + half] = stage[r * kLdS + 2 * k + half];
  }
}

}  // namespace flash_bf16
}  // namespace nm_cuda

#endif  // NM_CUDA_ATTENTION_FLASH_BF16_KERNELS_CUH
