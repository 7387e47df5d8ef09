// Splits [0, n) into fixed-size chunks run on compute_pool(). Chunk boundaries depend only on n
// and chunk, never on the thread count, so results (e.g. reductions) are reproducible anywhere.
#ifndef NM_CPU_PARALLEL_H
#define NM_CPU_PARALLEL_H

#include <algorithm>
#include <cstdint>

#include "thread_pool.h"

namespace nm::cpu {

template <typename Fn>
void parallel_chunks(int64_t n, int64_t chunk, Fn&& fn) {
  if (n <= 0) return;
  const int64_t chunks = (n + chunk - 1) / chunk;
  if (chunks == 1) {
    fn(int64_t{0}, n, int64_t{0});
    return;
  }
  compute_pool().parallel_for(chunks, [&](int64_t c) {
    const int64_t begin = c * chunk;
    fn(begin, std::min(n, begin + chunk), c);
  });
}

}  // namespace nm::cpu

#endif  // NM_CPU_PARALLEL_H
