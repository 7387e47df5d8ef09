// rotary: the half-split rotary position embedding, in place on the q and k parts of a fused
// qkv buffer [B, T, 3, H, D] (core/backend.h has the formula).
//
// One thread per (row, pair j): it forms the angle pos * base^(-2j/D), its cos and its sin in
// double (rounded to f32 once, as the CPU backend does) and rotates pair j of all 2*H q and k
// head vectors of its row. Consecutive threads take consecutive j, so each of the 2*H passes
// reads and writes contiguous runs of the row. The f32 products and sums use explicit
// round-to-nearest intrinsics (no FMA contraction), so the results match the CPU bit for bit
// whenever the double cos/sin round to the same f32 (practically always).
//
// The kernel is in model_rotary_kernels.cuh (shared with the host emulation, emulation/).
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "context.h"
#include "dtypes.cuh"
#include "model_rotary_kernels.cuh"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

using namespace rotary_kernels;  // the kernels

}  // namespace

nm_status rotary(nm_backend* be, void* qkv_f32, int64_t b, int64_t t, int64_t heads,
                 int64_t head_dim, float base, int32_t inverse) {
  static const char* const kOp = "rotary";
  NM_TRY(enter(be, kOp));
  if (b < 0 || t < 0 || heads < 0 || head_dim < 0) {
    return fail_invalid(kOp, "b, t, heads, head_dim must be >= 0 (got %lld, %lld, %lld, %lld)",
                        (long long)b, (long long)t, (long long)heads, (long long)head_dim);
  }
  if (head_dim % 2 != 0) {
    return fail_invalid(kOp, "head_dim must be even (the rotation pairs its two halves), got %lld",
                        (long long)head_dim);
  }
  if (!(base > 0.0f && base <= 3.4e38f)) {
    return fail_invalid(kOp, "base must be finite and > 0, got %g", (double)base);
  }
  int64_t rows = 0, width = 0, total = 0;
  if (__builtin_mul_overflow(b, t, &rows) || __builtin_mul_overflow(heads, head_dim, &width) ||
      __builtin_mul_overflow(width, (int64_t)3, &width) ||
      __builtin_mul_overflow(rows, width, &total) || total > INT64_MAX / 8) {
    return fail_invalid(kOp, "b*t*3*heads*head_dim overflows");
  }
  if (total == 0) return NM_OK;
  NM_TRY(check_ptr(kOp, "qkv", qkv_f32, total));
  const int64_t pairs = rows * (head_dim / 2);
  NM_CUDA_LAUNCH(grid_blocks(be, pairs), kThreads, 0, be->stream, rotary_kernel)(
      static_cast<float*>(qkv_f32), rows, t, heads, head_dim, (double)base, inverse != 0 ? 1 : 0);
  NM_CUDA_CHECK_LAUNCH(kOp, "rotary_kernel");
  return NM_OK;
}

}  // namespace nm_cuda
