// The GEMM behind the gemm op, for other ops of this module that multiply matrices
// (newton_schulz): same semantics and validation as nm_backend_ops.gemm, with errors reported
// under the calling op's name. The backend's device must already be current (enter()).
#ifndef NM_CUDA_GEMM_H
#define NM_CUDA_GEMM_H

#include "../core/backend.h"

namespace nm_cuda {

nm_status gemm_checked(nm_backend* be, const nm_gemm_args& args, const char* op);

}  // namespace nm_cuda

#endif  // NM_CUDA_GEMM_H
