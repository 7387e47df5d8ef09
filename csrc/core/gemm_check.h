// The argument rules of nm_backend_ops.gemm (backend.h), in one place for every backend, so the
// CPU and CUDA backends accept and reject exactly the same calls with the same words. The CUDA
// backend adds the limits of cuBLAS's 32-bit interface on top.
#ifndef NM_CORE_GEMM_CHECK_H
#define NM_CORE_GEMM_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "backend.h"

// Nonzero when the call is invalid; then msg holds what is wrong (without the op name). Pointers
// are only required for what the call reads or writes: C when m, n and batch are nonzero, A and
// B when k is nonzero too. batch == 0 is a valid empty call.
static inline int nm_gemm_args_invalid(const nm_gemm_args* g, char* msg, size_t len) {
  const int f32_or_bf16_ab = g->ab_dtype == NM_F32 || g->ab_dtype == NM_BF16;
  const int f32_or_bf16_c = g->c_dtype == NM_F32 || g->c_dtype == NM_BF16;
  if (!f32_or_bf16_ab || !f32_or_bf16_c) {
    const nm_dtype bad = f32_or_bf16_ab ? g->c_dtype : g->ab_dtype;
    snprintf(msg, len, "%s must be f32 or bf16, got %s (%d)",
             f32_or_bf16_ab ? "c_dtype" : "ab_dtype", nm_dtype_name(bad), (int)bad);
    return 1;
  }
  if (g->m < 0 || g->n < 0 || g->k < 0 || g->batch < 0) {
    snprintf(msg, len, "m, n, k, batch must be >= 0 (got %lld, %lld, %lld, %lld)", (long long)g->m,
             (long long)g->n, (long long)g->k, (long long)g->batch);
    return 1;
  }
  if (g->m == 0 || g->n == 0 || g->batch == 0) return 0;  // nothing is touched
  if (g->c == NULL) {
    snprintf(msg, len, "c is NULL");
    return 1;
  }
  if (g->ldc < g->n) {
    snprintf(msg, len, "ldc (%lld) must be >= n (%lld)", (long long)g->ldc, (long long)g->n);
    return 1;
  }
  if (g->stride_a < 0 || g->stride_b < 0 || g->stride_c < 0) {
    snprintf(msg, len, "batch strides must be >= 0 (got %lld, %lld, %lld)", (long long)g->stride_a,
             (long long)g->stride_b, (long long)g->stride_c);
    return 1;
  }
  if (g->batch > 1) {
    // The batches' C matrices must not share an element (on a GPU the batches run at once, so a
    // shared element is a race): either each lies past the end of the previous one, or they are
    // column blocks of the same rows (entry b starts stride_c >= n columns right of entry b-1, all
    // within one row of ldc), as in the block-diagonal right product G @ blockdiag(Kinv) of
    // lib/optim (rightPrecondition).
    int64_t last_block = 0;
    const int one_after_another = g->stride_c >= (g->m - 1) * g->ldc + g->n;
    const int column_blocks = g->stride_c >= g->n &&
                              !__builtin_mul_overflow(g->batch - 1, g->stride_c, &last_block) &&
                              last_block + g->n <= g->ldc;
    if (!one_after_another && !column_blocks) {
      snprintf(msg, len,
               "stride_c (%lld) makes the batches' C matrices overlap: it must be >= "
               "(m-1)*ldc+n = %lld (one matrix after another), or >= n (%lld) with "
               "(batch-1)*stride_c+n <= ldc (%lld) (column blocks of the same rows)",
               (long long)g->stride_c, (long long)((g->m - 1) * g->ldc + g->n), (long long)g->n,
               (long long)g->ldc);
      return 1;
    }
  }
  if (g->k == 0) return 0;  // A and B are not read
  if (g->a == NULL || g->b == NULL) {
    snprintf(msg, len, "%s is NULL", g->a == NULL ? "a" : "b");
    return 1;
  }
  // Row strides: A is [m,k] ([k,m] when trans_a), B is [k,n] ([n,k] when trans_b).
  const int64_t min_lda = g->trans_a ? g->m : g->k;
  const int64_t min_ldb = g->trans_b ? g->k : g->n;
  if (g->lda < min_lda) {
    snprintf(msg, len, "lda (%lld) must be >= %lld (%s)", (long long)g->lda, (long long)min_lda,
             g->trans_a ? "A is [k, m]" : "A is [m, k]");
    return 1;
  }
  if (g->ldb < min_ldb) {
    snprintf(msg, len, "ldb (%lld) must be >= %lld (%s)", (long long)g->ldb, (long long)min_ldb,
             g->trans_b ? "B is [n, k]" : "B is [k, n]");
    return 1;
  }
  return 0;
}

#endif  // NM_CORE_GEMM_CHECK_H
