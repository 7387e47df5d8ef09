// AVX2 + FMA GEMM micro-kernel (6 x 16): the default on x86-64 CPUs without AVX-512.
//
// Why 6 x 16: AVX2 has 16 ymm registers. 6 rows x 2 vectors = 12 accumulators, plus 2 for the
// B row and 1 for the broadcast A element, uses 15 of them. 12 independent FMA chains cover
// the FMA latency (4-5 cycles) at two FMAs per cycle, and each k step does 12 FMAs for only
// 2 vector loads + 6 broadcasts, so the kernel is compute bound from L1.
//
// Compiled without -mavx2 (one binary for every x86-64): the target attribute enables the
// instructions for this function only, and gemm.cc calls it only after
// __builtin_cpu_supports("avx2") and ("fma") say the CPU has them.
#include "gemm_internal.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

namespace nm::cpu::gemm_detail {
namespace {

constexpr int kMR = 6;
constexpr int kNR = 16;

__attribute__((target("avx2,fma"))) void microkernel_avx2_6x16(int64_t kc, const float* a,
                                                                const float* b, float* c,
                                                                int64_t ldc, float alpha,
                                                                float beta) {
  __m256 acc[kMR][2];
#pragma GCC unroll 6
  for (int i = 0; i < kMR; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_ps();

  // Warm the C tile while the k loop runs; it is needed only at the end.
#pragma GCC unroll 6
  for (int i = 0; i < kMR; ++i) _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);

#pragma GCC unroll 4
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      const __m256 ai = _mm256_broadcast_ss(a + i);
      acc[i][0] = _mm256_fmadd_ps(ai, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(ai, b1, acc[i][1]);
    }
    a += kMR;
    b += kNR;
  }

  const __m256 va = _mm256_set1_ps(alpha);
  if (beta == 0.0f) {  // write-only: C may hold NaN that must not propagate
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      _mm256_storeu_ps(c + i * ldc, _mm256_mul_ps(va, acc[i][0]));
      _mm256_storeu_ps(c + i * ldc + 8, _mm256_mul_ps(va, acc[i][1]));
    }
  } else {
    const __m256 vb = _mm256_set1_ps(beta);
#pragma GCC unroll 6
    for (int i = 0; i < kMR; ++i) {
      float* row = c + i * ldc;
      _mm256_storeu_ps(row, _mm256_fmadd_ps(vb, _mm256_loadu_ps(row), _mm256_mul_ps(va, acc[i][0])));
      _mm256_storeu_ps(row + 8,
                       _mm256_fmadd_ps(vb, _mm256_loadu_ps(row + 8), _mm256_mul_ps(va, acc[i][1])));
    }
  }
}

// Blocking (tuned on a 2-core AMD EPYC, 32 KiB L1d / 1 MiB L2 per core, 32 MiB L3):
// B micro-panel 256 x 16 floats = 16 KiB sits in L1 next to the 6 KiB A micro-panel; the A
// block 144 x 256 = 144 KiB stays in L2; the shared B block 256 x 4080 = 4 MiB stays in L3.
const KernelInfo kAvx2 = {"avx2", kMR, kNR, 144, 256, 4080, microkernel_avx2_6x16};

}  // namespace

const KernelInfo* avx2_kernel() { return &kAvx2; }

}  // namespace nm::cpu::gemm_detail

#else  // not x86: no AVX2 kernel in this build

namespace nm::cpu::gemm_detail {
const KernelInfo* avx2_kernel() { return nullptr; }
}  // namespace nm::cpu::gemm_detail

#endif
