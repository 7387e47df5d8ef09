// Softmax cross-entropy with the gradient written over the logits (no second [n, vocab] buffer).
//
// One block per row (grid-stride over rows). Pass 1 reads the row once with an online
// (max, sum of exp) per thread; the block then takes the row max M with a shuffle reduction,
// rescales each thread's sum to M and adds them with the deterministic block_sum (double).
// Thread 0 forms lse = M + log(S) and loss = lse - logits[target] in double (it read the target
// logit before any thread could overwrite it). Pass 2, only when grad_scale != 0, rewrites the
// row as grad_scale * (exp(x - M) * f32(1/S) - onehot), in the CPU backend's f32 order
// (csrc/cpu/model_cross_entropy.cc). Every reduction has a fixed order: the same input gives the
// same bits on every run. An out-of-range target (a caller bug) gives a NaN loss and no one-hot.
//
// The kernel and its launch sizes are in model_cross_entropy_kernels.cuh (shared with the host
// emulation, csrc/cuda/emulation/model_kernels_emulation.cc).
#include <math.h>
#include <stdint.h>

#include "check.h"
#include "context.h"
#include "dtypes.cuh"
#include "model_cross_entropy_kernels.cuh"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

using namespace cross_entropy_kernels;  // the kernel and its launch sizes

}  // namespace

nm_status cross_entropy(nm_backend* be, void* losses_f32, void* logits_f32,
                        const void* targets_i32, int64_t n, int64_t vocab, float grad_scale) {
  static const char* const kOp = "cross_entropy";
  NM_TRY(enter(be, kOp));
  if (n < 0 || vocab < 0) {
    return fail_invalid(kOp, "n and vocab must be >= 0, got %lld and %lld", (long long)n,
                        (long long)vocab);
  }
  if (vocab > 0 && n > INT64_MAX / 4 / vocab) return fail_invalid(kOp, "n * vocab overflows");
  if (!isfinite(grad_scale)) return fail_invalid(kOp, "grad_scale must be finite");
  if (n == 0) return NM_OK;
  if (vocab < 1) return fail_invalid(kOp, "vocab must be >= 1");
  NM_TRY(check_ptr(kOp, "losses", losses_f32, n));
  NM_TRY(check_ptr(kOp, "logits", logits_f32, n));
  NM_TRY(check_ptr(kOp, "targets", targets_i32, n));
  const int threads = cross_entropy_threads(vocab);
  const unsigned int blocks = cross_entropy_blocks(n);
  NM_CUDA_LAUNCH(blocks, threads, 0, be->stream, cross_entropy_kernel)(
      static_cast<float*>(losses_f32), static_cast<float*>(logits_f32),
      static_cast<const int32_t*>(targets_i32), n, vocab, grad_scale);
  NM_CUDA_CHECK_LAUNCH(kOp, "cross_entropy_kernel");
  return NM_OK;
}

}  // namespace nm_cuda
