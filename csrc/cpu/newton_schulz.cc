// newton_schulz: the quintic Newton-Schulz iteration approximating msgn(x), f32 throughout.
//
// Per matrix x[b] of [rows, cols]:
//   denom = f32(||x||_F) + eps     (sum of squares in double, in fixed chunks: deterministic)
//   X = x / denom                  (X^T, an explicit transposed copy [cols, rows], if rows > cols)
//   `steps` times:  A = X X^T;  B = coef_b*A + coef_c*(A A);  X = coef_a*X + B X
//   out = X (transposed back when rows > cols)
// so X is always [m, n] with m = min(rows, cols) <= n and the Gram matrix A is the small one.
//
// All matrices of the batch go through each product together: one batched nm::cpu::gemm call per
// product (the GEMM spreads a batch of small matrices over the pool, or a large one inside each
// matrix). The "+ coef*matrix" terms are the GEMM's beta on a copy: B starts as a copy of A and
// gets alpha = coef_c, beta = coef_b; the next X starts as a copy of X and gets beta = coef_a.
// The copies, transposes and norms run as parallel_chunks outside any GEMM (the pool is not
// reentrant, so nothing here calls gemm from a pool item).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../core/backend.h"
#include "gemm.h"
#include "optim_kernels.h"
#include "parallel.h"

