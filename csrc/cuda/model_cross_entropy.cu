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
#include <math.h>
#include <stdint.h>

#include "block_reduce.cuh"
#include "check.h"
#include "context.h"
#include "dtypes.cuh"
#include "ops.h"
#include "validate.h"

namespace nm_cuda {
namespace {

constexpr int64_t kMaxRowBlocks = int64_t{1} << 20;
constexpr int kMaxThreads = 512;

// Max of v over the block, returned to every thread. blockDim.x a multiple of 32; every thread
// of the block must call it. NaN is ignored (fmaxf), like std::fmax on the CPU; the NaN then
// reaches the sum of exponentials instead.
__device__ __forceinline__ float block_max_all(float v) {
  __shared__ float warp_max[32];
  __shared__ float result;
  for (int offset = 16; offset > 0; offset >>= 1) {
    v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, offset));
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // a previous call's readers are done with warp_max / result
  if (lane == 0) warp_max[warp] = v;
  __syncthreads();
  if (warp == 0) {
    const int warps = (int)(blockDim.x >> 5);
    v = lane < warps ? warp_max[lane] : -INFINITY;
    for (int offset = 16; offset > 0; offset >>= 1) {
      v = fmaxf(v, __shfl_down_sync(0xffffffffu, v, offset));
    }
    if (lane == 0) result = v;
  }
  __syncthreads();
  return result;
}

__global__ void cross_entropy_kernel(float* losses, float* logits, const int32_t* targets,
                                     int64_t n, int64_t vocab, float grad_scale) {
  __shared__ float row_max, row_inv_sum;
  for (int64_t i = blockIdx.x; i < n; i += gridDim.x) {
    float* row = logits + i * vocab;
    const int64_t t = targets[i];
    const bool valid = t >= 0 && t < vocab;
    // Read by thread 0 now, before the barriers that precede any write to the row.
    const float target_logit = (threadIdx.x == 0 && valid) ? row[t] : 0.0f;

    // Online max and sum of exp(x - m) over this thread's share of the row.
    float m = -INFINITY, s = 0.0f;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
      const float x = row[j];
      if (x > m) {
        s = __fadd_rn(__fmul_rn(s, expf(m - x)), 1.0f);  // m = -inf: exp(-inf) = 0
        m = x;
      } else if (x != -INFINITY || m != -INFINITY) {  // -inf with m = -inf adds nothing
        s = __fadd_rn(s, expf(x - m));  // a NaN x makes s NaN (and keeps it NaN)
      }
    }
    const float big = block_max_all(m);
    // m = -inf: no finite element here, s is 0 (or NaN from a NaN logit, which must survive).
    const double part = (m == -INFINITY) ? (double)s : (double)s * (double)expf(m - big);
    const double sum = block_sum(part);  // valid in thread 0
    if (threadIdx.x == 0) {
      const double lse = (double)big + log(sum);
      losses[i] = valid ? (float)(lse - (double)target_logit) : __int_as_float(0x7fc00000);
      row_max = big;
      row_inv_sum = (float)(1.0 / sum);
    }
    __syncthreads();
    if (grad_scale != 0.0f) {
      const float mx = row_max, inv_s = row_inv_sum;
      for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
        const float p = __fmul_rn(expf(__fsub_rn(row[j], mx)), inv_s);
        const float d = (valid && j == t) ? __fsub_rn(p, 1.0f) : p;
        row[j] = __fmul_rn(grad_scale, d);
      }
    }
    // The next row's block_max_all / block_sum barriers order the reuse of row_max / row_inv_sum.
  }
}

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
  const int threads =
      vocab >= kMaxThreads ? kMaxThreads : (int)((vocab + 31) / 32 * 32);
  const unsigned int blocks = (unsigned int)(n < kMaxRowBlocks ? n : kMaxRowBlocks);
  cross_entropy_kernel<<<blocks, threads, 0, be->stream>>>(
      static_cast<float*>(losses_f32), static_cast<float*>(logits_f32),
      static_cast<const int32_t*>(targets_i32), n, vocab, grad_scale);
  NM_CUDA_CHECK_LAUNCH(kOp, "cross_entropy_kernel");
  return NM_OK;
}

}  // namespace nm_cuda
