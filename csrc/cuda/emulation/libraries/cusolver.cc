// cuSOLVER stand-in: dense Cholesky factorization (potrf) and the inverse from it (potri) in
// double, on LAPACK (OpenBLAS's dpotrf_ / dpotri_), with cuSOLVER's interface:
//   - checked when called: handle, uplo, n >= 0, lda >= max(1, n), and a workspace of at least
//     the size the *_bufferSize query returns (else CUSOLVER_STATUS_INVALID_VALUE);
//   - run in stream order on the handle's stream; A, the workspace and devInfo must then lie in
//     live device memory (else the sticky cudaErrorIllegalAddress). The workspace is really used:
//     it is overwritten (with NaN), as cuSOLVER's scratch would be;
//   - devInfo as in LAPACK and cuSOLVER: 0 on success; potrf: i > 0 when the leading minor of
//     order i is not positive definite (the factorization stopped there); potri: i > 0 when the
//     factor's (i, i) element is zero.
// Fill modes are those of column-major storage, as in cuSOLVER.
#include <string.h>

#include <algorithm>
#include <string>

#include "../include/cusolverDn.h"
#include "../runtime/handle_registry.h"
#include "../runtime/memory_map.h"
#include "../runtime/runtime.h"
#include "../runtime/stream.h"

extern "C" {
void dpotrf_(const char* uplo, const int* n, double* a, const int* lda, int* info);
void dpotri_(const char* uplo, const int* n, double* a, const int* lda, int* info);
}

struct cusolverDnContext {
  cudaStream_t stream = nullptr;
};

namespace nm_emu {
namespace solver {
namespace {

using rt::MemoryKind;

HandleRegistry<cusolverDnHandle_t>& handles() { return registry_of<cusolverDnHandle_t>(); }
bool is_live(cusolverDnHandle_t handle) { return handles().contains(handle); }

// The workspace sizes (doubles) the queries report: a panel of 64 columns for potrf, a full
// matrix for potri (its triangular inverse and product).
int potrf_work(int n) { return std::max(1, 64 * n); }
int potri_work(int n) { return std::max(1, n * n); }

cusolverStatus_t check_args(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, int lda) {
  if (!is_live(handle)) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (uplo != CUBLAS_FILL_MODE_LOWER && uplo != CUBLAS_FILL_MODE_UPPER) return CUSOLVER_STATUS_INVALID_VALUE;
  if (n < 0 || lda < std::max(1, n)) return CUSOLVER_STATUS_INVALID_VALUE;
  return CUSOLVER_STATUS_SUCCESS;
}

struct Factor {
  const char* call;
  bool inverse;  // potri instead of potrf
  char uplo;
  int n, lda, lwork_needed;
  double* a;
  double* work;
  int* info;
};

void run(const Factor& f) {
  std::string why;
  const size_t a_bytes = f.n == 0 ? 0 : ((size_t)f.lda * (f.n - 1) + f.n) * sizeof(double);
  const char* bad = nullptr;
  if (a_bytes > 0 && rt::check_live_range(f.a, a_bytes, MemoryKind::kDevice, &why)) bad = "A";
  if (!bad && rt::check_live_range(f.work, (size_t)f.lwork_needed * sizeof(double), MemoryKind::kDevice, &why)) {
    bad = "workspace";
  }
  if (!bad && rt::check_live_range(f.info, sizeof(int), MemoryKind::kDevice, &why)) bad = "devInfo";
  if (bad) {
    rt::set_sticky_error(cudaErrorIllegalAddress, std::string(f.call) + ": " + bad + ": " + why);
    return;
  }
  memset(f.work, 0xff, (size_t)f.lwork_needed * sizeof(double));  // scratch: its old contents are gone
  int info = 0;
  if (f.n > 0) {
    if (f.inverse) {
      dpotri_(&f.uplo, &f.n, f.a, &f.lda, &info);
    } else {
      dpotrf_(&f.uplo, &f.n, f.a, &f.lda, &info);
    }
  }
  *f.info = info;
}

// The *_bufferSize queries: the arguments' check, then the workspace size in doubles.
cusolverStatus_t buffer_size(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, int lda, int* lwork,
                             int (*work_of)(int)) {
  const cusolverStatus_t st = check_args(handle, uplo, n, lda);
  if (st != CUSOLVER_STATUS_SUCCESS) return st;
  if (lwork == nullptr) return CUSOLVER_STATUS_INVALID_VALUE;
  *lwork = work_of(n);
  return CUSOLVER_STATUS_SUCCESS;
}

// potrf / potri: checked now, run in stream order on the handle's stream.
cusolverStatus_t factor(const char* call, bool inverse, cusolverDnHandle_t handle, cublasFillMode_t uplo, int n,
                        double* a, int lda, double* work, int lwork, int* info) {
  const cusolverStatus_t st = check_args(handle, uplo, n, lda);
  if (st != CUSOLVER_STATUS_SUCCESS) return st;
  const int needed = inverse ? potri_work(n) : potrf_work(n);
  if (lwork < needed || work == nullptr || info == nullptr) return CUSOLVER_STATUS_INVALID_VALUE;
  if (rt::sticky_error() != cudaSuccess) return CUSOLVER_STATUS_EXECUTION_FAILED;
  rt::Stream* stream = rt::resolve_stream(handle->stream);
  if (stream == nullptr) return CUSOLVER_STATUS_EXECUTION_FAILED;
  const Factor f{call, inverse, uplo == CUBLAS_FILL_MODE_LOWER ? 'L' : 'U', n, lda, needed, a, work, info};
  stream->enqueue([f] { run(f); });
  return CUSOLVER_STATUS_SUCCESS;
}

}  // namespace
}  // namespace solver
}  // namespace nm_emu

