// Stand-in for CUDA's <cuda_bf16.h> under the host emulation: the harnesses put this folder on
// the include path (-I csrc/cuda/emulation/include) so that ../../dtypes.cuh, which includes
// <cuda_bf16.h>, gets the shim's __nv_bfloat16 and conversions instead. Test-only.
#ifndef NM_CUDA_EMULATION_CUDA_BF16_H
#define NM_CUDA_EMULATION_CUDA_BF16_H

#include "../cuda_host_shim.h"

#endif  // NM_CUDA_EMULATION_CUDA_BF16_H
