// Device-side loads and stores that give every kernel f32 math over f32 or bf16 storage.
// bf16 stores round to nearest even (__float2bfloat16_rn), matching core/bf16.h on the host
// (NaN stays NaN; the CUDA conversion returns the canonical quiet NaN).
#ifndef NM_CUDA_DTYPES_CUH
#define NM_CUDA_DTYPES_CUH

#include <cuda_bf16.h>
#include <stdint.h>

namespace nm_cuda {

__device__ __forceinline__ float load_f32(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_f32(const __nv_bfloat16* p, int64_t i) {
  return __bfloat162float(p[i]);
}

__device__ __forceinline__ void store_f32(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store_f32(__nv_bfloat16* p, int64_t i, float v) {
  p[i] = __float2bfloat16_rn(v);
}

// Grid-stride loop bounds with 64-bit indices: n may exceed 2^31 elements.
__device__ __forceinline__ int64_t grid_start() {
  return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_step() { return (int64_t)gridDim.x * blockDim.x; }

}  // namespace nm_cuda

#endif  // NM_CUDA_DTYPES_CUH
