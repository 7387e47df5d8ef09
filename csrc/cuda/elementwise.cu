// fill, cast, binary (add/sub/mul), scale and axpy: grid-stride kernels over n elements.
//
// Math is f32 for f32 and bf16 storage alike, with the explicit round-to-nearest intrinsics
// (__fadd_rn, __fmul_rn, __fmaf_rn) so the rounding is exactly the CPU reference's: separately
// rounded add/sub/mul/scale, and axpy as one fused multiply-add (std::fmaf on the CPU).
#include <cuda_bf16.h>
#include <stdint.h>
#include <string.h>

#include "../core/bf16.h"
#include "check.h"
#include "context.h"
#include "dtypes.cuh"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

// ---- kernels -----------------------------------------------------------------------------

// Fills with a bit pattern (uint32_t for f32/i32, uint16_t for bf16/u16).
template <typename Bits>
__global__ void fill_kernel(Bits* dst, int64_t n, Bits value) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) dst[i] = value;
}

__device__ __forceinline__ void convert(float in, __nv_bfloat16* out) {
  *out = __float2bfloat16_rn(in);
}
__device__ __forceinline__ void convert(__nv_bfloat16 in, float* out) {
  *out = __bfloat162float(in);
}
__device__ __forceinline__ void convert(uint16_t in, int32_t* out) { *out = (int32_t)in; }
__device__ __forceinline__ void convert(int32_t in, float* out) { *out = __int2float_rn(in); }

template <typename Dst, typename Src>
__global__ void cast_kernel(Dst* dst, const Src* src, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) convert(src[i], &dst[i]);
}

// out may alias a or b: each element is read before it is written, by the same thread.
template <typename T, int Op>
__global__ void binary_kernel(T* out, const T* a, const T* b, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const float x = load_f32(a, i), y = load_f32(b, i);
    float r;
    if (Op == NM_ADD) {
      r = __fadd_rn(x, y);
    } else if (Op == NM_SUB) {
      r = __fsub_rn(x, y);
    } else {
      r = __fmul_rn(x, y);
    }
    store_f32(out, i, r);
  }
}

template <typename T>
__global__ void scale_kernel(T* out, const T* x, float alpha, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    store_f32(out, i, __fmul_rn(alpha, load_f32(x, i)));
  }
}

template <typename T>
__global__ void axpy_kernel(T* y, const T* x, float alpha, int64_t n) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    store_f32(y, i, __fmaf_rn(alpha, load_f32(x, i), load_f32(y, i)));
  }
}

// ---- host helpers ------------------------------------------------------------------------

// True when the byte ranges [a, a+a_bytes) and [b, b+b_bytes) share at least one byte.
bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const uintptr_t a0 = (uintptr_t)a, b0 = (uintptr_t)b;
  return a0 < b0 + b_bytes && b0 < a0 + a_bytes;
}

template <typename Bits>
nm_status launch_fill(nm_backend* be, void* dst, int64_t n, Bits value) {
  NM_CUDA_LAUNCH(grid_blocks(be, n), kThreads, 0, be->stream, fill_kernel<Bits>)(
      static_cast<Bits*>(dst), n, value);
  NM_CUDA_CHECK_LAUNCH("fill", "fill_kernel");
  return NM_OK;
}

template <typename Dst, typename Src>
nm_status launch_cast(nm_backend* be, void* dst, const void* src, int64_t n) {
  NM_CUDA_LAUNCH(grid_blocks(be, n), kThreads, 0, be->stream, cast_kernel<Dst, Src>)(
      static_cast<Dst*>(dst), static_cast<const Src*>(src), n);
  NM_CUDA_CHECK_LAUNCH("cast", "cast_kernel");
  return NM_OK;
}

