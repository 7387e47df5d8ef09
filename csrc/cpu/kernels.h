// CPU reference kernels for the non-GEMM ops of the backend table. Each runs synchronously on
// the calling thread (the backend's stream thread) plus compute_pool(); the backend enqueues them.
#ifndef NM_CPU_KERNELS_H
#define NM_CPU_KERNELS_H

#include <cstdint>

#include "../core/backend.h"

namespace nm::cpu {

void fill(void* dst, nm_dtype dtype, int64_t n, double value);
// Returns false for an unsupported (dst, src) pair.
bool cast_supported(nm_dtype dst_dtype, nm_dtype src_dtype);
void cast(void* dst, nm_dtype dst_dtype, const void* src, nm_dtype src_dtype, int64_t n);
void binary(nm_binary_op op, void* out, const void* a, const void* b, nm_dtype dtype, int64_t n);
void scale(void* out, const void* x, float alpha, nm_dtype dtype, int64_t n);
void axpy(void* y, const void* x, float alpha, nm_dtype dtype, int64_t n);
// Deterministic: fixed 16384-element chunks summed in double, chunk results added in order.
float sum(const void* x, nm_dtype dtype, int64_t n, bool squares);
void copy_rows(void* dst, int64_t dst_stride, const void* src, int64_t src_stride, int64_t rows,
               int64_t row_bytes);

}  // namespace nm::cpu

#endif  // NM_CPU_KERNELS_H
