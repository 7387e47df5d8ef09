// Flash-style causal attention: fused tiled kernels for head_dim 16, 32 and 64 that never hold a
// T x T matrix in memory. f32 storage and f32 math on the CUDA cores (no tensor cores, no bf16)
// in this first version; every accumulation runs in a fixed order, so results are deterministic.
// The kernels are in attention_flash_kernels.cuh (also compiled by the host emulation in
// emulation/, which runs them against a float64 reference without a GPU); this file is the host
// side: grid sizes, scratch and launches.
//
// Forward (one block of 256 threads per (batch, head, tile of 64 query rows)):
//   the Q tile sits in shared memory; K and V tiles of 32 keys are streamed up to the tile's
//   causal limit. Thread (r, g) = (threadIdx.x / 4, threadIdx.x % 4) owns query row r: it scores
//   keys g, g+4, ..., g+28 of each tile, and owns output chunks g, g+4, ... (4 floats each) of the
//   row. Online softmax in the log2 domain: s2 = (q.k) * scale*log2(e); running max m and sum l
//   (the row's four threads agree through two xor shuffles); o is rescaled by exp2(m_old - m_new)
//   when the max grows, and the tile's probabilities go through shared memory to the P.V product.
//   At the end out = o / l and lse = (m + log2(l)) * ln2 (natural log, as the naive path).
//   Key tile 0 always holds key 0 <= i, so m is finite from the first tile on and no row ever
//   computes exp2(-inf - -inf).
//
// Backward, two kernels, no atomics (each output element is owned by one thread):
//   delta_i = rowsum(dout_i * out_i) first (attention_row_dot, shared with the naive path).
//   dK/dV kernel: one block of 128 threads per (batch, head, tile of 32 keys); thread (c, g) owns
//     key row c and output chunks g, g+4, ... of dk and dv. It loops over the query tiles from
//     the key tile's diagonal to T, recomputing s and dp = dout.v for queries g, g+4, ... of each
//     tile, p = exp(s*scale - lse), ds = p (dp - delta); P^T and dS^T go through shared memory,
//     then dv += p dout_i and dk += ds q_i over the tile's 32 queries in increasing order.
//   dQ kernel: one block of 128 threads per (batch, head, tile of 32 queries), the mirror image:
//     loops over key tiles up to the causal limit, dq += ds k_j in increasing j.
//   Both kernels compute s, dp, p and ds with the same operations in the same order, so they
//   agree on every dS element bit for bit.
//
// Index math is kept plain on purpose: tiles are aligned (q0 = tile*64 or tile*32), rows past T
// are loaded as zeros and never stored, and the causal test is j <= i && j < T && i < T.
#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "attention_flash_kernels.cuh"
#include "check.h"
#include "context.h"
#include "model_attention.h"
#include "ops.h"

namespace nm_cuda {
namespace {

namespace ff = flash_f32;

// Blocks of a grid over (batch, head, tile); fails when it does not fit a 1-D grid.
nm_status grid_size(const char* op, const AttentionDims& g, int64_t rows_per_tile, int* tiles,
                    unsigned* blocks) {
  const int64_t n = (g.t + rows_per_tile - 1) / rows_per_tile;
  const int64_t total = g.b * g.heads * n;
  if (total > INT_MAX) {
    return fail_invalid(op, "b*heads*ceil(t/%lld) = %lld blocks is too many for one grid",
                        (long long)rows_per_tile, (long long)total);
  }
  *tiles = (int)n;
  *blocks = (unsigned)total;
  return NM_OK;
}

template <int HD>
nm_status forward_hd(nm_backend* be, const char* op, float* out, float* lse, const float* qkv,
                     const AttentionDims& g) {
  int tiles = 0;
  unsigned blocks = 0;
  NM_TRY(grid_size(op, g, ff::kFwdRows, &tiles, &blocks));
  const float scale_log2 = (float)((double)g.scale * 1.4426950408889634);
  NM_CUDA_LAUNCH(blocks, ff::kFwdThreads, 0, be->stream, ff::flash_forward_kernel<HD>)(
      out, lse, qkv, (int)g.t, (int)g.heads, scale_log2, tiles);
  NM_CUDA_CHECK_LAUNCH(op, "flash_forward_kernel");
  return NM_OK;
}

template <int HD>
nm_status backward_hd(nm_backend* be, const char* op, float* dqkv, const float* dout,
                      const float* qkv, const float* out, const float* lse,
                      const AttentionDims& g) {
  int tiles = 0;
  unsigned blocks = 0;
  NM_TRY(grid_size(op, g, ff::kBwdTile, &tiles, &blocks));
  Scratch scratch(be, op);
  NM_TRY(scratch.alloc((size_t)(g.b * g.heads * g.t) * sizeof(float)));
  float* delta = reinterpret_cast<float*>(scratch.bytes());
  NM_TRY(attention_row_dot(be, op, delta, dout, out, g));
  NM_CUDA_LAUNCH(blocks, ff::kBwdThreads, 0, be->stream, ff::flash_backward_kv_kernel<HD>)(
      dqkv, dout, qkv, lse, delta, (int)g.t, (int)g.heads, g.scale, tiles);
  NM_CUDA_CHECK_LAUNCH(op, "flash_backward_kv_kernel");
  NM_CUDA_LAUNCH(blocks, ff::kBwdThreads, 0, be->stream, ff::flash_backward_q_kernel<HD>)(
      dqkv, dout, qkv, lse, delta, (int)g.t, (int)g.heads, g.scale, tiles);
  NM_CUDA_CHECK_LAUNCH(op, "flash_backward_q_kernel");
  return scratch.release();
}

}  // namespace

bool flash_supports_head_dim(int64_t head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64;
}

nm_status attention_forward_flash(nm_backend* be, const char* op, float* out, float* lse,
                                  const float* qkv, const AttentionDims& g) {
  switch (g.head_dim) {
    case 16: return forward_hd<16>(be, op, out, lse, qkv, g);
    case 32: return forward_hd<32>(be, op, out, lse, qkv, g);
    case 64: return forward_hd<64>(be, op, out, lse, qkv, g);
  }
  return fail_invalid(op, "flash attention: unsupported head_dim %lld", (long long)g.head_dim);
}

nm_status attention_backward_flash(nm_backend* be, const char* op, float* dqkv,
                                   const float* dout, const float* qkv, const float* out,
                                   const float* lse, const AttentionDims& g) {
  switch (g.head_dim) {
    case 16: return backward_hd<16>(be, op, dqkv, dout, qkv, out, lse, g);
    case 32: return backward_hd<32>(be, op, dqkv, dout, qkv, out, lse, g);
    case 64: return backward_hd<64>(be, op, dqkv, dout, qkv, out, lse, g);
  }
  return fail_invalid(op, "flash attention: unsupported head_dim %lld", (long long)g.head_dim);
}

}  // namespace nm_cuda
