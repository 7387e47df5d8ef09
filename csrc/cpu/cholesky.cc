// cholesky_inverse: kinv = (k + ridge I)^-1 for a batch of symmetric [d, d] matrices, through a
// Cholesky factorisation in double precision (this is the accurate reference).
//
// Per matrix, with dp = d rounded up to a multiple of 4 (the padding is an identity block, so
// every tile below is full and every dot product has a length that is a multiple of 4):
//   1. any non-finite value -> info -1, kinv = I.
//   2. a = sym(k) + ridge I in double, lower triangle (rows of length dp, row-major).
//   3. a = L L^T, left-looking and blocked: for each block of kBlock columns, subtract the
//      contributions of all earlier columns with a register-tiled dot-product kernel, then
//      factor the block 4 columns at a time. A pivot that is not > 0 at row i -> info i + 1.
//   4. V = L^-T (upper triangular), by the same left-looking scheme on V L^T = I, row by row:
//      V[i][j] = (delta_ij - sum_{i<=p<j} V[i][p] L[j][p]) / L[j][j].
//   5. kinv = V V^T (only the lower half computed, mirrored), rounded to f32.
// Every inner loop walks contiguous memory: all three phases are sums over rows of L or V.
//
// The dot-product tile (4 rows x 2 rows, 8 accumulators) is the only ISA-specific piece: an
// AVX2+FMA version (compiled with a target attribute, picked at runtime like the GEMM kernels)
// and a portable one. NM_GEMM_KERNEL=generic forces the portable one, as it does for the GEMM.
//
// Threading: with at least as many matrices as pool threads, one matrix per pool item, each
// with its own work area (a slot). Otherwise the matrices run one after another and the big
// tile sweeps inside each one are spread over the pool. The pool is never entered twice.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "cpu_features.h"
#include "optim_kernels.h"
#include "thread_pool.h"