namespace nm::cpu {
namespace {

constexpr int64_t kChunk = 1 << 16;  // elements per parallel item (norms, scaling, copies)
constexpr int64_t kTile = 32;        // transpose tile edge

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The scratch block, carved out of the caller's workspace (offsets aligned to 64 bytes).
struct Layout {
  int64_t m, n;            // X is [m, n], m <= n
  int64_t chunks;          // norm chunks per matrix
  size_t partials_offset;  // batch * chunks doubles
  size_t denom_offset;     // batch floats
  size_t x_offset;         // batch * m * n floats (X)
  size_t x_next_offset;    // batch * m * n floats (next X)
  size_t a_offset;         // batch * m * m floats (A)
  size_t b_offset;         // batch * m * m floats (B)
  size_t bytes;            // total, plus 64 bytes of alignment slack
};

size_t align64(size_t v) { return (v + 63) / 64 * 64; }

Layout layout_for(int64_t batch, int64_t rows, int64_t cols) {
  Layout l;
  l.m = std::min(rows, cols);
  l.n = std::max(rows, cols);
  l.chunks = ceil_div(rows * cols, kChunk);
  const size_t xs = static_cast<size_t>(batch * l.m * l.n) * sizeof(float);
  const size_t gs = static_cast<size_t>(batch * l.m * l.m) * sizeof(float);
  size_t at = 0;
  l.partials_offset = at;
  at += align64(static_cast<size_t>(batch * l.chunks) * sizeof(double));
  l.denom_offset = at;
  at += align64(static_cast<size_t>(batch) * sizeof(float));
  l.x_offset = at;
  at += align64(xs);
  l.x_next_offset = at;
  at += align64(xs);
  l.a_offset = at;
  at += align64(gs);
  l.b_offset = at;
  at += align64(gs);
  l.bytes = at + 64;
  return l;
}

// Calls fn(b, begin, end) over [0, per) of every matrix b of the batch, in chunks of kChunk
// elements spread over the pool; chunk c of matrix b is item b * chunks + c.
template <typename Fn>
void for_matrix_chunks(int64_t batch, int64_t per, Fn&& fn) {
  const int64_t chunks = ceil_div(per, kChunk);
  parallel_chunks(batch * chunks, 1, [&](int64_t item_begin, int64_t item_end, int64_t) {
    for (int64_t item = item_begin; item < item_end; ++item) {
      const int64_t b = item / chunks;
      const int64_t begin = (item % chunks) * kChunk;
      fn(b, begin, std::min(per, begin + kChunk));
    }
  });
}

void copy_batch(float* dst, const float* src, int64_t count) {
  parallel_chunks(count, kChunk, [&](int64_t begin, int64_t end, int64_t) {
    std::memcpy(dst + begin, src + begin, static_cast<size_t>(end - begin) * sizeof(float));
  });
}

// dst[b] ([src_cols, src_rows]) = src[b]^T / divisor[b] (no division when divisor is null),
// in kTile x kTile tiles; one pool item per matrix and band of kTile destination rows.
void transpose_batch(float* dst, const float* src, int64_t batch, int64_t src_rows,
                     int64_t src_cols, const float* divisor) {
  const int64_t bands = ceil_div(src_cols, kTile);
  const int64_t per = src_rows * src_cols;
  parallel_chunks(batch * bands, 1, [&](int64_t item_begin, int64_t item_end, int64_t) {
    for (int64_t item = item_begin; item < item_end; ++item) {
      const int64_t b = item / bands;
      const int64_t j0 = (item % bands) * kTile;
      const int64_t j1 = std::min(src_cols, j0 + kTile);
      const float* s = src + b * per;
      float* d = dst + b * per;
      for (int64_t i0 = 0; i0 < src_rows; i0 += kTile) {
        const int64_t i1 = std::min(src_rows, i0 + kTile);
        for (int64_t j = j0; j < j1; ++j) {
          float* drow = d + j * src_rows;
          if (divisor != nullptr) {
            const float den = divisor[b];
            for (int64_t i = i0; i < i1; ++i) drow[i] = s[i * src_cols + j] / den;
          } else {
            for (int64_t i = i0; i < i1; ++i) drow[i] = s[i * src_cols + j];
          }
        }
      }
    }
  });
}

// A batched f32 GEMM over contiguous matrices (row strides = widths, batch strides = sizes).
void batched_gemm(int64_t batch, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float* a, const float* b, float beta, float* c) {
  nm_gemm_args g;
  g.trans_a = 0;
  g.trans_b = trans_b ? 1 : 0;
  g.m = m;
  g.n = n;
  g.k = k;
  g.alpha = alpha;
  g.beta = beta;
  g.a = a;
  g.lda = k;
  g.stride_a = m * k;
  g.b = b;
  g.ldb = trans_b ? k : n;
  g.stride_b = k * n;
  g.c = c;
  g.ldc = n;
  g.stride_c = m * n;
  g.ab_dtype = NM_F32;
  g.c_dtype = NM_F32;
  g.batch = batch;
  gemm(g);
}

}  // namespace

size_t newton_schulz_workspace_bytes(int64_t batch, int64_t rows, int64_t cols) {
  if (batch <= 0 || rows <= 0 || cols <= 0) return 0;
  return layout_for(batch, rows, cols).bytes;
}

void newton_schulz(float* out, const float* x, int64_t batch, int64_t rows, int64_t cols,
                   int32_t steps, float coef_a, float coef_b, float coef_c, float eps,
                   void* workspace) {
  if (batch <= 0 || rows <= 0 || cols <= 0) return;
  const Layout l = layout_for(batch, rows, cols);
  const bool tall = rows > cols;
  const int64_t m = l.m;
  const int64_t n = l.n;
  const int64_t per = m * n;

  const uintptr_t raw = reinterpret_cast<uintptr_t>(workspace);
  char* base = reinterpret_cast<char*>((raw + 63) / 64 * 64);
  double* partials = reinterpret_cast<double*>(base + l.partials_offset);
  float* denom = reinterpret_cast<float*>(base + l.denom_offset);
  float* xs = reinterpret_cast<float*>(base + l.x_offset);
  float* xs_next = reinterpret_cast<float*>(base + l.x_next_offset);
  float* a = reinterpret_cast<float*>(base + l.a_offset);
  float* bm = reinterpret_cast<float*>(base + l.b_offset);

  // denom[b] = f32(||x[b]||_F) + eps: chunk sums in double, added in chunk order.
  for_matrix_chunks(batch, per, [&](int64_t b, int64_t begin, int64_t end) {
    const float* s = x + b * per;
    double acc = 0.0;
    for (int64_t i = begin; i < end; ++i) {
      const double v = s[i];
      acc += v * v;
    }
    partials[b * l.chunks + begin / kChunk] = acc;
  });
  for (int64_t b = 0; b < batch; ++b) {
    double total = 0.0;
    for (int64_t c = 0; c < l.chunks; ++c) total += partials[b * l.chunks + c];
    const float norm = static_cast<float>(std::sqrt(total));
    denom[b] = norm + eps;
  }

  // X = x / denom ([m, n]; the transpose of x when it is tall).
  if (tall) {
    transpose_batch(xs, x, batch, rows, cols, denom);
  } else {
    for_matrix_chunks(batch, per, [&](int64_t b, int64_t begin, int64_t end) {
      const float den = denom[b];
      const float* s = x + b * per;
      float* d = xs + b * per;
      for (int64_t i = begin; i < end; ++i) d[i] = s[i] / den;
    });
  }

  for (int32_t step = 0; step < steps; ++step) {
    // A = X X^T  ([m, m])
    batched_gemm(batch, true, m, m, n, 1.0f, xs, xs, 0.0f, a);
    // B = coef_b*A + coef_c*(A A)
    copy_batch(bm, a, batch * m * m);
    batched_gemm(batch, false, m, m, m, coef_c, a, a, coef_b, bm);
    // X_next = coef_a*X + B X
    copy_batch(xs_next, xs, batch * per);
    batched_gemm(batch, false, m, n, m, 1.0f, bm, xs, coef_a, xs_next);
    std::swap(xs, xs_next);
  }

  if (tall) {
    transpose_batch(out, xs, batch, m, n, nullptr);
  } else {
    copy_batch(out, xs, batch * per);
  }
}

}  // namespace nm::cpu
