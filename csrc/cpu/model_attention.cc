// Causal multi-head attention on the CPU (forward and backward), f32. See model_kernels_b.h for
// the semantics and rounding.
//
// Work is split over the B*H (batch, head) pairs with parallel_for; one thread computes a whole
// pair, so every accumulation (in particular dk and dv, summed over the query rows) runs in one
// fixed order and the bits do not depend on the thread count.
//
// Per pair the head's q, k, v (and dout) are first copied out of the strided qkv rows into
// zero-padded contiguous buffers: the key/query count is padded to a multiple of kBlockQ and the
// head dimension to a multiple of 16. Padding is zero, so it never contributes to a product; the
// padded query rows are simply not stored. The queries are then processed in blocks of kBlockQ
// rows: the block's scores against the keys up to its causal limit go into a [kBlockQ, keys] row
// buffer, each row gets its masked softmax, and the products with V (forward) or the gradient
// products (backward) are small matrix products done by one register-tiled 4 x 16 kernel.
//
// That kernel uses GCC vector extensions (8 floats). It is compiled twice, for baseline x86-64
// (SSE2) and with AVX2 enabled (picked at run time); without FMA (no contraction under
// -std=c++17) both compute exactly the same f32 operations in the same order, so the results are
// bit-identical on every x86-64 machine.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu_features.h"
#include "model_kernels_b.h"
#include "thread_pool.h"