namespace nm::cpu {
namespace {

constexpr int64_t kBlock = 64;  // columns per outer block (a multiple of 4)
constexpr int64_t kNoMask = INT64_MAX;

int64_t round_up4(int64_t v) { return (v + 3) / 4 * 4; }

// out[r * 2 + s] = sum_{p < len} a[r * lda + p] * b[s * ldb + p]  for r < 4, s < 2.
// len is a multiple of 4 (possibly 0).
using DotTile = void (*)(const double* a, int64_t lda, const double* b, int64_t ldb, int64_t len,
                         double* out);

void dot_tile_generic(const double* a, int64_t lda, const double* b, int64_t ldb, int64_t len,
                      double* out) {
  // Two partial sums per output (even / odd p) to halve the add dependency chains.
  double acc[8][2] = {};
  const double* b0 = b;
  const double* b1 = b + ldb;
  for (int r = 0; r < 4; ++r) {
    const double* ar = a + r * lda;
    for (int64_t p = 0; p < len; p += 2) {
      acc[r * 2 + 0][0] += ar[p] * b0[p];
      acc[r * 2 + 1][0] += ar[p] * b1[p];
      acc[r * 2 + 0][1] += ar[p + 1] * b0[p + 1];
      acc[r * 2 + 1][1] += ar[p + 1] * b1[p + 1];
    }
  }
  for (int t = 0; t < 8; ++t) out[t] = acc[t][0] + acc[t][1];
}

#if defined(__x86_64__) || defined(__i386__)
// 8 ymm accumulators (4 doubles each) + 2 B vectors + 1 A vector: 11 of the 16 registers, and
// 8 independent FMA chains, enough to cover the FMA latency at two FMAs per cycle.
__attribute__((target("avx2,fma"))) void dot_tile_avx2(const double* a, int64_t lda,
                                                       const double* b, int64_t ldb, int64_t len,
                                                       double* out) {
  const double* a0 = a;
  const double* a1 = a + lda;
  const double* a2 = a + 2 * lda;
  const double* a3 = a + 3 * lda;
  const double* b0 = b;
  const double* b1 = b + ldb;
  __m256d c00 = _mm256_setzero_pd(), c01 = _mm256_setzero_pd();
  __m256d c10 = _mm256_setzero_pd(), c11 = _mm256_setzero_pd();
  __m256d c20 = _mm256_setzero_pd(), c21 = _mm256_setzero_pd();
  __m256d c30 = _mm256_setzero_pd(), c31 = _mm256_setzero_pd();
  for (int64_t p = 0; p < len; p += 4) {
    const __m256d y0 = _mm256_loadu_pd(b0 + p);
    const __m256d y1 = _mm256_loadu_pd(b1 + p);
    __m256d x = _mm256_loadu_pd(a0 + p);
    c00 = _mm256_fmadd_pd(x, y0, c00);
    c01 = _mm256_fmadd_pd(x, y1, c01);
    x = _mm256_loadu_pd(a1 + p);
    c10 = _mm256_fmadd_pd(x, y0, c10);
    c11 = _mm256_fmadd_pd(x, y1, c11);
    x = _mm256_loadu_pd(a2 + p);
    c20 = _mm256_fmadd_pd(x, y0, c20);
    c21 = _mm256_fmadd_pd(x, y1, c21);
    x = _mm256_loadu_pd(a3 + p);
    c30 = _mm256_fmadd_pd(x, y0, c30);
    c31 = _mm256_fmadd_pd(x, y1, c31);
  }
  // Horizontal sums, two outputs at a time: hadd gives [s0 lo pair, s1 lo pair, s0 hi, s1 hi].
  const __m256d h0 = _mm256_hadd_pd(c00, c01);
  const __m256d h1 = _mm256_hadd_pd(c10, c11);
  const __m256d h2 = _mm256_hadd_pd(c20, c21);
  const __m256d h3 = _mm256_hadd_pd(c30, c31);
  _mm_storeu_pd(out + 0, _mm_add_pd(_mm256_castpd256_pd128(h0), _mm256_extractf128_pd(h0, 1)));
  _mm_storeu_pd(out + 2, _mm_add_pd(_mm256_castpd256_pd128(h1), _mm256_extractf128_pd(h1, 1)));
  _mm_storeu_pd(out + 4, _mm_add_pd(_mm256_castpd256_pd128(h2), _mm256_extractf128_pd(h2, 1)));
  _mm_storeu_pd(out + 6, _mm_add_pd(_mm256_castpd256_pd128(h3), _mm256_extractf128_pd(h3, 1)));
}
#endif

DotTile select_dot_tile() {
  const char* env = std::getenv("NM_GEMM_KERNEL");
  const bool force_generic = env != nullptr && std::strcmp(env, "generic") == 0;
#if defined(__x86_64__) || defined(__i386__)
  if (!force_generic && cpu_has_avx2_fma()) return dot_tile_avx2;
#endif
  (void)force_generic;
  return dot_tile_generic;
}

DotTile dot_tile() {
  static const DotTile tile = select_dot_tile();
  return tile;
}

// Runs fn(0..n-1) on the pool (pool != nullptr) or inline.
void for_each(ThreadPool* pool, int64_t n, const std::function<void(int64_t)>& fn) {
  if (pool == nullptr || n <= 1) {
    for (int64_t i = 0; i < n; ++i) fn(i);
  } else {
    pool->parallel_for(n, fn);
  }
}

// c[r * ldc + s] -= sum_{p < len} a[r * lda + p] * b[s * ldb + p]  for r < 4 and s < n (n even),
// leaving alone the elements with s - r > max_diff (the upper triangle of a diagonal block).
void sub_dots_4(DotTile tile, double* c, int64_t ldc, const double* a, int64_t lda,
                const double* b, int64_t ldb, int64_t n, int64_t len, int64_t max_diff) {
  if (len == 0) return;
  double t[8];
  for (int64_t s0 = 0; s0 < n; s0 += 2) {
    if (s0 - 3 > max_diff) break;  // this pair and every later one are fully masked
    tile(a, lda, b + s0 * ldb, ldb, len, t);
    for (int64_t r = 0; r < 4; ++r) {
      for (int64_t s = 0; s < 2; ++s) {
        if (s0 + s - r <= max_diff) c[r * ldc + s0 + s] -= t[r * 2 + s];
      }
    }
  }
}

// In place: the lower triangle of l ([dp, dp], rows of length dp) becomes L with L L^T = l.
// Returns 0, or i + 1 when the pivot of row i is not positive (or is NaN). The strict upper
// triangle is never read or written.
int64_t cholesky_lower(double* l, int64_t dp, DotTile tile, ThreadPool* pool) {
  for (int64_t kb = 0; kb < dp; kb += kBlock) {
    const int64_t ke = std::min(dp, kb + kBlock);
    if (kb > 0) {
      // Rows [kb, dp) x columns [kb, ke): subtract the contributions of columns [0, kb).
      for_each(pool, (dp - kb) / 4, [&](int64_t t) {
        const int64_t i0 = kb + 4 * t;
        sub_dots_4(tile, l + i0 * dp + kb, dp, l + i0 * dp, dp, l + kb * dp, dp, ke - kb, kb,
                   i0 - kb);
      });
    }
    for (int64_t jj = kb; jj < ke; jj += 4) {
      // Columns [jj, jj + 4), rows [jj, dp): subtract the contributions of columns [kb, jj).
      if (jj > kb) {
        for (int64_t i0 = jj; i0 < dp; i0 += 4) {
          sub_dots_4(tile, l + i0 * dp + jj, dp, l + i0 * dp + kb, dp, l + jj * dp + kb, dp, 4,
                     jj - kb, i0 - jj);
        }
      }
      // Factor the 4 x 4 diagonal block.
      for (int64_t i = jj; i < jj + 4; ++i) {
        double* li = l + i * dp;
        for (int64_t j = jj; j <= i; ++j) {
          const double* lj = l + j * dp;
          double s = li[j];
          for (int64_t p = jj; p < j; ++p) s -= li[p] * lj[p];
          if (j < i) {
            li[j] = s / lj[j];
          } else {
            if (!(s > 0.0)) return i + 1;
            li[i] = std::sqrt(s);
          }
        }
      }
      // The rows below it, columns [jj, jj + 4).
      const double* l0 = l + jj * dp;
      const double* l1 = l0 + dp;
      const double* l2 = l1 + dp;
      const double* l3 = l2 + dp;
      for (int64_t i = jj + 4; i < dp; ++i) {
        double* x = l + i * dp + jj;
        const double x0 = x[0] / l0[jj];
        const double x1 = (x[1] - x0 * l1[jj]) / l1[jj + 1];
        const double x2 = (x[2] - x0 * l2[jj] - x1 * l2[jj + 1]) / l2[jj + 2];
        const double x3 = (x[3] - x0 * l3[jj] - x1 * l3[jj + 1] - x2 * l3[jj + 2]) / l3[jj + 3];
        x[0] = x0;
        x[1] = x1;
        x[2] = x2;
        x[3] = x3;
      }
    }
  }
  return 0;
}

// v ([dp, dp]) = L^-T, upper triangular, from the lower triangle of l. v must hold the identity
// on entry (it is the right-hand side, and its zeros below the diagonal let every tile start its
// dot products at a multiple of 4).
void invert_transpose(double* v, const double* l, int64_t dp, DotTile tile, ThreadPool* pool) {
  for (int64_t jb = 0; jb < dp; jb += kBlock) {
    const int64_t je = std::min(dp, jb + kBlock);
    if (jb > 0) {
      // Rows [0, jb) x columns [jb, je): subtract V[i][p] L[j][p] over p in [i, jb).
      for_each(pool, jb / 4, [&](int64_t t) {
        const int64_t i0 = 4 * t;
        sub_dots_4(tile, v + i0 * dp + jb, dp, v + i0 * dp + i0, dp, l + jb * dp + i0, dp,
                   je - jb, jb - i0, kNoMask);
      });
    }
    for (int64_t jj = jb; jj < je; jj += 4) {
      // Rows [0, jj) x columns [jj, jj + 4): subtract the terms with p in [max(i, jb), jj).
      if (jj > jb) {
        for (int64_t i0 = 0; i0 < jj; i0 += 4) {
          const int64_t p0 = std::max(i0, jb);
          sub_dots_4(tile, v + i0 * dp + jj, dp, v + i0 * dp + p0, dp, l + jj * dp + p0, dp, 4,
                     jj - p0, kNoMask);
        }
      }
      // Finish columns [jj, jj + 4) of rows [0, jj + 4).
      for (int64_t i = 0; i < jj + 4; ++i) {
        double* vi = v + i * dp;
        const int64_t j_first = std::max(jj, i);
        for (int64_t j = j_first; j < jj + 4; ++j) {
          const double* lj = l + j * dp;
          double s = vi[j];
          for (int64_t p = j_first; p < j; ++p) s -= vi[p] * lj[p];
          vi[j] = s / lj[j];
        }
      }
    }
  }
}

// out ([d, d] f32, full) = V V^T, where V = v is upper triangular ([dp, dp]): the lower half
// is computed (row tile i, column pairs j <= i, dots over p in [i0, dp)) and mirrored.
void write_product(float* out, int64_t d, const double* v, int64_t dp, DotTile tile,
                   ThreadPool* pool) {
  for_each(pool, dp / 4, [&](int64_t t) {
    const int64_t i0 = 4 * t;
    if (i0 >= d) return;
    double dots[8];
    for (int64_t j0 = 0; j0 < i0 + 4; j0 += 2) {
      tile(v + i0 * dp + i0, dp, v + j0 * dp + i0, dp, dp - i0, dots);
      for (int64_t r = 0; r < 4; ++r) {
        const int64_t i = i0 + r;
        if (i >= d) break;
        for (int64_t s = 0; s < 2; ++s) {
          const int64_t j = j0 + s;
          if (j > i) break;
          const float value = static_cast<float>(dots[r * 2 + s]);
          out[i * d + j] = value;
          out[j * d + i] = value;
        }
      }
    }
  });
}

void write_identity(float* out, int64_t d) {
  std::memset(out, 0, static_cast<size_t>(d * d) * sizeof(float));
  for (int64_t i = 0; i < d; ++i) out[i * d + i] = 1.0f;
}

// One matrix. l and v are this matrix's work areas (dp * dp doubles each).
void invert_one(float* kinv, const float* k, int32_t* info, int64_t d, float ridge_mult,
                float ridge_eps, double* l, double* v, DotTile tile, ThreadPool* pool) {
  const int64_t dp = round_up4(d);
  for (int64_t i = 0; i < d * d; ++i) {
    if (!std::isfinite(k[i])) {
      write_identity(kinv, d);
      *info = -1;
      return;
    }
  }
  double trace = 0.0;
  for (int64_t i = 0; i < d; ++i) trace += static_cast<double>(k[i * d + i]);
  const double ridge =
      static_cast<double>(ridge_mult) * trace / static_cast<double>(d) + static_cast<double>(ridge_eps);

  // Lower triangle of sym(k) + ridge I, in square tiles so the transposed reads stay in cache;
  // the padding rows are identity rows.
  constexpr int64_t kT = 32;
  for (int64_t ib = 0; ib < d; ib += kT) {
    const int64_t ie = std::min(d, ib + kT);
    for (int64_t jb = 0; jb <= ib; jb += kT) {
      const int64_t je = std::min(d, jb + kT);
      for (int64_t i = ib; i < ie; ++i) {
        const int64_t j_end = std::min(je, i);  // strictly below the diagonal
        for (int64_t j = jb; j < j_end; ++j) {
          l[i * dp + j] =
              0.5 * (static_cast<double>(k[i * d + j]) + static_cast<double>(k[j * d + i]));
        }
      }
    }
    for (int64_t i = ib; i < ie; ++i) l[i * dp + i] = static_cast<double>(k[i * d + i]) + ridge;
  }
  for (int64_t i = d; i < dp; ++i) {
    for (int64_t j = 0; j < i; ++j) l[i * dp + j] = 0.0;
    l[i * dp + i] = 1.0;
  }

  const int64_t failed = cholesky_lower(l, dp, tile, pool);
  if (failed != 0) {
    write_identity(kinv, d);
    *info = static_cast<int32_t>(failed);
    return;
  }

  std::memset(v, 0, static_cast<size_t>(dp * dp) * sizeof(double));
  for (int64_t i = 0; i < dp; ++i) v[i * dp + i] = 1.0;
  invert_transpose(v, l, dp, tile, pool);
  write_product(kinv, d, v, dp, tile, pool);
  *info = 0;
}

// With at least as many matrices as threads, one matrix per pool item (one slot each);
// otherwise one slot, matrices in turn, the pool used inside each.
int64_t slot_count(int64_t batch) {
  const int64_t threads = compute_pool().size();
  return threads > 1 && batch >= threads ? threads : 1;
}

}  // namespace

size_t cholesky_inverse_workspace_bytes(int64_t batch, int64_t d) {
  if (batch <= 0 || d <= 0) return 0;
  const int64_t dp = round_up4(d);
  return static_cast<size_t>(slot_count(batch)) * 2 * static_cast<size_t>(dp * dp) *
             sizeof(double) +
         64;
}

void cholesky_inverse(float* kinv, const float* k, int32_t* info, int64_t batch, int64_t d,
                      float ridge_mult, float ridge_eps, void* workspace) {
  if (batch <= 0 || d <= 0) return;
  const int64_t dp = round_up4(d);
  const int64_t area = dp * dp;
  const int64_t slots = slot_count(batch);
  const uintptr_t raw = reinterpret_cast<uintptr_t>(workspace);
  double* base = reinterpret_cast<double*>((raw + 63) / 64 * 64);
  const DotTile tile = dot_tile();
  ThreadPool& pool = compute_pool();

  if (slots == 1) {
    ThreadPool* inner = pool.size() > 1 ? &pool : nullptr;
    for (int64_t b = 0; b < batch; ++b) {
      invert_one(kinv + b * d * d, k + b * d * d, info + b, d, ridge_mult, ridge_eps, base,
                 base + area, tile, inner);
    }
    return;
  }

  // At most `slots` items run at once, so a free slot always exists when an item starts.
  std::mutex slot_mutex;
  std::vector<int64_t> free_slots;
  free_slots.reserve(static_cast<size_t>(slots));
  for (int64_t s = 0; s < slots; ++s) free_slots.push_back(s);
  pool.parallel_for(batch, [&](int64_t b) {
    int64_t slot;
    {
      std::lock_guard<std::mutex> lock(slot_mutex);
      slot = free_slots.back();
      free_slots.pop_back();
    }
    double* l = base + slot * 2 * area;
    invert_one(kinv + b * d * d, k + b * d * d, info + b, d, ridge_mult, ridge_eps, l, l + area,
               tile, nullptr);
    std::lock_guard<std::mutex> lock(slot_mutex);
    free_slots.push_back(slot);
  });
}

}  // namespace nm::cpu
