// bfloat16 <-> float conversion on the host (the CUDA module uses the same bit rules through
// cuda_bf16.h). bf16 is the top 16 bits of an IEEE float; rounding is to nearest, ties to even,
// and any NaN stays a (quiet) NaN instead of rounding into infinity.
#ifndef NM_CORE_BF16_H
#define NM_CORE_BF16_H

#include <stdint.h>
#include <string.h>

static inline uint16_t nm_f32_to_bf16(float value) {
  uint32_t bits;
  memcpy(&bits, &value, sizeof bits);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x0040u);  // NaN
  uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
  return (uint16_t)((bits + rounding_bias) >> 16);
}

static inline float nm_bf16_to_f32(uint16_t value) {
  uint32_t bits = (uint32_t)value << 16;
  float out;
  memcpy(&out, &bits, sizeof out);
  return out;
}

#endif  // NM_CORE_BF16_H
