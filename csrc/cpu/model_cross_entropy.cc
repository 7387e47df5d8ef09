// Softmax cross-entropy with the gradient written over the logits (no second [n, vocab] buffer).
//
// Per row: m = max_j logits (f32); s = sum_j exp(logits_j - m) accumulated in double;
// lse = m + log(s) and loss = lse - logits[target], both in double, rounded once. The gradient
// grad_scale * (softmax - onehot) uses p_j = exp(logits_j - m) * f32(1/s). Rows run in parallel;
// a row's result does not depend on the thread count.
#include <cmath>
#include <limits>

#include "model_kernels_a.h"
#include "parallel.h"

namespace nm::cpu {
namespace {

int64_t rows_per_task(int64_t vocab) {
  const int64_t rows = (int64_t{1} << 15) / (vocab > 0 ? vocab : 1);
  return rows > 0 ? rows : 1;
}

}  // namespace

void cross_entropy(float* losses, float* logits, const int32_t* targets, int64_t n,
                   int64_t vocab, float grad_scale) {
  parallel_chunks(n, rows_per_task(vocab), [&](int64_t begin, int64_t end, int64_t) {
    for (int64_t i = begin; i < end; ++i) {
      float* row = logits + i * vocab;
      const int64_t t = targets[i];
      const bool valid = t >= 0 && t < vocab;  // out of range is a caller bug: NaN loss

      float m = row[0];
      for (int64_t j = 1; j < vocab; ++j) m = std::fmax(m, row[j]);
      double s = 0.0;
      for (int64_t j = 0; j < vocab; ++j) s += static_cast<double>(std::exp(row[j] - m));
      const double lse = static_cast<double>(m) + std::log(s);
      losses[i] = valid ? static_cast<float>(lse - static_cast<double>(row[t]))
                        : std::numeric_limits<float>::quiet_NaN();

      if (grad_scale != 0.0f) {
        // The loss above read row[t]; from here on each element is read, then overwritten.
        const float inv_s = static_cast<float>(1.0 / s);
        for (int64_t j = 0; j < vocab; ++j) {
          const float p = std::exp(row[j] - m) * inv_s;
          const float d = (valid && j == t) ? p - 1.0f : p;
          row[j] = grad_scale * d;
        }
      }
    }
  });
}

}  // namespace nm::cpu