template <typename T>
nm_status launch_binary(nm_backend* be, nm_binary_op op, void* out, const void* a, const void* b,
                        int64_t n) {
  T* o = static_cast<T*>(out);
  const T* x = static_cast<const T*>(a);
  const T* y = static_cast<const T*>(b);
  const unsigned int blocks = grid_blocks(be, n);
  switch (op) {
    case NM_ADD:
      NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, binary_kernel<T, NM_ADD>)(o, x, y, n);
      break;
    case NM_SUB:
      NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, binary_kernel<T, NM_SUB>)(o, x, y, n);
      break;
    case NM_MUL:
      NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, binary_kernel<T, NM_MUL>)(o, x, y, n);
      break;
  }
  NM_CUDA_CHECK_LAUNCH("binary", "binary_kernel");
  return NM_OK;
}

}  // namespace

nm_status fill(nm_backend* be, void* dst, nm_dtype dtype, int64_t n, double value) {
  static const char* const kOp = "fill";
  NM_TRY(enter(be, kOp));
  NM_TRY(check_count(kOp, n));
  NM_TRY(check_ptr(kOp, "dst", dst, n));
  const size_t elem = nm_dtype_size(dtype);
  if (elem == 0) return fail_invalid(kOp, "unknown dtype %d", (int)dtype);
  if (n == 0) return NM_OK;

  // The value is converted once, on the host, with the same rules as the CPU backend.
  uint32_t bits32 = 0;
  uint16_t bits16 = 0;
  switch (dtype) {
    case NM_F32: {
      const float f = (float)value;
      memcpy(&bits32, &f, sizeof bits32);
      break;
    }
    case NM_I32: {
      const int32_t v = (int32_t)value;  // truncates toward zero; caller guarantees the range
      memcpy(&bits32, &v, sizeof bits32);
      break;
    }
    case NM_BF16:
      bits16 = nm_f32_to_bf16((float)value);
      break;
    case NM_U16:
      bits16 = (uint16_t)value;  // truncates toward zero; caller guarantees the range
      break;
  }
  if (bits32 == 0 && bits16 == 0) {
    // All-zero bits (0, +0.0): a memset is the fastest fill there is.
    NM_CUDA_CHECK(kOp, cudaMemsetAsync(dst, 0, (size_t)n * elem, be->stream));
    return NM_OK;
  }
  if (elem == 4) return launch_fill<uint32_t>(be, dst, n, bits32);
  return launch_fill<uint16_t>(be, dst, n, bits16);
}

nm_status cast(nm_backend* be, void* dst, nm_dtype dst_dtype, const void* src, nm_dtype src_dtype,
               int64_t n) {
  static const char* const kOp = "cast";
  NM_TRY(enter(be, kOp));
  NM_TRY(check_count(kOp, n));
  const size_t dst_elem = nm_dtype_size(dst_dtype), src_elem = nm_dtype_size(src_dtype);
  if (dst_elem == 0) return fail_invalid(kOp, "unknown dst_dtype %d", (int)dst_dtype);
  if (src_elem == 0) return fail_invalid(kOp, "unknown src_dtype %d", (int)src_dtype);
  const bool supported = (src_dtype == NM_F32 && dst_dtype == NM_BF16) ||
                         (src_dtype == NM_BF16 && dst_dtype == NM_F32) ||
                         (src_dtype == NM_F32 && dst_dtype == NM_F32) ||
                         (src_dtype == NM_BF16 && dst_dtype == NM_BF16) ||
                         (src_dtype == NM_U16 && dst_dtype == NM_I32) ||
                         (src_dtype == NM_I32 && dst_dtype == NM_F32);
  if (!supported) {
    return fail_invalid(kOp,
                        "unsupported cast %s -> %s (supported: f32<->bf16, f32->f32, bf16->bf16, "
                        "u16->i32, i32->f32)",
                        nm_dtype_name(src_dtype), nm_dtype_name(dst_dtype));
  }
  NM_TRY(check_ptr(kOp, "dst", dst, n));
  NM_TRY(check_ptr(kOp, "src", src, n));
  if (n == 0) return NM_OK;
  const size_t dst_bytes = (size_t)n * dst_elem, src_bytes = (size_t)n * src_elem;
  // In place is fine element by element when both sides have the same width; any other overlap
  // would have threads overwrite elements that other threads have yet to read.
  if (dst != src || dst_elem != src_elem) {
    if (overlaps(dst, dst_bytes, src, src_bytes)) {
      return fail_invalid(kOp, "dst and src overlap (only an exact in-place cast of same-width "
                               "types is allowed)");
    }
  }
  if (src_dtype == dst_dtype) {
    if (dst == src) return NM_OK;
    NM_CUDA_CHECK(kOp, cudaMemcpyAsync(dst, src, dst_bytes, cudaMemcpyDeviceToDevice, be->stream));
    return NM_OK;
  }
  if (src_dtype == NM_F32) return launch_cast<__nv_bfloat16, float>(be, dst, src, n);
  if (src_dtype == NM_BF16) return launch_cast<float, __nv_bfloat16>(be, dst, src, n);
  if (src_dtype == NM_U16) return launch_cast<int32_t, uint16_t>(be, dst, src, n);
  return launch_cast<float, int32_t>(be, dst, src, n);  // i32 -> f32
}