namespace nm::cpu {
namespace {

#define NM_ATTN_INLINE inline __attribute__((always_inline))

constexpr int64_t kBlockQ = 32;  // query rows per block (a multiple of 4)
constexpr int64_t kPadD = 16;    // the head dimension is padded to a multiple of this

inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

typedef float v8 __attribute__((vector_size(32)));

// C[4 x 16] (=, or += when kAccumulate) A[4 x k] . B[k x 16], where A(r, p) = a[r*ars + p*acs]
// (so A may be read transposed) and row p of B starts at b + p*ldb. For each output element the
// k products are added in increasing p, starting from C (accumulate) or from zero.
template <bool kAccumulate>
NM_ATTN_INLINE void tile_4x16(const float* a, int64_t ars, int64_t acs, const float* b,
                              int64_t ldb, int64_t k, float* c, int64_t ldc) {
  v8 acc00, acc01, acc10, acc11, acc20, acc21, acc30, acc31;
  if (kAccumulate) {
    std::memcpy(&acc00, c, 32);
    std::memcpy(&acc01, c + 8, 32);
    std::memcpy(&acc10, c + ldc, 32);
    std::memcpy(&acc11, c + ldc + 8, 32);
    std::memcpy(&acc20, c + 2 * ldc, 32);
    std::memcpy(&acc21, c + 2 * ldc + 8, 32);
    std::memcpy(&acc30, c + 3 * ldc, 32);
    std::memcpy(&acc31, c + 3 * ldc + 8, 32);
  } else {
    acc00 = acc01 = acc10 = acc11 = acc20 = acc21 = acc30 = acc31 = v8{};
  }
  const float* a0 = a;
  const float* a1 = a + ars;
  const float* a2 = a + 2 * ars;
  const float* a3 = a + 3 * ars;
  for (int64_t p = 0; p < k; ++p) {
    v8 b0, b1;
    std::memcpy(&b0, b + p * ldb, 32);
    std::memcpy(&b1, b + p * ldb + 8, 32);
    const float x0 = a0[p * acs], x1 = a1[p * acs], x2 = a2[p * acs], x3 = a3[p * acs];
    acc00 += b0 * x0;
    acc01 += b1 * x0;
    acc10 += b0 * x1;
    acc11 += b1 * x1;
    acc20 += b0 * x2;
    acc21 += b1 * x2;
    acc30 += b0 * x3;
    acc31 += b1 * x3;
  }
  std::memcpy(c, &acc00, 32);
  std::memcpy(c + 8, &acc01, 32);
  std::memcpy(c + ldc, &acc10, 32);
  std::memcpy(c + ldc + 8, &acc11, 32);
  std::memcpy(c + 2 * ldc, &acc20, 32);
  std::memcpy(c + 2 * ldc + 8, &acc21, 32);
  std::memcpy(c + 3 * ldc, &acc30, 32);
  std::memcpy(c + 3 * ldc + 8, &acc31, 32);
}

// C[m x n] (=|+=) A[m x k] . B[k x n]; m a multiple of 4, n a multiple of 16.
template <bool kAccumulate>
NM_ATTN_INLINE void matmul(int64_t m, int64_t n, int64_t k, const float* a, int64_t ars,
                           int64_t acs, const float* b, int64_t ldb, float* c, int64_t ldc) {
  for (int64_t j = 0; j < n; j += 16) {
    for (int64_t i = 0; i < m; i += 4) {
      tile_4x16<kAccumulate>(a + i * ars, ars, acs, b + j, ldb, k, c + i * ldc + j, ldc);
    }
  }
}

typedef int32_t v8i __attribute__((vector_size(32)));
typedef double v4d __attribute__((vector_size(32)));

// exp of 8 floats: x = n*ln2 + r with n = round(x / ln2) and |r| <= ln2/2, exp(r) by a degree-7
// polynomial (Taylor coefficients 1/k!, which is accurate to about 1 ulp on that interval),
// times 2^n built in the exponent bits. x is clamped to [-87.3, 88.7] (the normal f32 range), so
// exp(-inf) and tiny results come out as ~1e-38 rather than 0 (harmless for a softmax, whose
// masked entries never go through here); NaN stays NaN. Plain f32 operations, so the result is
// the same for the SSE2 and AVX2 builds of this file.
NM_ATTN_INLINE void exp8(float* x) {
  v8 v;
  std::memcpy(&v, x, 32);
  const v8 lo = v8{} - 87.3f, hi = v8{} + 88.7f;
  v = v < lo ? lo : v;
  v = v > hi ? hi : v;
  const v8 magic = v8{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const v8 n = (v * 1.44269504088896341f + magic) - magic;
  // r = x - n*ln2 in two steps (ln2 split in a part exact in n*hi and a small remainder).
  v8 r = v - n * 0.693359375f;
  r = r - n * -2.12194440054690583e-4f;
  v8 p = v8{} + 1.98412698412698413e-4f;  // 1/7!
  p = p * r + 1.38888888888888889e-3f;    // 1/6!
  p = p * r + 8.33333333333333333e-3f;    // 1/5!
  p = p * r + 4.16666666666666667e-2f;    // 1/4!
  p = p * r + 1.66666666666666667e-1f;    // 1/3!
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const v8i e = (__builtin_convertvector(n, v8i) + 127) << 23;
  v8 two_n;
  std::memcpy(&two_n, &e, 32);
  v = p * two_n;
  // NaN fails both clamps' comparisons and survives to here; keep it NaN.
  std::memcpy(x, &v, 32);
}

// Sum of x[0..n) in double: eight lane-wise partial sums (element j goes to lane j % 8), then
// the lanes combined in a fixed order. The order depends on n only.
NM_ATTN_INLINE double sum_double(const float* x, int64_t n) {
  v4d s0 = v4d{}, s1 = v4d{};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    v8 v;
    std::memcpy(&v, x + j, 32);
    s0 += v4d{v[0], v[1], v[2], v[3]};
    s1 += v4d{v[4], v[5], v[6], v[7]};
  }
  double tail = 0.0;
  for (; j < n; ++j) tail += static_cast<double>(x[j]);
  const v4d s = s0 + s1;
  return ((s[0] + s[1]) + (s[2] + s[3])) + tail;
}

struct Dims {
  int64_t t, heads, d;  // sequence length, heads, head dimension
  int64_t c;            // heads * d
  int64_t tp, dp;       // padded key/query count and head dimension
  float scale;
};

Dims make_dims(int64_t t, int64_t heads, int64_t head_dim, float scale) {
  Dims g;
  g.t = t;
  g.heads = heads;
  g.d = head_dim;
  g.c = heads * head_dim;
  g.tp = round_up(t, kBlockQ);
  g.dp = round_up(head_dim, kPadD);
  g.scale = scale;
  return g;
}

// Copies rows [0, t) x columns [0, d) of a strided source into dst [tp, dp] (zero padded).
NM_ATTN_INLINE void gather_rows(float* dst, const float* src, int64_t src_stride, const Dims& g) {
  std::memset(dst, 0, sizeof(float) * static_cast<size_t>(g.tp * g.dp));
  for (int64_t i = 0; i < g.t; ++i) {
    std::memcpy(dst + i * g.dp, src + i * src_stride, sizeof(float) * static_cast<size_t>(g.d));
  }
}

// The same, transposed: dst [dp, tp] with dst[d][i] = src[i][d].
NM_ATTN_INLINE void gather_transposed(float* dst, const float* src, int64_t src_stride,
                                      const Dims& g) {
  std::memset(dst, 0, sizeof(float) * static_cast<size_t>(g.tp * g.dp));
  for (int64_t i = 0; i < g.t; ++i) {
    const float* row = src + i * src_stride;
    for (int64_t d = 0; d < g.d; ++d) dst[d * g.tp + i] = row[d];
  }
}

float* workspace(size_t floats) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < floats) buffer.resize(floats);
  return buffer.data();
}

