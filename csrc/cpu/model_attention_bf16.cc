// 'flash-bf16' causal attention on the CPU (NM_ATTN_FLASH_BF16): the reference of the CUDA
// tensor-core kernels, with the same bf16 roundings (see model_kernels_b.h and core/backend.h).
// Any head dimension.
//
// Work is split over the B*H (batch, head) pairs with parallel_for; one thread computes a whole
// pair in a fixed order (dk and dv are summed over the query rows in increasing order), so the
// bits do not depend on the thread count. Per pair the head's q, k, v (and dout) are copied out
// of the strided rows and rounded to bf16 once (kept as f32 values), k and v also transposed
// ([D][T]), so the score loops run over contiguous keys and the products with V / K / Q over
// contiguous head dimensions: plain loops the compiler vectorises across the independent
// outputs, each output's sum still in increasing index order. Compiled for baseline x86-64 and,
// picked at run time, with AVX2; without FMA contraction (ISO C++ mode) both do the same f32
// operations in the same order.
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/bf16.h"
#include "cpu_features.h"
#include "model_kernels_b.h"
#include "thread_pool.h"

namespace nm::cpu {
namespace {

#define NM_BF16_INLINE inline __attribute__((always_inline))

constexpr double kLog2e = 1.4426950408889634;
constexpr double kLn2 = 0.6931471805599453;

NM_BF16_INLINE float round_bf16(float x) { return nm_bf16_to_f32(nm_f32_to_bf16(x)); }

struct Pair {
  int64_t t, heads, d, c;  // sequence length, heads, head dimension, heads * d
  float scale, scale_log2;
};

Pair make_pair_dims(int64_t t, int64_t heads, int64_t head_dim, float scale) {
  // scale * log2(e) formed in double and rounded once, as the CUDA kernels do.
  return Pair{t, heads, head_dim, heads * head_dim, scale,
              static_cast<float>(static_cast<double>(scale) * kLog2e)};
}

float* workspace(size_t floats) {
  thread_local std::vector<float> buffer;
  if (buffer.size() < floats) buffer.resize(floats);
  return buffer.data();
}

// dst [t][d] = r(src rows), and when dst_t != nullptr also dst_t [d][t] (the transpose).
NM_BF16_INLINE void gather(float* dst, float* dst_t, const float* src, int64_t stride,
                           const Pair& g) {
  for (int64_t i = 0; i < g.t; ++i) {
    for (int64_t d = 0; d < g.d; ++d) {
      const float v = round_bf16(src[i * stride + d]);
      if (dst != nullptr) dst[i * g.d + d] = v;
      if (dst_t != nullptr) dst_t[d * g.t + i] = v;
    }
  }
}

// s[j] = a . b_j for j < n, where b_j is column j of bt [d][t]; each sum in increasing d.
NM_BF16_INLINE void dots(float* s, const float* a, const float* bt, int64_t n, const Pair& g) {
  for (int64_t j = 0; j < n; ++j) s[j] = 0.0f;
  for (int64_t d = 0; d < g.d; ++d) {
    const float x = a[d];
    const float* row = bt + d * g.t;
    for (int64_t j = 0; j < n; ++j) s[j] += x * row[j];
  }
}

// y[0..d) += w * x[0..d)
NM_BF16_INLINE void axpy(float* y, float w, const float* x, int64_t d) {
  for (int64_t k = 0; k < d; ++k) y[k] += w * x[k];
}

struct ForwardArgs {
  float* out;
  float* lse;
  const float* qkv;
  Pair g;
};

NM_BF16_INLINE void forward_pair_impl(const ForwardArgs& args, int64_t pair) {
  const Pair& g = args.g;
  const int64_t b = pair / g.heads, h = pair % g.heads;
  const int64_t row_stride = 3 * g.c;
  float* ws = workspace(static_cast<size_t>(3 * g.t * g.d + g.t + g.d));
  float* q = ws;               // [t][d]
  float* kt = q + g.t * g.d;   // [d][t]
  float* v = kt + g.t * g.d;   // [t][d]
  float* s = v + g.t * g.d;    // [t]: scores, then r(2^(s2 - M))
  float* o = s + g.t;          // [d]
  const float* src = args.qkv + b * g.t * row_stride + h * g.d;
  gather(q, nullptr, src, row_stride, g);
  gather(nullptr, kt, src + g.c, row_stride, g);
  gather(v, nullptr, src + 2 * g.c, row_stride, g);
  float* lse = args.lse + pair * g.t;
  float* out = args.out + b * g.t * g.c + h * g.d;

  for (int64_t i = 0; i < g.t; ++i) {
    const int64_t n = i + 1;  // keys 0..i
    dots(s, q + i * g.d, kt, n, g);
    float mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      s[j] *= g.scale_log2;
      mx = s[j] > mx ? s[j] : mx;
    }
    // Any integer M gives the same rounded values up to 2^M; this one makes the largest
    // exponential lie in (1/2, 1].
    const float m = std::ceil(mx);
    double l = 0.0;
    for (int64_t j = 0; j < n; ++j) {
      const float e = std::exp2(s[j] - m);
      l += e;
      s[j] = round_bf16(e);
    }
    for (int64_t k = 0; k < g.d; ++k) o[k] = 0.0f;
    for (int64_t j = 0; j < n; ++j) axpy(o, s[j], v + j * g.d, g.d);
    const float inv = static_cast<float>(1.0 / l);
    float* dst = out + i * g.c;
    for (int64_t k = 0; k < g.d; ++k) dst[k] = o[k] * inv;
    lse[i] = static_cast<float>((static_cast<double>(m) + std::log2(l)) * kLn2);
  }
}

struct BackwardArgs {
  float* dqkv;
  const float* dout;
  const float* qkv;
  const float* out;
  const float* lse;
  Pair g;
};

NM_BF16_INLINE void backward_pair_impl(const BackwardArgs& args, int64_t pair) {
  const Pair& g = args.g;
  const int64_t b = pair / g.heads, h = pair % g.heads;
  const int64_t row_stride = 3 * g.c;
  const int64_t td = g.t * g.d;
  float* ws = workspace(static_cast<size_t>(7 * td + 2 * g.t + g.d));
  float* q = ws;           // [t][d]
  float* k = q + td;       // [t][d]
  float* kt = k + td;      // [d][t]
  float* vt = kt + td;     // [d][t]
  float* go = vt + td;     // [t][d]: r(dout)
  float* dk = go + td;     // [t][d]: sum of r(ds) q (unscaled)
  float* dv = dk + td;     // [t][d]
  float* p = dv + td;      // [t]: p, then r(p)
  float* ds = p + g.t;     // [t]: dp, then r(ds)
  float* dq = ds + g.t;    // [d]
  const float* src = args.qkv + b * g.t * row_stride + h * g.d;
  const float* gsrc = args.dout + b * g.t * g.c + h * g.d;
  const float* osrc = args.out + b * g.t * g.c + h * g.d;
  gather(q, nullptr, src, row_stride, g);
  gather(k, kt, src + g.c, row_stride, g);
  gather(nullptr, vt, src + 2 * g.c, row_stride, g);
  gather(go, nullptr, gsrc, g.c, g);
  std::memset(dk, 0, sizeof(float) * static_cast<size_t>(2 * td));  // dk and dv
  const float* lse = args.lse + pair * g.t;
  float* dst = args.dqkv + b * g.t * row_stride + h * g.d;
  const float log2e = static_cast<float>(kLog2e);

  for (int64_t i = 0; i < g.t; ++i) {
    const int64_t n = i + 1;
    const float* gi = go + i * g.d;
    // delta_i = r(dout_i) . out_i in double, rounded once.
    double acc = 0.0;
    for (int64_t d = 0; d < g.d; ++d) {
      acc += static_cast<double>(gi[d]) * static_cast<double>(osrc[i * g.c + d]);
    }
    const float delta = static_cast<float>(acc);
    const float lse2 = lse[i] * log2e;
    dots(p, q + i * g.d, kt, n, g);
    dots(ds, gi, vt, n, g);
    for (int64_t j = 0; j < n; ++j) {
      const float pj = std::exp2(p[j] * g.scale_log2 - lse2);
      const float dsj = pj * (ds[j] - delta);
      p[j] = round_bf16(pj);
      ds[j] = round_bf16(dsj);
    }
    for (int64_t d = 0; d < g.d; ++d) dq[d] = 0.0f;
    for (int64_t j = 0; j < n; ++j) {
      axpy(dq, ds[j], k + j * g.d, g.d);
      axpy(dk + j * g.d, ds[j], q + i * g.d, g.d);
      axpy(dv + j * g.d, p[j], gi, g.d);
    }
    float* qrow = dst + i * row_stride;
    for (int64_t d = 0; d < g.d; ++d) qrow[d] = dq[d] * g.scale;
  }
  for (int64_t j = 0; j < g.t; ++j) {
    float* krow = dst + j * row_stride + g.c;
    float* vrow = krow + g.c;
    for (int64_t d = 0; d < g.d; ++d) {
      krow[d] = dk[j * g.d + d] * g.scale;
      vrow[d] = dv[j * g.d + d];
    }
  }
}

void forward_pair_generic(const ForwardArgs& args, int64_t pair) { forward_pair_impl(args, pair); }
void backward_pair_generic(const BackwardArgs& args, int64_t pair) {
  backward_pair_impl(args, pair);
}

#if defined(__x86_64__) || defined(__i386__)
__attribute__((target("avx2"))) void forward_pair_avx2(const ForwardArgs& args, int64_t pair) {
  forward_pair_impl(args, pair);
}
__attribute__((target("avx2"))) void backward_pair_avx2(const BackwardArgs& args,
                                                        int64_t pair) {
  backward_pair_impl(args, pair);
}
#endif

}  // namespace

