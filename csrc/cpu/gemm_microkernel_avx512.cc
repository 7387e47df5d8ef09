// AVX-512F GEMM micro-kernel (6 x 32): the same algorithm as the AVX2 6 x 16 kernel with
// 16-wide zmm vectors, so each row of the tile is two vectors and there are 12 accumulators.
//
// Why the same shape rather than a taller tile: it keeps the kernel obviously correct and the
// packing/blocking code shared; 12 independent FMA chains already cover the FMA latency.
// Only AVX-512F instructions are used, enabled per function by the target attribute (the file
// is compiled without -mavx512f) and called only after __builtin_cpu_supports("avx512f").
//
// Tested for correctness and speed on AMD EPYC Zen 4 (which has AVX-512F): there it runs at
// the same rate as the AVX2 kernel, since Zen 4 executes a zmm FMA as two 256-bit halves.
// Cores with two full-width 512-bit FMA units (Intel server parts) should gain more; that has
// not been measured.
#include "gemm_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

namespace nm::cpu::gemm_detail {
namespace {

constexpr int kMR = 6;
constexpr int kNR = 32;

__attribute__((target("avx512f"))) void microkernel_avx512_6x32(int64_t kc, const float* a,
                                                                 const float* b, float* c,
                                                                 int64_t ldc, float alpha,
                                                                 float beta) {
  __m512 acc[kMR][2];
#pragma GCC unroll 6
  for (int i = 0; i < kMR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();

  // Warm the C tile (two cache lines per row) while the k loop runs.
#pragma GCC unroll 6
  for (int i = 0; i < kMR; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 16), _MM_HINT_T0);
  }

#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_load_ps(b);
    const __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      acc[i][0] = _mm512_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += kMR;
    b += kNR;
  }

  const __m512 va = _mm512_set1_ps(alpha);
  if (beta == 0.0f) {  // write-only: C may hold NaN that must not propagate
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      _mm512_storeu_ps(c + i * ldc, _mm512_mul_ps(va, acc[i][0]));
      _mm512_storeu_ps(c + i * ldc + 16, _mm512_mul_ps(va, acc[i][1]));
    }
  } else {
    const __m512 vb = _mm512_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      float* row = c + i * ldc;
      _mm512_storeu_ps(row, _mm512_fmadd_ps(vb, _mm512_loadu_ps(row), _mm512_mul_ps(va, acc[i][0])));
      _mm512_storeu_ps(row + 16, _mm512_fmadd_ps(vb, _mm512_loadu_ps(row + 16),
                                                 _mm512_mul_ps(va, acc[i][1])));
    }
  }
}

// Blocking, measured on a 2-core AMD EPYC (Zen 4: 32 KiB L1d, 1 MiB L2 per core, 32 MiB L3),
// where kc = 128..768 with mc = 24..144 all land within ~5% (Zen 4 runs zmm FMAs as two
// 256-bit halves, so this kernel peaks at the same rate as the AVX2 one). A deep kc = 384 won:
// fewer passes over C outweigh the 48 KiB B micro-panel spilling from L1 into the fast L2.
// The A block 72 x 384 (108 KiB) stays in L2; the B block 384 x 4096 (6 MiB) in L3.
const KernelInfo kAvx512 = {"avx512", kMR, kNR, 72, 384, 4096, microkernel_avx512_6x32};

}  // namespace

const KernelInfo* avx512_kernel() { return &kAvx512; }

}  // namespace nm::cpu::gemm_detail

#else  // not x86: no AVX-512 kernel in this build

namespace nm::cpu::gemm_detail {
const KernelInfo* avx512_kernel() { return nullptr; }
}  // namespace nm::cpu::gemm_detail

#endif