struct ForwardArgs {
  float* out;
  float* lse;
  const float* qkv;
  Dims g;
};

template <int kUnused>
NM_ATTN_INLINE void forward_head_impl(const ForwardArgs& args, int64_t pair) {
  const Dims& g = args.g;
  const int64_t b = pair / g.heads, h = pair % g.heads;
  const int64_t tp = g.tp, dp = g.dp;
  const int64_t row_stride = 3 * g.c;
  float* ws = workspace(static_cast<size_t>(3 * tp * dp + kBlockQ * tp + kBlockQ * dp));
  float* q = ws;                  // [tp, dp]
  float* kt = q + tp * dp;        // [dp, tp]
  float* v = kt + tp * dp;        // [tp, dp]
  float* s = v + tp * dp;         // [kBlockQ, tp]: scores, then probabilities
  float* o = s + kBlockQ * tp;    // [kBlockQ, dp]

  const float* src = args.qkv + b * g.t * row_stride + h * g.d;
  gather_rows(q, src, row_stride, g);
  gather_transposed(kt, src + g.c, row_stride, g);
  gather_rows(v, src + 2 * g.c, row_stride, g);
  float* lse = args.lse + pair * g.t;
  float* out = args.out + b * g.t * g.c + h * g.d;

  for (int64_t i0 = 0; i0 < g.t; i0 += kBlockQ) {
    // Keys [0, jp) cover the causal limit of every row of the block.
    const int64_t jp = round_up(std::min(g.t, i0 + kBlockQ), kPadD);
    matmul<false>(kBlockQ, jp, dp, q + i0 * dp, dp, 1, kt, tp, s, tp);
    for (int64_t r = 0; r < kBlockQ; ++r) {
      const int64_t i = i0 + r;
      float* row = s + r * tp;
      if (i >= g.t) {
        std::memset(row, 0, sizeof(float) * static_cast<size_t>(jp));
        continue;
      }
      const int64_t n = i + 1;  // keys 0..i
      float m = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        const float x = row[j] * g.scale;
        row[j] = x;
        m = x > m ? x : m;
      }
      // exp over whole vectors of 8: n8 <= jp, the entries past n are overwritten below.
      const int64_t n8 = round_up(n, 8);
      for (int64_t j = 0; j < n8; ++j) row[j] = row[j] - m;
      for (int64_t j = 0; j < n8; j += 8) exp8(row + j);
      const double sum = sum_double(row, n);
      const float inv = static_cast<float>(1.0 / sum);
      for (int64_t j = 0; j < n; ++j) row[j] *= inv;
      for (int64_t j = n; j < jp; ++j) row[j] = 0.0f;
      lse[i] = static_cast<float>(static_cast<double>(m) + std::log(sum));
    }
    matmul<false>(kBlockQ, dp, jp, s, tp, 1, v, dp, o, dp);
    const int64_t rows = std::min(kBlockQ, g.t - i0);
    for (int64_t r = 0; r < rows; ++r) {
      std::memcpy(out + (i0 + r) * g.c, o + r * dp, sizeof(float) * static_cast<size_t>(g.d));
    }
  }
}