using namespace nm_emu::solver;

extern "C" {

cusolverStatus_t cusolverDnCreate(cusolverDnHandle_t* handle) {
  NM_EMU_ENTRY("cusolverDnCreate");
  if (nm_emu_injected_) return (cusolverStatus_t)nm_emu_injected_;
  if (handle == nullptr) return CUSOLVER_STATUS_INVALID_VALUE;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return CUSOLVER_STATUS_NOT_INITIALIZED;
  *handle = new cusolverDnContext();
  handles().add(*handle);
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnDestroy(cusolverDnHandle_t handle) {
  NM_EMU_ENTRY("cusolverDnDestroy");
  if (nm_emu_injected_) return (cusolverStatus_t)nm_emu_injected_;
  if (!handles().remove(handle)) return CUSOLVER_STATUS_NOT_INITIALIZED;
  delete handle;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnSetStream(cusolverDnHandle_t handle, cudaStream_t streamId) {
  NM_EMU_ENTRY("cusolverDnSetStream");
  if (nm_emu_injected_) return (cusolverStatus_t)nm_emu_injected_;
  if (!is_live(handle)) return CUSOLVER_STATUS_NOT_INITIALIZED;
  if (nm_emu::rt::resolve_stream(streamId) == nullptr) return CUSOLVER_STATUS_INVALID_VALUE;
  handle->stream = streamId;
  return CUSOLVER_STATUS_SUCCESS;
}

cusolverStatus_t cusolverDnDpotrf_bufferSize(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, double* A,
                                             int lda, int* Lwork) {
  NM_EMU_ENTRY("cusolverDnDpotrf_bufferSize");
  if (nm_emu_injected_) return (cusolverStatus_t)nm_emu_injected_;
  return buffer_size(handle, uplo, n, lda, Lwork, potrf_work);
}

cusolverStatus_t cusolverDnDpotri_bufferSize(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, double* A,
                                             int lda, int* Lwork) {
  NM_EMU_ENTRY("cusolverDnDpotri_bufferSize");
  if (nm_emu_injected_) return (cusolverStatus_t)nm_emu_injected_;
  return buffer_size(handle, uplo, n, lda, Lwork, potri_work);
}

cusolverStatus_t cusolverDnDpotrf(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, double* A, int lda,
                                  double* Workspace, int Lwork, int* devInfo) {
  NM_EMU_ENTRY("cusolverDnDpotrf");
  if (nm_emu_injected_) return (cusolverStatus_t)nm_emu_injected_;
  return factor("cusolverDnDpotrf", false, handle, uplo, n, A, lda, Workspace, Lwork, devInfo);
}

cusolverStatus_t cusolverDnDpotri(cusolverDnHandle_t handle, cublasFillMode_t uplo, int n, double* A, int lda,
                                  double* work, int lwork, int* devInfo) {
  NM_EMU_ENTRY("cusolverDnDpotri");
  if (nm_emu_injected_) return (cusolverStatus_t)nm_emu_injected_;
  return factor("cusolverDnDpotri", true, handle, uplo, n, A, lda, work, lwork, devInfo);
}

}  // extern "C"
