// CPU GEMM: the fp32 reference for every matrix multiply, and fast enough to train small models.
#ifndef NM_CPU_GEMM_H
#define NM_CPU_GEMM_H

#include "../core/backend.h"

namespace nm::cpu {

// Runs args synchronously on the calling thread plus compute_pool(); semantics exactly as
// nm_gemm_args documents (row-major, transposes, strided batch, beta == 0 does not read C,
// bf16 operands widened to f32, bf16 output rounded to nearest even).
void gemm(const nm_gemm_args& args);

// Which micro-kernel gemm() dispatches to on this CPU: "avx512", "avx2" or "generic".
const char* gemm_kernel_name();

}  // namespace nm::cpu

#endif  // NM_CPU_GEMM_H
