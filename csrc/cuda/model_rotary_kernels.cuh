// The rotary kernel (forward and inverse). The host side (argument checks, launch) and the
// description are in model_rotary.cu.
//
// This header is compiled twice: by nvcc for the CUDA module, and by g++ for the host emulation
// (csrc/cuda/emulation/model_kernels_emulation.cc), which defines NM_CUDA_EMULATION and includes
// emulation/cuda_host_shim.h first. So the kernels keep to what that shim provides. They are
// grid-stride, launched with grid_blocks(be, n) blocks of kThreads (context.h).
#ifndef NM_CUDA_MODEL_ROTARY_KERNELS_CUH
#define NM_CUDA_MODEL_ROTARY_KERNELS_CUH

#include <math.h>
#include <stdint.h>

#include "dtypes.cuh"

namespace nm_cuda {
namespace rotary_kernels {

static __global__ void rotary_kernel(float* qkv, int64_t rows, int64_t t, int64_t heads,
                                     int64_t head_dim, double base, int inverse) {
  const int64_t half = head_dim / 2;
  const int64_t total = rows * half;
  const int64_t c = heads * head_dim;
  for (int64_t idx = grid_start(); idx < total; idx += grid_step()) {
    const int64_t row = idx / half;
    const int64_t j = idx - row * half;
    const int64_t pos = row % t;
    const double inv_freq = pow(base, -2.0 * (double)j / (double)head_dim);
    double sd, cd;
    sincos((double)pos * inv_freq, &sd, &cd);
    const float co = (float)cd, si = (float)sd;
    float* x = qkv + row * 3 * c + j;
    for (int64_t v = 0; v < 2 * heads; v++) {
      float* x1 = x + v * head_dim;
      float* x2 = x1 + half;
      const float a = *x1, b = *x2;
      if (!inverse) {
        *x1 = __fadd_rn(__fmul_rn(a, co), __fmul_rn(b, si));
        *x2 = __fsub_rn(__fmul_rn(b, co), __fmul_rn(a, si));
      } else {
        *x1 = __fsub_rn(__fmul_rn(a, co), __fmul_rn(b, si));
        *x2 = __fadd_rn(__fmul_rn(b, co), __fmul_rn(a, si));
      }
    }
  }
}
}  // namespace rotary_kernels
}  // namespace nm_cuda

#endif  // NM_CUDA_MODEL_ROTARY_KERNELS_CUH