struct BackwardArgs {
  float* dqkv;
  const float* dout;
  const float* qkv;
  const float* out;
  const float* lse;
  Dims g;
};

template <int kUnused>
NM_ATTN_INLINE void backward_head_impl(const BackwardArgs& args, int64_t pair) {
  const Dims& g = args.g;
  const int64_t b = pair / g.heads, h = pair % g.heads;
  const int64_t tp = g.tp, dp = g.dp;
  const int64_t row_stride = 3 * g.c;
  float* ws = workspace(
      static_cast<size_t>(7 * tp * dp + 2 * kBlockQ * tp + kBlockQ * dp + tp));
  float* q = ws;                 // [tp, dp]
  float* k = q + tp * dp;        // [tp, dp]
  float* kt = k + tp * dp;       // [dp, tp]
  float* vt = kt + tp * dp;      // [dp, tp]
  float* dout = vt + tp * dp;    // [tp, dp]
  float* dk = dout + tp * dp;    // [tp, dp] (unscaled sum of dS^T q)
  float* dv = dk + tp * dp;      // [tp, dp]
  float* p = dv + tp * dp;       // [kBlockQ, tp]: scores, then probabilities
  float* ds = p + kBlockQ * tp;  // [kBlockQ, tp]: dP, then dS
  float* dq = ds + kBlockQ * tp; // [kBlockQ, dp]
  float* delta = dq + kBlockQ * dp;  // [tp]: rowsum(dout * out)

  const float* src = args.qkv + b * g.t * row_stride + h * g.d;
  const float* dsrc = args.dout + b * g.t * g.c + h * g.d;
  const float* osrc = args.out + b * g.t * g.c + h * g.d;
  gather_rows(q, src, row_stride, g);
  gather_rows(k, src + g.c, row_stride, g);
  gather_transposed(kt, src + g.c, row_stride, g);
  gather_transposed(vt, src + 2 * g.c, row_stride, g);
  gather_rows(dout, dsrc, g.c, g);
  std::memset(dk, 0, sizeof(float) * static_cast<size_t>(2 * tp * dp));  // dk and dv
  for (int64_t i = 0; i < g.t; ++i) {
    double acc = 0.0;
    const float* x = dsrc + i * g.c;
    const float* y = osrc + i * g.c;
    for (int64_t d = 0; d < g.d; ++d) acc += static_cast<double>(x[d]) * static_cast<double>(y[d]);
    delta[i] = static_cast<float>(acc);
  }
  const float* lse = args.lse + pair * g.t;
  float* dst = args.dqkv + b * g.t * row_stride + h * g.d;

  for (int64_t i0 = 0; i0 < g.t; i0 += kBlockQ) {
    const int64_t jp = round_up(std::min(g.t, i0 + kBlockQ), kPadD);
    matmul<false>(kBlockQ, jp, dp, q + i0 * dp, dp, 1, kt, tp, p, tp);      // q k^T
    matmul<false>(kBlockQ, jp, dp, dout + i0 * dp, dp, 1, vt, tp, ds, tp);  // dP = dout v^T
    for (int64_t r = 0; r < kBlockQ; ++r) {
      const int64_t i = i0 + r;
      float* prow = p + r * tp;
      float* drow = ds + r * tp;
      if (i >= g.t) {
        std::memset(prow, 0, sizeof(float) * static_cast<size_t>(jp));
        std::memset(drow, 0, sizeof(float) * static_cast<size_t>(jp));
        continue;
      }
      const int64_t n = i + 1;
      const float l = lse[i], di = delta[i];
      const int64_t n8 = round_up(n, 8);  // <= jp; entries past n are zeroed below
      for (int64_t j = 0; j < n8; ++j) prow[j] = prow[j] * g.scale - l;
      for (int64_t j = 0; j < n8; j += 8) exp8(prow + j);
      for (int64_t j = 0; j < n; ++j) drow[j] = prow[j] * (drow[j] - di);
      for (int64_t j = n; j < jp; ++j) prow[j] = drow[j] = 0.0f;
    }
    // dq rows of the block = scale * dS k
    matmul<false>(kBlockQ, dp, jp, ds, tp, 1, k, dp, dq, dp);
    const int64_t rows = std::min(kBlockQ, g.t - i0);
    for (int64_t r = 0; r < rows; ++r) {
      float* drow = dst + (i0 + r) * row_stride;
      const float* srow = dq + r * dp;
      for (int64_t d = 0; d < g.d; ++d) drow[d] = srow[d] * g.scale;
    }
    // dk[0:jp] += dS^T q_block;  dv[0:jp] += P^T dout_block
    matmul<true>(jp, dp, kBlockQ, ds, 1, tp, q + i0 * dp, dp, dk, dp);
    matmul<true>(jp, dp, kBlockQ, p, 1, tp, dout + i0 * dp, dp, dv, dp);
  }
  for (int64_t j = 0; j < g.t; ++j) {
    float* krow = dst + j * row_stride + g.c;
    float* vrow = krow + g.c;
    const float* ks = dk + j * dp;
    const float* vs = dv + j * dp;
    for (int64_t d = 0; d < g.d; ++d) krow[d] = ks[d] * g.scale;
    std::memcpy(vrow, vs, sizeof(float) * static_cast<size_t>(g.d));
  }
}

