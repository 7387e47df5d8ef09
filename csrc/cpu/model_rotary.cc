// Rotary position embedding (half-split form) in place on the q and k parts of a fused qkv
// buffer [B, T, 3, H, D]. See model_kernels_b.h for the exact rounding.
//
// The cos and sin tables [T, D/2] are built once per call (double-precision angle, cos and sin, each
// rounded to f32 once), then every (b, t) row rotates its 2*H head vectors with f32 products.
// Built with -std=c++17 (GCC: -ffp-contract=off), so no product is fused into an FMA and the
// result is the same on every x86-64 machine and for every thread count.
#include <algorithm>
#include <cmath>
#include <vector>

#include "model_kernels_b.h"
#include "parallel.h"

namespace nm::cpu {

void rotary(float* qkv, int64_t b, int64_t t, int64_t heads, int64_t head_dim, float base,
            bool inverse) {
  const int64_t half = head_dim / 2;
  const int64_t c = heads * head_dim;
  const int64_t rows = b * t;
  if (rows == 0 || half == 0) return;

  // cos_tab / sin_tab[pos * half + j]: separate arrays so the rotation loop vectorizes.
  std::vector<float> cos_tab(static_cast<size_t>(t * half)), sin_tab(cos_tab.size());
  std::vector<double> inv_freq(static_cast<size_t>(half));
  for (int64_t j = 0; j < half; ++j) {
    inv_freq[j] = std::pow(static_cast<double>(base),
                           -2.0 * static_cast<double>(j) / static_cast<double>(head_dim));
  }
  const int64_t table_rows_per_task = std::max<int64_t>(1, 4096 / half);
  parallel_chunks(t, table_rows_per_task, [&](int64_t begin, int64_t end, int64_t) {
    for (int64_t pos = begin; pos < end; ++pos) {
      for (int64_t j = 0; j < half; ++j) {
        const double angle = static_cast<double>(pos) * inv_freq[j];
        cos_tab[pos * half + j] = static_cast<float>(std::cos(angle));
        sin_tab[pos * half + j] = static_cast<float>(std::sin(angle));
      }
    }
  });

  const int64_t rows_per_task = std::max<int64_t>(1, (int64_t{1} << 15) / (2 * c));
  const float* cos_all = cos_tab.data();
  const float* sin_all = sin_tab.data();
  parallel_chunks(rows, rows_per_task, [&](int64_t begin, int64_t end, int64_t) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t pos = r % t;
      const float* co = cos_all + pos * half;
      const float* si = sin_all + pos * half;
      float* row = qkv + r * 3 * c;
      // q heads then k heads: 2*H contiguous head vectors at the start of the row.
      for (int64_t v = 0; v < 2 * heads; ++v) {
        float* x1 = row + v * head_dim;
        float* x2 = x1 + half;
        if (!inverse) {
          for (int64_t j = 0; j < half; ++j) {
            const float a = x1[j], bb = x2[j];
            x1[j] = a * co[j] + bb * si[j];
            x2[j] = bb * co[j] - a * si[j];
          }
        } else {
          for (int64_t j = 0; j < half; ++j) {
            const float a = x1[j], bb = x2[j];
            x1[j] = a * co[j] - bb * si[j];
            x2[j] = bb * co[j] + a * si[j];
          }
        }
      }
    }
  });
}

}  // namespace nm::cpu