nm_status binary(nm_backend* be, nm_binary_op op, void* out, const void* a, const void* b,
                 nm_dtype dtype, int64_t n) {
  static const char* const kOp = "binary";
  NM_TRY(enter(be, kOp));
  if (op != NM_ADD && op != NM_SUB && op != NM_MUL) {
    return fail_invalid(kOp, "unknown op %d (expected add, sub or mul)", (int)op);
  }
  NM_TRY(check_float_dtype(kOp, dtype));
  NM_TRY(check_count(kOp, n));
  NM_TRY(check_ptr(kOp, "out", out, n));
  NM_TRY(check_ptr(kOp, "a", a, n));
  NM_TRY(check_ptr(kOp, "b", b, n));
  if (n == 0) return NM_OK;
  if (dtype == NM_F32) return launch_binary<float>(be, op, out, a, b, n);
  return launch_binary<__nv_bfloat16>(be, op, out, a, b, n);
}

nm_status scale(nm_backend* be, void* out, const void* x, float alpha, nm_dtype dtype, int64_t n) {
  static const char* const kOp = "scale";
  NM_TRY(enter(be, kOp));
  NM_TRY(check_float_dtype(kOp, dtype));
  NM_TRY(check_count(kOp, n));
  NM_TRY(check_ptr(kOp, "out", out, n));
  NM_TRY(check_ptr(kOp, "x", x, n));
  if (n == 0) return NM_OK;
  const unsigned int blocks = grid_blocks(be, n);
  if (dtype == NM_F32) {
    NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, scale_kernel<float>)(
        static_cast<float*>(out), static_cast<const float*>(x), alpha, n);
  } else {
    NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, scale_kernel<__nv_bfloat16>)(
        static_cast<__nv_bfloat16*>(out), static_cast<const __nv_bfloat16*>(x), alpha, n);
  }
  NM_CUDA_CHECK_LAUNCH(kOp, "scale_kernel");
  return NM_OK;
}

nm_status axpy(nm_backend* be, void* y, const void* x, float alpha, nm_dtype dtype, int64_t n) {
  static const char* const kOp = "axpy";
  NM_TRY(enter(be, kOp));
  NM_TRY(check_float_dtype(kOp, dtype));
  NM_TRY(check_count(kOp, n));
  NM_TRY(check_ptr(kOp, "y", y, n));
  NM_TRY(check_ptr(kOp, "x", x, n));
  if (n == 0) return NM_OK;
  const unsigned int blocks = grid_blocks(be, n);
  if (dtype == NM_F32) {
    NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, axpy_kernel<float>)(
        static_cast<float*>(y), static_cast<const float*>(x), alpha, n);
  } else {
    NM_CUDA_LAUNCH(blocks, kThreads, 0, be->stream, axpy_kernel<__nv_bfloat16>)(
        static_cast<__nv_bfloat16*>(y), static_cast<const __nv_bfloat16*>(x), alpha, n);
  }
  NM_CUDA_CHECK_LAUNCH(kOp, "axpy_kernel");
  return NM_OK;
}

}  // namespace nm_cuda
