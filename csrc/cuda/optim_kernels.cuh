// The optimizer update kernels (momentum, apply_update, AdamW). The host side (argument checks,
// launches) and the description are in optim.cu.
//
// This header is compiled twice: by nvcc for the CUDA module, and by g++ for the host emulation
// (csrc/cuda/emulation/model_kernels_emulation.cc), which defines NM_CUDA_EMULATION and includes
// emulation/cuda_host_shim.h first. So the kernels keep to what that shim provides. They are
// grid-stride, launched with grid_blocks(be, n) blocks of kThreads (context.h).
#ifndef NM_CUDA_OPTIM_KERNELS_CUH
#define NM_CUDA_OPTIM_KERNELS_CUH

#include <math.h>
#include <stdint.h>

#include "dtypes.cuh"

namespace nm_cuda {
namespace optim_kernels {

// buf = momentum*buf + g; u = nesterov ? g + momentum*buf : buf. u may alias g: g[i] is read
// before u[i] is written, by the same thread.
static __global__ void momentum_kernel(float* buf, float* u, const float* g, int64_t n,
                                       float momentum, int nesterov) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const float gi = g[i];
    const float b = __fmaf_rn(momentum, buf[i], gi);
    buf[i] = b;
    u[i] = nesterov ? __fmaf_rn(momentum, b, gi) : b;
  }
}

// w = decay*w - step*u
static __global__ void apply_update_kernel(float* w, const float* u, int64_t n, float decay,
                                           float neg_step) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const float decayed = __fmul_rn(decay, w[i]);
    w[i] = __fmaf_rn(neg_step, u[i], decayed);
  }
}

// PyTorch's AdamW step, per element:
//   w *= keep; m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g*g;
//   w -= step_size * m / (sqrt(v)/sqrt(bias2) + eps)   with step_size = lr/bias1
static __global__ void adamw_kernel(float* w, const float* g, float* m, float* v, int64_t n,
                                    float keep, float beta1, float one_minus_beta1, float beta2,
                                    float one_minus_beta2, float eps, float neg_step_size,
                                    float sqrt_bias2) {
  for (int64_t i = grid_start(); i < n; i += grid_step()) {
    const float gi = g[i];
    const float wi = __fmul_rn(w[i], keep);
    const float g_part = __fmul_rn(one_minus_beta1, gi);
    const float mi = __fmaf_rn(beta1, m[i], g_part);
    const float gg = __fmul_rn(gi, gi);
    const float gg_part = __fmul_rn(one_minus_beta2, gg);
    const float vi = __fmaf_rn(beta2, v[i], gg_part);
    const float root = __fsqrt_rn(vi);
    const float scaled_root = __fdiv_rn(root, sqrt_bias2);
    const float denom = __fadd_rn(scaled_root, eps);
    const float ratio = __fdiv_rn(mi, denom);
    w[i] = __fmaf_rn(neg_step_size, ratio, wi);
    m[i] = mi;
    v[i] = vi;
  }
}
}  // namespace optim_kernels
}  // namespace nm_cuda

#endif  // NM_CUDA_OPTIM_KERNELS_CUH
