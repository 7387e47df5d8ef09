// Token embedding: the gather forward and its deterministic scatter-add backward.
//
// Backward scheme: a stable counting sort groups the positions by id (positions of one id stay
// in increasing order), then the channels are split into fixed chunks run in parallel; within a
// chunk every touched vocab row sums its dout rows in double, in increasing position, and adds
// the sum to dwte with one f32 rounding. Each (row, channel) is owned by exactly one task and
// the summation order is fixed by the data alone, so the bits never depend on the thread count
// or timing (and they equal the CUDA backend's, which sums the same way).
#include <cmath>
#include <cstring>
#include <limits>

#include "model_kernels_a.h"
#include "parallel.h"

namespace nm::cpu {
namespace {

// Channels per backward task: 64 doubles of accumulator stay in registers / L1.
constexpr int64_t kChannelChunk = 64;

// About 256 KiB of output per forward task.
int64_t rows_per_task(int64_t c) {
  const int64_t rows = (int64_t{1} << 16) / (c > 0 ? c : 1);
  return rows > 0 ? rows : 1;
}

}  // namespace

void embedding_forward(float* out, const float* wte, const int32_t* ids, int64_t n, int64_t c) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  parallel_chunks(n, rows_per_task(c), [&](int64_t begin, int64_t end, int64_t) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t id = ids[i];
      float* dst = out + i * c;
      if (id < 0) {  // a caller bug (the op has no vocab to check the top end against)
        for (int64_t j = 0; j < c; ++j) dst[j] = nan;
        continue;
      }
      std::memcpy(dst, wte + id * c, static_cast<size_t>(c) * sizeof(float));
    }
  });
}

size_t embedding_backward_workspace_bytes(int64_t n, int64_t vocab) {
  // offsets[vocab + 1] and order[n], both int64.
  return static_cast<size_t>(vocab + 1 + n) * sizeof(int64_t);
}

void embedding_backward(float* dwte, const float* dout, const int32_t* ids, int64_t n, int64_t c,
                        int64_t vocab, void* workspace) {
  int64_t* offsets = static_cast<int64_t*>(workspace);  // [vocab + 1]
  int64_t* order = offsets + (vocab + 1);                // [n]

  // Stable counting sort of the positions by id (sequential: O(n + vocab), cheap next to the
  // O(n * c) sums). Afterwards the positions of id v are order[offsets[v] .. offsets[v + 1]),
  // in increasing order.
  std::memset(offsets, 0, static_cast<size_t>(vocab + 1) * sizeof(int64_t));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ids[i];
    if (id >= 0 && id < vocab) ++offsets[id + 1];
  }
  for (int64_t v = 0; v < vocab; ++v) offsets[v + 1] += offsets[v];
  // Scatter with offsets[v] as the cursor of id v: afterwards offsets[v] is the end of v's
  // positions, i.e. the start of v + 1's, so the starts are shifted one slot to the right.
  for (int64_t i = 0; i < n; ++i) {
    const int64_t id = ids[i];
    if (id >= 0 && id < vocab) order[offsets[id]++] = i;
  }
  // Undo the shift: offsets[v] = start of v again (offsets[vocab] is still the total count).
  for (int64_t v = vocab; v > 0; --v) offsets[v] = offsets[v - 1];
  offsets[0] = 0;

  parallel_chunks(c, kChannelChunk, [&](int64_t c0, int64_t c1, int64_t) {
    const int64_t width = c1 - c0;
    double acc[kChannelChunk];
    for (int64_t v = 0; v < vocab; ++v) {
      const int64_t start = offsets[v], stop = offsets[v + 1];
      if (start == stop) continue;
      for (int64_t j = 0; j < width; ++j) acc[j] = 0.0;
      for (int64_t k = start; k < stop; ++k) {
        const float* src = dout + order[k] * c + c0;
        for (int64_t j = 0; j < width; ++j) acc[j] += static_cast<double>(src[j]);
      }
      float* dst = dwte + v * c + c0;
      for (int64_t j = 0; j < width; ++j) {
        dst[j] = static_cast<float>(static_cast<double>(dst[j]) + acc[j]);
      }
    }
  });
}

}  // namespace nm::cpu