void attention_forward_bf16(float* out, float* lse, const float* qkv, int64_t b, int64_t t,
                            int64_t heads, int64_t head_dim, float scale) {
  const int64_t pairs = b * heads;
  if (pairs == 0 || t == 0 || head_dim == 0) return;
  const ForwardArgs args{out, lse, qkv, make_pair_dims(t, heads, head_dim, scale)};
  void (*fn)(const ForwardArgs&, int64_t) = forward_pair_generic;
#if defined(__x86_64__) || defined(__i386__)
  if (cpu_has_avx2()) fn = forward_pair_avx2;
#endif
  compute_pool().parallel_for(pairs, [&](int64_t pair) { fn(args, pair); });
}

void attention_backward_bf16(float* dqkv, const float* dout, const float* qkv, const float* out,
                             const float* lse, int64_t b, int64_t t, int64_t heads,
                             int64_t head_dim, float scale) {
  const int64_t pairs = b * heads;
  if (pairs == 0 || t == 0 || head_dim == 0) return;
  const BackwardArgs args{dqkv, dout, qkv, out, lse, make_pair_dims(t, heads, head_dim, scale)};
  void (*fn)(const BackwardArgs&, int64_t) = backward_pair_generic;
#if defined(__x86_64__) || defined(__i386__)
  if (cpu_has_avx2()) fn = backward_pair_avx2;
#endif
  compute_pool().parallel_for(pairs, [&](int64_t pair) { fn(args, pair); });
}

}  // namespace nm::cpu
