// The element-wise reductions handed to Gloo. Gloo has no bfloat16 type: bf16 travels as 16-bit
// words and is summed by widening to f32 and rounding back after every addition (round to nearest
// even, as csrc/core/bf16.h and NCCL do), so a sum of two values is the correctly rounded sum.
#ifndef NM_GLOO_REDUCE_FUNCTIONS_H
#define NM_GLOO_REDUCE_FUNCTIONS_H

#include <cstddef>
#include <cstdint>

#include "../core/bf16.h"

namespace nm_gloo {

// Gloo's allreduce signature: out[i] = a[i] + b[i] (out may alias a or b).
inline void sum_f32(void* out, const void* a, const void* b, size_t n) {
  float* o = static_cast<float*>(out);
  const float* x = static_cast<const float*>(a);
  const float* y = static_cast<const float*>(b);
  for (size_t i = 0; i < n; i++) o[i] = x[i] + y[i];
}

inline void sum_bf16(void* out, const void* a, const void* b, size_t n) {
  uint16_t* o = static_cast<uint16_t*>(out);
  const uint16_t* x = static_cast<const uint16_t*>(a);
  const uint16_t* y = static_cast<const uint16_t*>(b);
  for (size_t i = 0; i < n; i++) o[i] = nm_f32_to_bf16(nm_bf16_to_f32(x[i]) + nm_bf16_to_f32(y[i]));
}

// The reduce-scatter template's signature: x[i] = x[i] + y[i].
inline void accumulate_f32(float* x, const float* y, size_t n) { sum_f32(x, x, y, n); }
inline void accumulate_bf16(uint16_t* x, const uint16_t* y, size_t n) { sum_bf16(x, x, y, n); }

// AVG = SUM / world size, applied in place after the sum.
inline void divide_f32(void* data, size_t n, int world) {
  float* d = static_cast<float*>(data);
  const float w = static_cast<float>(world);
  for (size_t i = 0; i < n; i++) d[i] = d[i] / w;
}

inline void divide_bf16(void* data, size_t n, int world) {
  uint16_t* d = static_cast<uint16_t*>(data);
  const float w = static_cast<float>(world);
  for (size_t i = 0; i < n; i++) d[i] = nm_f32_to_bf16(nm_bf16_to_f32(d[i]) / w);
}

}  // namespace nm_gloo

#endif  // NM_GLOO_REDUCE_FUNCTIONS_H
