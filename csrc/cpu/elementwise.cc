// fill, cast and the elementwise arithmetic ops. f32 and bf16 share one code path through
// load/store helpers: bf16 is widened to f32, computed, and rounded back (nearest even).
#include <cmath>
#include <cstring>
#include <vector>

#include "../core/bf16.h"
#include "kernels.h"
#include "parallel.h"

namespace nm::cpu {
namespace {

constexpr int64_t kChunk = 1 << 16;

inline float load(const void* p, nm_dtype dtype, int64_t i) {
  return dtype == NM_BF16 ? nm_bf16_to_f32(static_cast<const uint16_t*>(p)[i])
                          : static_cast<const float*>(p)[i];
}

inline void store(void* p, nm_dtype dtype, int64_t i, float v) {
  if (dtype == NM_BF16) {
    static_cast<uint16_t*>(p)[i] = nm_f32_to_bf16(v);
  } else {
    static_cast<float*>(p)[i] = v;
  }
}

// Applies out[i] = f(i) over [0, n) in parallel chunks.
template <typename F>
void map(void* out, nm_dtype dtype, int64_t n, F f) {
  parallel_chunks(n, kChunk, [&](int64_t begin, int64_t end, int64_t) {
    if (dtype == NM_F32) {
      float* o = static_cast<float*>(out);
      for (int64_t i = begin; i < end; ++i) o[i] = f(i);
    } else {
      for (int64_t i = begin; i < end; ++i) store(out, dtype, i, f(i));
    }
  });
}

}  // namespace

void fill(void* dst, nm_dtype dtype, int64_t n, double value) {
  switch (dtype) {
    case NM_F32: {
      const float v = static_cast<float>(value);
      map(dst, dtype, n, [v](int64_t) { return v; });
      return;
    }
    case NM_BF16: {
      // Round once from the double's f32 value, then replicate the bit pattern.
      const uint16_t bits = nm_f32_to_bf16(static_cast<float>(value));
      uint16_t* d = static_cast<uint16_t*>(dst);
      parallel_chunks(n, kChunk, [&](int64_t b, int64_t e, int64_t) {
        for (int64_t i = b; i < e; ++i) d[i] = bits;
      });
      return;
    }
    case NM_I32: {
      const int32_t v = static_cast<int32_t>(value);
      int32_t* d = static_cast<int32_t*>(dst);
      parallel_chunks(n, kChunk, [&](int64_t b, int64_t e, int64_t) {
        for (int64_t i = b; i < e; ++i) d[i] = v;
      });
      return;
    }
    case NM_U16: {
      const uint16_t v = static_cast<uint16_t>(value);
      uint16_t* d = static_cast<uint16_t*>(dst);
      parallel_chunks(n, kChunk, [&](int64_t b, int64_t e, int64_t) {
        for (int64_t i = b; i < e; ++i) d[i] = v;
      });
      return;
    }
  }
}

bool cast_supported(nm_dtype dst, nm_dtype src) {
  const bool floats = (dst == NM_F32 || dst == NM_BF16) && (src == NM_F32 || src == NM_BF16);
  return floats || (dst == NM_I32 && src == NM_U16) || (dst == NM_F32 && src == NM_I32);
}

void cast(void* dst, nm_dtype dst_dtype, const void* src, nm_dtype src_dtype, int64_t n) {
  if (dst_dtype == src_dtype) {
    std::memmove(dst, src, static_cast<size_t>(n) * nm_dtype_size(dst_dtype));
    return;
  }
  if (dst_dtype == NM_I32 && src_dtype == NM_U16) {
    const uint16_t* s = static_cast<const uint16_t*>(src);
    int32_t* d = static_cast<int32_t*>(dst);
    parallel_chunks(n, kChunk, [&](int64_t b, int64_t e, int64_t) {
      for (int64_t i = b; i < e; ++i) d[i] = s[i];
    });
    return;
  }
  if (dst_dtype == NM_F32 && src_dtype == NM_I32) {
    const int32_t* s = static_cast<const int32_t*>(src);
    map(dst, dst_dtype, n, [s](int64_t i) { return static_cast<float>(s[i]); });
    return;
  }
  map(dst, dst_dtype, n, [=](int64_t i) { return load(src, src_dtype, i); });
}

void binary(nm_binary_op op, void* out, const void* a, const void* b, nm_dtype dtype, int64_t n) {
  switch (op) {
    case NM_ADD:
      map(out, dtype, n, [=](int64_t i) { return load(a, dtype, i) + load(b, dtype, i); });
      return;
    case NM_SUB:
      map(out, dtype, n, [=](int64_t i) { return load(a, dtype, i) - load(b, dtype, i); });
      return;
    case NM_MUL:
      map(out, dtype, n, [=](int64_t i) { return load(a, dtype, i) * load(b, dtype, i); });
      return;
  }
}

void scale(void* out, const void* x, float alpha, nm_dtype dtype, int64_t n) {
  map(out, dtype, n, [=](int64_t i) { return alpha * load(x, dtype, i); });
}

void axpy(void* y, const void* x, float alpha, nm_dtype dtype, int64_t n) {
  // fmaf keeps y + alpha*x to one rounding, the same as the CUDA kernel's fmaf.
  map(y, dtype, n, [=](int64_t i) { return std::fmaf(alpha, load(x, dtype, i), load(y, dtype, i)); });
}

float sum(const void* x, nm_dtype dtype, int64_t n, bool squares) {
  constexpr int64_t kReduceChunk = 1 << 14;
  const int64_t chunks = (n + kReduceChunk - 1) / kReduceChunk;
  std::vector<double> partial(static_cast<size_t>(chunks > 0 ? chunks : 0), 0.0);
  parallel_chunks(n, kReduceChunk, [&](int64_t b, int64_t e, int64_t c) {
    double acc = 0.0;
    for (int64_t i = b; i < e; ++i) {
      const double v = load(x, dtype, i);
      acc += squares ? v * v : v;
    }
    partial[static_cast<size_t>(c)] = acc;
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return static_cast<float>(total);
}

void copy_rows(void* dst, int64_t dst_stride, const void* src, int64_t src_stride, int64_t rows,
               int64_t row_bytes) {
  char* d = static_cast<char*>(dst);
  const char* s = static_cast<const char*>(src);
  // Rows may be tiny; give each parallel item a band of rows worth ~256 KiB.
  const int64_t band = std::max<int64_t>(1, (int64_t{1} << 18) / std::max<int64_t>(row_bytes, 1));
  parallel_chunks(rows, band, [&](int64_t b, int64_t e, int64_t) {
    for (int64_t r = b; r < e; ++r) {
      std::memmove(d + r * dst_stride, s + r * src_stride, static_cast<size_t>(row_bytes));
    }
  });
}

}  // namespace nm::cpu
