// Portable GEMM micro-kernel (4 x 8): the fallback for x86-64 CPUs without AVX2/FMA, for
// non-x86 builds, and the reference path tests force with NM_GEMM_KERNEL=generic.
//
// Plain C++ with compile-time bounds: the compiler keeps the 4 x 8 accumulator block in
// vector registers (SSE2 on baseline x86-64, NEON on arm64); there are no intrinsics here so
// it builds everywhere.
#include "gemm_internal.h"

namespace nm::cpu::gemm_detail {
namespace {

constexpr int kMR = 4;
constexpr int kNR = 8;

void microkernel_generic_4x8(int64_t kc, const float* a, const float* b, float* c,
                             int64_t ldc, float alpha, float beta) {
  float acc[kMR][kNR] = {};
  for (int64_t p = 0; p < kc; ++p, a += kMR, b += kNR)
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) acc[i][j] += a[i] * b[j];

  for (int i = 0; i < kMR; ++i) {
    float* row = c + i * ldc;
    if (beta == 0.0f) {  // write-only: C may hold NaN that must not propagate
      for (int j = 0; j < kNR; ++j) row[j] = alpha * acc[i][j];
    } else {
      for (int j = 0; j < kNR; ++j) row[j] = alpha * acc[i][j] + beta * row[j];
    }
  }
}

// Blocking: A block 128 x 256 (128 KiB) in L2, B micro-panel 256 x 8 (8 KiB) in L1.
const KernelInfo kGeneric = {"generic", kMR, kNR, 128, 256, 4096, microkernel_generic_4x8};

}  // namespace

const KernelInfo* generic_kernel() { return &kGeneric; }

}  // namespace nm::cpu::gemm_detail