void forward_head_generic(const ForwardArgs& args, int64_t pair) {
  forward_head_impl<0>(args, pair);
}
void backward_head_generic(const BackwardArgs& args, int64_t pair) {
  backward_head_impl<0>(args, pair);
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) void forward_head_avx2(const ForwardArgs& args, int64_t pair) {
  forward_head_impl<0>(args, pair);
}
__attribute__((target("avx2"))) void backward_head_avx2(const BackwardArgs& args,
                                                        int64_t pair) {
  backward_head_impl<0>(args, pair);
}
#endif

}  // namespace

void attention_forward(float* out, float* lse, const float* qkv, int64_t b, int64_t t,
                       int64_t heads, int64_t head_dim, float scale) {
  const int64_t pairs = b * heads;
  if (pairs == 0 || t == 0 || head_dim == 0) return;
  const ForwardArgs args{out, lse, qkv, make_dims(t, heads, head_dim, scale)};
  void (*fn)(const ForwardArgs&, int64_t) = forward_head_generic;
#if defined(__x86_64__) || defined(__i386__)
  if (cpu_has_avx2()) fn = forward_head_avx2;
#endif
  compute_pool().parallel_for(pairs, [&](int64_t pair) { fn(args, pair); });
}

void attention_backward(float* dqkv, const float* dout, const float* qkv, const float* out,
                        const float* lse, int64_t b, int64_t t, int64_t heads, int64_t head_dim,
                        float scale) {
  const int64_t pairs = b * heads;
  if (pairs == 0 || t == 0 || head_dim == 0) return;
  const BackwardArgs args{dqkv, dout, qkv, out, lse, make_dims(t, heads, head_dim, scale)};
  void (*fn)(const BackwardArgs&, int64_t) = backward_head_generic;
#if defined(__x86_64__) || defined(__i386__)
  if (cpu_has_avx2()) fn = backward_head_avx2;
#endif
  compute_pool().parallel_for(pairs, [&](int64_t pair) { fn(args, pair); });
}

}  // namespace nm::cpu
