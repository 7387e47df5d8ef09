// Packing for the CPU GEMM: copies panels of op(A) / op(B) into the contiguous, zero-padded f32
// layout the micro-kernels stream through (see gemm_internal.h for the exact layout).
//
// Why packing carries the transposes and the bf16 widening: the micro-kernel is the hot loop
// (it runs k times per MR x NR tile), packing touches each element once per block. Doing every
// layout and dtype variation here means there is one micro-kernel per ISA, f32 only, with
// unit-stride loads and no edge cases (the zero padding makes edge tiles full-size).
//
// Loop orders are chosen so the source is read along its contiguous dimension when the
// panel is a transpose of it, while the destination (at most kc * 32 floats per panel) stays
// in L1 and absorbs the strided writes.
#include "../core/bf16.h"
#include "gemm_internal.h"

namespace nm::cpu::gemm_detail {
namespace {

inline float load_elem(const float* p) { return *p; }
inline float load_elem(const uint16_t* p) { return nm_bf16_to_f32(*p); }

// op(A) not transposed: A is [m, k] row-major, a panel row is a contiguous run of A.
template <typename T, int MR>
void pack_a_rows(const T* a, int64_t lda, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                 float* dst) {
  for (int64_t ib = 0; ib < rows; ib += MR, dst += kc * MR) {
    const int valid = rows - ib < MR ? static_cast<int>(rows - ib) : MR;
    if (valid == MR) {
      const T* src[MR];
      for (int i = 0; i < MR; ++i) src[i] = a + (i0 + ib + i) * lda + p0;
      for (int64_t p = 0; p < kc; ++p)
        for (int i = 0; i < MR; ++i) dst[p * MR + i] = load_elem(src[i] + p);
    } else {
      for (int i = 0; i < MR; ++i) {
        if (i < valid) {
          const T* src = a + (i0 + ib + i) * lda + p0;
          for (int64_t p = 0; p < kc; ++p) dst[p * MR + i] = load_elem(src + p);
        } else {
          for (int64_t p = 0; p < kc; ++p) dst[p * MR + i] = 0.0f;
        }
      }
    }
  }
}

// op(A) transposed: A is stored [k, m], so MR consecutive rows of op(A) at one depth p are
// MR contiguous elements of A.
template <typename T, int MR>
void pack_a_cols(const T* a, int64_t lda, int64_t i0, int64_t rows, int64_t p0, int64_t kc,
                 float* dst) {
  for (int64_t ib = 0; ib < rows; ib += MR, dst += kc * MR) {
    const int valid = rows - ib < MR ? static_cast<int>(rows - ib) : MR;
    const T* src = a + p0 * lda + i0 + ib;
    if (valid == MR) {
      for (int64_t p = 0; p < kc; ++p)
        for (int i = 0; i < MR; ++i) dst[p * MR + i] = load_elem(src + p * lda + i);
    } else {
      for (int64_t p = 0; p < kc; ++p)
        for (int i = 0; i < MR; ++i)
          dst[p * MR + i] = i < valid ? load_elem(src + p * lda + i) : 0.0f;
    }
  }
}

// op(B) not transposed: B is [k, n] row-major, a panel row is NR contiguous elements of B.
template <typename T, int NR>
void pack_b_rows(const T* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t cols,
                 float* dst) {
  for (int64_t jb = 0; jb < cols; jb += NR, dst += kc * NR) {
    const int valid = cols - jb < NR ? static_cast<int>(cols - jb) : NR;
    const T* src = b + p0 * ldb + j0 + jb;
    if (valid == NR) {
      for (int64_t p = 0; p < kc; ++p)
        for (int j = 0; j < NR; ++j) dst[p * NR + j] = load_elem(src + p * ldb + j);
    } else {
      for (int64_t p = 0; p < kc; ++p)
        for (int j = 0; j < NR; ++j)
          dst[p * NR + j] = j < valid ? load_elem(src + p * ldb + j) : 0.0f;
    }
  }
}

// op(B) transposed: B is stored [n, k]; each panel column is a contiguous run of B. The
// depth is walked in short steps across all NR columns so the destination rows being written
// (kStep x NR floats) stay in L1; a whole panel (kc x 32 floats) may not fit there.
template <typename T, int NR>
void pack_b_cols(const T* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int64_t cols,
                 float* dst) {
  constexpr int64_t kStep = 16;
  for (int64_t jb = 0; jb < cols; jb += NR, dst += kc * NR) {
    const int valid = cols - jb < NR ? static_cast<int>(cols - jb) : NR;
    const T* src = b + (j0 + jb) * ldb + p0;
    for (int64_t ps = 0; ps < kc; ps += kStep) {
      const int64_t pe = ps + kStep < kc ? ps + kStep : kc;
      for (int j = 0; j < NR; ++j) {
        if (j < valid) {
          for (int64_t p = ps; p < pe; ++p) dst[p * NR + j] = load_elem(src + j * ldb + p);
        } else {
          for (int64_t p = ps; p < pe; ++p) dst[p * NR + j] = 0.0f;
        }
      }
    }
  }
}

template <typename T, int MR>
void pack_a_typed(const T* a, bool trans, int64_t lda, int64_t i0, int64_t rows, int64_t p0,
                  int64_t kc, float* dst) {
  if (trans)
    pack_a_cols<T, MR>(a, lda, i0, rows, p0, kc, dst);
  else
    pack_a_rows<T, MR>(a, lda, i0, rows, p0, kc, dst);
}

template <typename T, int NR>
void pack_b_typed(const T* b, bool trans, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
                  int64_t cols, float* dst) {
  if (trans)
    pack_b_cols<T, NR>(b, ldb, p0, kc, j0, cols, dst);
  else
    pack_b_rows<T, NR>(b, ldb, p0, kc, j0, cols, dst);
}

// Compile-time MR/NR let the compiler fully unroll the inner loops; these switches turn the
// kernel's runtime shape into those instantiations.
template <typename T>
void pack_a_dispatch(const T* a, bool trans, int64_t lda, int64_t i0, int64_t rows, int64_t p0,
                     int64_t kc, int mr, float* dst) {
  switch (mr) {
    case 4: pack_a_typed<T, 4>(a, trans, lda, i0, rows, p0, kc, dst); return;
    case 6: pack_a_typed<T, 6>(a, trans, lda, i0, rows, p0, kc, dst); return;
    default: return;  // no kernel has another MR (see the KernelInfo definitions)
  }
}

template <typename T>
void pack_b_dispatch(const T* b, bool trans, int64_t ldb, int64_t p0, int64_t kc, int64_t j0,
                     int64_t cols, int nr, float* dst) {
  switch (nr) {
    case 8: pack_b_typed<T, 8>(b, trans, ldb, p0, kc, j0, cols, dst); return;
    case 16: pack_b_typed<T, 16>(b, trans, ldb, p0, kc, j0, cols, dst); return;
    case 32: pack_b_typed<T, 32>(b, trans, ldb, p0, kc, j0, cols, dst); return;
    default: return;
  }
}

}  // namespace

void pack_a(const void* a, nm_dtype dtype, bool trans, int64_t lda, int64_t i0, int64_t rows,
            int64_t p0, int64_t kc, int mr, float* dst) {
  if (dtype == NM_BF16)
    pack_a_dispatch(static_cast<const uint16_t*>(a), trans, lda, i0, rows, p0, kc, mr, dst);
  else
    pack_a_dispatch(static_cast<const float*>(a), trans, lda, i0, rows, p0, kc, mr, dst);
}

void pack_b(const void* b, nm_dtype dtype, bool trans, int64_t ldb, int64_t p0, int64_t kc,
            int64_t j0, int64_t cols, int nr, float* dst) {
  if (dtype == NM_BF16)
    pack_b_dispatch(static_cast<const uint16_t*>(b), trans, ldb, p0, kc, j0, cols, nr, dst);
  else
    pack_b_dispatch(static_cast<const float*>(b), trans, ldb, p0, kc, j0, cols, nr, dst);
}

}  // namespace nm::cpu::gemm_detail
