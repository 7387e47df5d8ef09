// Host emulation of the nvcuda::wmma subset the flash-bf16 kernels use (16x16x16 bf16 fragments,
// f32 accumulators). Include after cuda_host_shim.h. Test-only code (see cuda_host_shim.h).
//
// On a GPU a fragment is spread over the 32 lanes of a warp in an unspecified layout. Here every
// lane holds the whole tile (element (r, c) at x[r * cols + c]), so:
//   - load_matrix_sync: waits for the warp (the real call also waits until all lanes arrive),
//     then every lane reads the whole tile from memory;
//   - mma_sync, fill_fragment and element-wise loops over x[0..num_elements) run on each lane's
//     own copy; all lanes compute the same values, because a kernel may only apply the same
//     operation to every element (the real layout is opaque);
//   - store_matrix_sync: waits for the warp, then lane 0 alone writes the tile (the copies are
//     identical, and one writer avoids a data race). Other lanes may read the stored values only
//     after the kernel's next __syncwarp / __syncthreads, which is what CUDA requires too.
// mma_sync accumulates in f32: d(r, c) = c(r, c) + sum over k = 0..15 of a(r, k) * b(k, c),
// added in increasing k (products of two bf16 values are exact in f32). Tensor cores add in an
// unspecified order, so results agree with a GPU to f32 rounding, not bit for bit.
// The pointer and ldm rules of the real API are checked: 32-byte aligned pointers, ldm a
// multiple of 8 elements for bf16 and of 4 for float.
#ifndef NM_CUDA_WMMA_SHIM_H
#define NM_CUDA_WMMA_SHIM_H

#include <stdint.h>

#include <type_traits>

#ifndef NM_CUDA_HOST_SHIM_H
#error "include cuda_host_shim.h first"
#endif

namespace nvcuda {
namespace wmma {

struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K, typename T, typename Layout = void>
struct fragment {
  static constexpr int rows = std::is_same<Use, matrix_b>::value ? K : M;
  static constexpr int cols = std::is_same<Use, matrix_a>::value ? K : N;
  static constexpr int num_elements = rows * cols;
  T x[num_elements];
};

namespace detail {

inline float to_float(float v) { return v; }
inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
void check_pointer(const T* p, unsigned ldm) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0) nm_emu::fail("wmma: pointer not 32-byte aligned");
  if (ldm % (16 / sizeof(T)) != 0) nm_emu::fail("wmma: ldm not a multiple of 16 bytes");
}

// Element (r, c) of a rows x cols tile from memory in row- or column-major order.
template <typename Frag, typename T>
void load(Frag& f, const T* p, unsigned ldm, bool row_major_memory) {
  check_pointer(p, ldm);
  nm_emu::warp_barrier();
  for (int r = 0; r < Frag::rows; r++) {
    for (int c = 0; c < Frag::cols; c++) {
      f.x[r * Frag::cols + c] = row_major_memory ? p[(size_t)r * ldm + c] : p[(size_t)c * ldm + r];
    }
  }
}

}  // namespace detail

template <int M, int N, int K, typename T>
void load_matrix_sync(fragment<matrix_a, M, N, K, T, row_major>& f, const T* p, unsigned ldm) {
  detail::load(f, p, ldm, true);
}
template <int M, int N, int K, typename T>
void load_matrix_sync(fragment<matrix_a, M, N, K, T, col_major>& f, const T* p, unsigned ldm) {
  detail::load(f, p, ldm, false);
}
template <int M, int N, int K, typename T>
void load_matrix_sync(fragment<matrix_b, M, N, K, T, row_major>& f, const T* p, unsigned ldm) {
  detail::load(f, p, ldm, true);
}
template <int M, int N, int K, typename T>
void load_matrix_sync(fragment<matrix_b, M, N, K, T, col_major>& f, const T* p, unsigned ldm) {
  detail::load(f, p, ldm, false);
}
template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm,
                      layout_t layout) {
  detail::load(f, p, ldm, layout == mem_row_major);
}

template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm,
                       layout_t layout) {
  detail::check_pointer(p, ldm);
  nm_emu::warp_barrier();
  if (nm_emu::lane_id() != 0) return;
  for (int r = 0; r < M; r++) {
    for (int c = 0; c < N; c++) {
      const float v = f.x[r * N + c];
      if (layout == mem_row_major) {
        p[(size_t)r * ldm + c] = v;
      } else {
        p[(size_t)c * ldm + r] = v;
      }
    }
  }
}

template <typename Use, int M, int N, int K, typename T, typename Layout, typename V>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, const V& value) {
  for (int e = 0; e < f.num_elements; e++) f.x[e] = value;
}

template <int M, int N, int K, typename T, typename LA, typename LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b,
              const fragment<accumulator, M, N, K, float>& c) {
  float af[M * K], bf[K * N], acc[M * N];
  for (int e = 0; e < M * K; e++) af[e] = detail::to_float(a.x[e]);
  for (int e = 0; e < K * N; e++) bf[e] = detail::to_float(b.x[e]);
  for (int e = 0; e < M * N; e++) acc[e] = c.x[e];
  for (int r = 0; r < M; r++) {
    for (int k = 0; k < K; k++) {
      const float x = af[r * K + k];
      for (int col = 0; col < N; col++) acc[r * N + col] += x * bf[k * N + col];
    }
  }
  for (int e = 0; e < M * N; e++) d.x[e] = acc[e];
}

}  // namespace wmma
}  // namespace nvcuda

#endif  // NM_CUDA_WMMA_SHIM_H
