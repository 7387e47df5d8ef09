// Internal pieces of the CPU GEMM (see gemm.cc for the blocking and threading).
//
// The GEMM is split the BLIS/GotoBLAS way: packing routines copy panels of op(A) and op(B) into
// contiguous f32 buffers (absorbing transposes and bf16 widening), and a register-blocked
// micro-kernel multiplies one MR-row panel of A by one NR-column panel of B. Only the
// micro-kernels are ISA specific; they live in their own files so each one can be compiled
// with its own target attribute and picked at runtime (one binary for every x86-64).
#ifndef NM_CPU_GEMM_INTERNAL_H
#define NM_CPU_GEMM_INTERNAL_H

#include <cstddef>
#include <cstdint>

#include "../core/backend.h"

namespace nm::cpu::gemm_detail {

// Largest micro-tile of any kernel; sizes the on-stack edge tile in gemm.cc.
constexpr int kMaxMR = 6;
constexpr int kMaxNR = 32;

// Computes acc = Apanel(MR x kc) * Bpanel(kc x NR) and writes the full MR x NR tile of C:
//   c[i*ldc + j] = alpha * acc[i][j] + beta * c[i*ldc + j]
// When beta == 0, C is only written, never read (NaN/garbage in C must not leak through).
// a: kc steps of MR floats (a[p*MR + i]); b: kc steps of NR floats (b[p*NR + j]), 64-byte
// aligned. kc >= 1.
using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                             float alpha, float beta);

// A micro-kernel together with the cache blocking tuned for it.
//   mc: rows of op(A) packed per block (the block, mc x kc, stays in L2),
//   kc: depth of one packed block (one B micro-panel, kc x NR, stays in L1),
//   nc: columns of op(B) packed per block (kc x nc, shared by all threads, stays in L3).
struct KernelInfo {
  const char* name;
  int mr;
  int nr;
  int64_t mc;
  int64_t kc;
  int64_t nc;
  MicroKernel fn;
};

// Each returns nullptr when the kernel is not compiled into this build (non-x86 targets).
// Whether the CPU can run it is decided by the caller (gemm.cc), not here.
const KernelInfo* generic_kernel();
const KernelInfo* avx2_kernel();
const KernelInfo* avx512_kernel();

// Packs rows [i0, i0 + rows) x depth [p0, p0 + kc) of op(A) into ceil(rows / mr) panels, each
// kc * mr floats laid out dst[p * mr + i]; rows past `rows` in the last panel are zero.
// op(A)[i][p] is a[i * lda + p], or a[p * lda + i] when trans. mr is 4 or 6.
void pack_a(const void* a, nm_dtype dtype, bool trans, int64_t lda, int64_t i0, int64_t rows,
            int64_t p0, int64_t kc, int mr, float* dst);

// Packs depth [p0, p0 + kc) x columns [j0, j0 + cols) of op(B) into ceil(cols / nr) panels,
// each kc * nr floats laid out dst[p * nr + j]; columns past `cols` are zero.
// op(B)[p][j] is b[p * ldb + j], or b[j * ldb + p] when trans. nr is 8, 16 or 32.
void pack_b(const void* b, nm_dtype dtype, bool trans, int64_t ldb, int64_t p0, int64_t kc,
            int64_t j0, int64_t cols, int nr, float* dst);

}  // namespace nm::cpu::gemm_detail

#endif  // NM_CPU_GEMM_INTERNAL_H
