// Stand-in for <cublasLt.h> under the host emulation: the module creates and destroys a
// cuBLASLt handle (for matmuls it does not make yet); that is all this declares.
#ifndef NM_EMU_CUBLASLT_H
#define NM_EMU_CUBLASLT_H

#include "cublas_v2.h"

typedef struct cublasLtContext* cublasLtHandle_t;

extern "C" {
cublasStatus_t cublasLtCreate(cublasLtHandle_t* lightHandle);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t lightHandle);
}

#endif  // NM_EMU_CUBLASLT_H
