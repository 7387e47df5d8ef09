// Weightless RMSNorm (forward and backward) and exact-erf GELU (forward and backward).
//
// Rounding (the CUDA kernels follow the same order): per-row sums are accumulated in double and
// the per-row scalars (rstd, and the backward's rstd^3 * mean(dout * x)) are formed in double and
// rounded to f32 once. Every per-element product and difference is then an f32 operation rounded
// on its own (GCC builds this with -std=c++17, i.e. -ffp-contract=off: no hidden FMAs).
#include <cmath>

#include "../core/bf16.h"
#include "model_kernels_a.h"
#include "parallel.h"

namespace nm::cpu {
namespace {

constexpr int64_t kChunk = 1 << 16;  // elements per task of the elementwise kernels

int64_t rows_per_task(int64_t c) {
  const int64_t rows = (int64_t{1} << 15) / (c > 0 ? c : 1);
  return rows > 0 ? rows : 1;
}

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;  // 1/sqrt(2*pi)

// Phi(x) = 0.5 * erfc(-x / sqrt(2)): the same function as 0.5 * (1 + erf(x / sqrt(2))) without
// the cancellation of 1 + erf for negative x, so GELU keeps its relative accuracy there.
inline float normal_cdf(float x) { return 0.5f * std::erfc(x * -kInvSqrt2); }

inline float gelu(float x) {
  const float cdf = normal_cdf(x);
  return x * cdf;
}

inline float gelu_grad(float x) {
  const float cdf = normal_cdf(x);
  const float pdf = kInvSqrt2Pi * std::exp(-0.5f * x * x);
  return cdf + x * pdf;
}

}  // namespace

void rmsnorm_forward(void* out, nm_dtype out_dtype, float* rstd, const float* x, int64_t n,
                     int64_t c, float eps) {
  parallel_chunks(n, rows_per_task(c), [&](int64_t begin, int64_t end, int64_t) {
    for (int64_t i = begin; i < end; ++i) {
      const float* row = x + i * c;
      double ss = 0.0;
      for (int64_t j = 0; j < c; ++j) {
        const double v = row[j];
        ss += v * v;
      }
      const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(c) +
                                                         static_cast<double>(eps)));
      rstd[i] = r;
      if (out_dtype == NM_F32) {
        float* dst = static_cast<float*>(out) + i * c;
        for (int64_t j = 0; j < c; ++j) dst[j] = row[j] * r;
      } else {
        uint16_t* dst = static_cast<uint16_t*>(out) + i * c;
        for (int64_t j = 0; j < c; ++j) dst[j] = nm_f32_to_bf16(row[j] * r);
      }
    }
  });
}

void rmsnorm_backward(float* dx, const float* dout, const float* x, const float* rstd, int64_t n,
                      int64_t c, bool accumulate) {
  parallel_chunks(n, rows_per_task(c), [&](int64_t begin, int64_t end, int64_t) {
    for (int64_t i = begin; i < end; ++i) {
      const float* g = dout + i * c;
      const float* xr = x + i * c;
      float* d = dx + i * c;
      double dot = 0.0;
      for (int64_t j = 0; j < c; ++j) dot += static_cast<double>(g[j]) * static_cast<double>(xr[j]);
      const float r = rstd[i];
      const double rd = r;
      const float k = static_cast<float>(rd * rd * rd * (dot / static_cast<double>(c)));
      // dx may alias dout: element j of dout is read before element j of dx is written.
      for (int64_t j = 0; j < c; ++j) {
        const float a = r * g[j];
        const float b = xr[j] * k;
        const float v = a - b;
        d[j] = accumulate ? d[j] + v : v;
      }
    }
  });
}

void gelu_forward(void* out, nm_dtype out_dtype, const float* x, int64_t n) {
  parallel_chunks(n, kChunk, [&](int64_t begin, int64_t end, int64_t) {
    if (out_dtype == NM_F32) {
      float* dst = static_cast<float*>(out);
      for (int64_t i = begin; i < end; ++i) dst[i] = gelu(x[i]);
    } else {
      uint16_t* dst = static_cast<uint16_t*>(out);
      for (int64_t i = begin; i < end; ++i) dst[i] = nm_f32_to_bf16(gelu(x[i]));
    }
  });
}

void gelu_backward(float* dx, const float* dout, const float* x, int64_t n) {
  parallel_chunks(n, kChunk, [&](int64_t begin, int64_t end, int64_t) {
    for (int64_t i = begin; i < end; ++i) dx[i] = dout[i] * gelu_grad(x[i]);
  });
}

}  // namespace nm::cpu
