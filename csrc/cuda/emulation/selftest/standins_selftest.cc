// Self-test of the emulation's stand-ins: they must behave as the real CUDA runtime, cuBLAS,
// cuSOLVER, cub and NCCL document, or the emulated suite's verdicts mean nothing. Built with the
// emulated module (module.mk: build-cuda-emu/standins_selftest), run by
// test/cuda-emulation-standins.test.ts, one scenario per process (a sticky error ends a process's
// CUDA context for good, as on a GPU):
//
//   standins_selftest <scenario>     scenarios: runtime, cublas, cusolver, cub, nccl,
//                                    sticky-kernel, sticky-cublas, sticky-free
//
// Prints one line per check; exit status 0 when all pass.
#include <cub/cub.cuh>
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <math.h>
#include <nccl.h>
#include <stdio.h>
#include <string.h>

#include <string>
#include <vector>

#include "../../kernel_compat.cuh"

namespace {

int g_failures = 0;

void check(bool ok, const char* what) {
  printf("%s %s\n", ok ? "ok  " : "FAIL", what);
  if (!ok) g_failures++;
}

bool is_nan_bits(const void* p, size_t bytes) {
  const unsigned char* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < bytes; i++) {
    if (b[i] != 0xff) return false;
  }
  return true;
}

__global__ void add_one_kernel(float* x, int n) {
  for (int i = (int)(blockIdx.x * blockDim.x + threadIdx.x); i < n; i += (int)(gridDim.x * blockDim.x)) x[i] += 1.0f;
}

// The block's sum through shared memory and barriers: each thread adds its value at slot 0 in
// turn (thread order enforced by one barrier per thread) and thread 0 writes the total.
__global__ void ordered_sum_kernel(const float* x, float* out) {
  NM_SHARED_VAR(float, total);
  if (threadIdx.x == 0) total = 0.0f;
  __syncthreads();
  for (unsigned t = 0; t < blockDim.x; t++) {
    if (threadIdx.x == t) total += x[blockIdx.x * blockDim.x + t];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = total;
}

__global__ void shuffle_kernel(int* out) {
  const int lane = (int)(threadIdx.x & 31);
  const int down = __shfl_down_sync(0xffffffffu, lane * 10, 3);
  const int x = __shfl_xor_sync(0xffffffffu, lane, 1);
  out[threadIdx.x] = down * 100 + x;
}

// Every thread of a 3-D grid of 3-D blocks writes where it is; blockDim (5, 3, 2) is not a
// multiple of 32 (a partial warp) and has a barrier, so threads park and resume.
__global__ void index_kernel(int* out) {
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned per_block = blockDim.x * blockDim.y * blockDim.z;
  __syncthreads();
  out[block * per_block + thread] = (int)(1000 * block + thread);
}

float bf16_to_f32(uint16_t bits) {
  const uint32_t u = (uint32_t)bits << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

// ---- runtime ------------------------------------------------------------------------------------

void runtime_scenario() {
  cudaStream_t s;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess, "cudaStreamCreateWithFlags");
  float* d = nullptr;
  check(cudaMalloc(&d, 64 * sizeof(float)) == cudaSuccess, "cudaMalloc");
  std::vector<float> host(64, 0.0f);
  check(cudaMemcpy(host.data(), d, 64 * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess &&
            is_nan_bits(host.data(), 64 * sizeof(float)),
        "fresh device memory reads as 0xff bytes (NaN)");

  float* pinned = nullptr;
  check(cudaMallocHost(&pinned, 64 * sizeof(float)) == cudaSuccess, "cudaMallocHost");
  cudaPointerAttributes attr;
  check(cudaPointerGetAttributes(&attr, pinned) == cudaSuccess && attr.type == cudaMemoryTypeHost,
        "pinned memory is cudaMemoryTypeHost");
  check(cudaPointerGetAttributes(&attr, d) == cudaSuccess && attr.type == cudaMemoryTypeDevice,
        "device memory is cudaMemoryTypeDevice");
  check(cudaPointerGetAttributes(&attr, host.data()) == cudaSuccess && attr.type == cudaMemoryTypeUnregistered,
        "pageable memory is cudaMemoryTypeUnregistered");

  // Lazy stream: queued work has not run before something waits for it.
  memset(pinned, 0, 64 * sizeof(float));
  check(cudaMemsetAsync(d, 0, 64 * sizeof(float), s) == cudaSuccess, "cudaMemsetAsync");
  NM_CUDA_LAUNCH(2, 32, 0, s, add_one_kernel)(d, 64);
  check(cudaGetLastError() == cudaSuccess, "a valid launch leaves no error");
  check(cudaMemcpyAsync(pinned, d, 64 * sizeof(float), cudaMemcpyDeviceToHost, s) == cudaSuccess,
        "cudaMemcpyAsync to pinned memory");
  cudaEvent_t e;
  check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming) == cudaSuccess, "cudaEventCreateWithFlags");
  check(cudaEventRecord(e, s) == cudaSuccess, "cudaEventRecord");
  check(pinned[0] == 0.0f && pinned[63] == 0.0f, "a host read before the synchronization sees nothing of the queued work");
  check(cudaEventQuery(e) == cudaErrorNotReady, "cudaEventQuery: not ready before anything waits");
  check(cudaGetLastError() == cudaSuccess, "cudaErrorNotReady is not recorded as the last error");
  check(cudaEventSynchronize(e) == cudaSuccess, "cudaEventSynchronize");
  bool ones = true;
  for (int i = 0; i < 64; i++) ones = ones && pinned[i] == 1.0f;
  check(ones, "after the synchronization: memset, kernel and copy ran in stream order");
  check(cudaEventQuery(e) == cudaSuccess && cudaStreamQuery(s) == cudaSuccess, "event and stream complete");

  // Launch configuration errors are left for cudaGetLastError, which clears them.
  NM_CUDA_LAUNCH(1, 2048, 0, s, add_one_kernel)(d, 64);
  check(cudaGetLastError() == cudaErrorInvalidConfiguration, "a 2048-thread block: cudaErrorInvalidConfiguration");
  check(cudaGetLastError() == cudaSuccess, "cudaGetLastError clears a non-sticky error");
  NM_CUDA_LAUNCH(1, 32, 64 * 1024, s, add_one_kernel)(d, 64);
  check(cudaGetLastError() == cudaErrorInvalidValue, "64 KiB of dynamic shared memory without the attribute: refused");

  // Barriers and shuffles.
  float* sums = nullptr;
  check(cudaMalloc(&sums, 2 * sizeof(float)) == cudaSuccess, "cudaMalloc");
  std::vector<float> in(128);
  for (int i = 0; i < 128; i++) in[i] = (float)i;
  check(cudaMemcpy(d, in.data(), 64 * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess, "cudaMemcpy H2D");
  NM_CUDA_LAUNCH(2, 32, 0, s, ordered_sum_kernel)(d, sums);
  float got[2];
  check(cudaMemcpyAsync(got, sums, sizeof got, cudaMemcpyDeviceToHost, s) == cudaSuccess &&
            got[0] == 496.0f && got[1] == 1520.0f,
        "a pageable D2H copy returns once it (and the kernel before it) ran; barriers order the threads");
  int* shuffled = nullptr;
  check(cudaMalloc(&shuffled, 64 * sizeof(int)) == cudaSuccess, "cudaMalloc");
  NM_CUDA_LAUNCH(1, 64, 0, s, shuffle_kernel)(shuffled);
  std::vector<int> sh(64);
  check(cudaMemcpy(sh.data(), shuffled, 64 * sizeof(int), cudaMemcpyDeviceToHost) == cudaSuccess &&
            sh[0] == -1 && sh[63] == -1,
        "the default stream does not wait for a non-blocking stream: a cudaMemcpy right after sees no result");
  check(cudaMemcpyAsync(sh.data(), shuffled, 64 * sizeof(int), cudaMemcpyDeviceToHost, s) == cudaSuccess,
        "cudaMemcpyAsync to pageable memory on the kernel's stream");
  bool shuffles_ok = true;
  for (int t = 0; t < 64; t++) {
    const int lane = t & 31;
    const int down = (lane + 3 < 32 ? lane + 3 : lane) * 10;
    shuffles_ok = shuffles_ok && sh[t] == down * 100 + (lane ^ 1);
  }
  check(shuffles_ok, "__shfl_down_sync and __shfl_xor_sync within each warp");

  int* where = nullptr;
  const int grid_threads = 12 * 30;  // grid (2, 3, 2), block (5, 3, 2)
  check(cudaMalloc(&where, grid_threads * sizeof(int)) == cudaSuccess, "cudaMalloc");
  NM_CUDA_LAUNCH(dim3(2, 3, 2), dim3(5, 3, 2), 0, s, index_kernel)(where);
  std::vector<int> at(grid_threads);
  check(cudaMemcpyAsync(at.data(), where, grid_threads * sizeof(int), cudaMemcpyDeviceToHost, s) == cudaSuccess,
        "cudaMemcpyAsync to pageable memory");
  bool indices_ok = true;
  for (int i = 0; i < grid_threads; i++) indices_ok = indices_ok && at[i] == 1000 * (i / 30) + i % 30;
  check(indices_ok, "a 3-D grid of 3-D blocks of 30 threads: every (blockIdx, threadIdx) once");

  // Copies: wrong directions and ranges past an allocation are refused at the call.
  check(cudaMemcpyAsync(d, host.data(), 65 * sizeof(float), cudaMemcpyHostToDevice, s) == cudaErrorInvalidValue,
        "a copy past the end of a device allocation: cudaErrorInvalidValue");
  check(cudaMemcpyAsync(host.data(), d, 4, cudaMemcpyHostToDevice, s) == cudaErrorInvalidValue,
        "a copy whose direction does not match its pointers: cudaErrorInvalidValue");
  check(cudaGetLastError() == cudaErrorInvalidValue, "... recorded as the last error");
  check(cudaMemcpy2DAsync(d, 8, d, 8, 16, 2, cudaMemcpyDeviceToDevice, s) == cudaErrorInvalidPitchValue,
        "a pitch below the width: cudaErrorInvalidPitchValue");
  cudaGetLastError();

  // Stream-ordered allocation and free.
  cudaMemPoolProps props;
  memset(&props, 0, sizeof props);
  props.allocType = cudaMemAllocationTypePinned;
  props.location.type = cudaMemLocationTypeDevice;
  props.location.id = 0;
  cudaMemPool_t pool;
  check(cudaMemPoolCreate(&pool, &props) == cudaSuccess, "cudaMemPoolCreate");
  void* p = nullptr;
  check(cudaMallocFromPoolAsync(&p, 1000, pool, s) == cudaSuccess && ((uintptr_t)p & 255) == 0,
        "cudaMallocFromPoolAsync, 256-byte aligned");
  check(cudaFreeAsync(p, s) == cudaSuccess, "cudaFreeAsync");
  check(cudaMemsetAsync(p, 0, 8, s) == cudaErrorInvalidValue, "new work on memory passed to cudaFreeAsync: refused");
  cudaGetLastError();
  check(cudaStreamSynchronize(s) == cudaSuccess, "cudaStreamSynchronize");
  check(cudaMemPoolDestroy(pool) == cudaSuccess, "cudaMemPoolDestroy");
  check(cudaEventDestroy(e) == cudaSuccess && cudaStreamDestroy(s) == cudaSuccess, "destroy event and stream");
  check(cudaFreeHost(pinned) == cudaSuccess && cudaFree(d) == cudaSuccess, "cudaFreeHost, cudaFree");
  check(cudaFree(d) == cudaErrorInvalidValue, "a second cudaFree of the same pointer: cudaErrorInvalidValue");
}

// ---- cuBLAS --------------------------------------------------------------------------------------

// C (column-major m x n, ldc) = alpha op(A) op(B) + beta C in double.
void gemm_ref(bool ta, bool tb, int m, int n, int k, double alpha, const std::vector<float>& a, int lda,
              const std::vector<float>& b, int ldb, double beta, std::vector<double>& c, int ldc) {
  for (int j = 0; j < n; j++) {
    for (int i = 0; i < m; i++) {
      double acc = 0;
      for (int p = 0; p < k; p++) {
        const double av = ta ? a[(size_t)i * lda + p] : a[(size_t)p * lda + i];
        const double bv = tb ? b[(size_t)p * ldb + j] : b[(size_t)j * ldb + p];
        acc += av * bv;
      }
      c[(size_t)j * ldc + i] = alpha * acc + beta * c[(size_t)j * ldc + i];
    }
  }
}

void cublas_scenario() {
  cublasHandle_t h;
  check(cublasCreate(&h) == CUBLAS_STATUS_SUCCESS, "cublasCreate");
  cudaStream_t s;
  cudaStreamCreate(&s);
  check(cublasSetStream(h, s) == CUBLAS_STATUS_SUCCESS, "cublasSetStream");
  const float one = 1.0f, zero = 0.0f, half = 0.5f;
  // Every transpose combination, leading dimensions above the minimum, 3 batch entries.
  for (int ta = 0; ta < 2; ta++) {
    for (int tb = 0; tb < 2; tb++) {
      const int m = 5, n = 7, k = 9, batch = 3;
      const int lda = (ta ? k : m) + 2, ldb = (tb ? n : k) + 1, ldc = m + 3;
      const int a_cols = ta ? m : k, b_cols = tb ? k : n;
      const long long sa = (long long)lda * a_cols + 4, sb = (long long)ldb * b_cols, sc = (long long)ldc * n + 8;
      std::vector<float> a(sa * batch), b(sb * batch), c(sc * batch);
      for (size_t i = 0; i < a.size(); i++) a[i] = (float)((i * 37) % 11) - 5.0f;
      for (size_t i = 0; i < b.size(); i++) b[i] = (float)((i * 13) % 7) - 3.0f;
      for (size_t i = 0; i < c.size(); i++) c[i] = (float)((i * 5) % 9) - 4.0f;
      float *da, *db, *dc;
      cudaMalloc(&da, a.size() * 4);
      cudaMalloc(&db, b.size() * 4);
      cudaMalloc(&dc, c.size() * 4);
      cudaMemcpy(da, a.data(), a.size() * 4, cudaMemcpyHostToDevice);
      cudaMemcpy(db, b.data(), b.size() * 4, cudaMemcpyHostToDevice);
      cudaMemcpy(dc, c.data(), c.size() * 4, cudaMemcpyHostToDevice);
      const cublasStatus_t st = cublasGemmStridedBatchedEx(
          h, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &half, da, CUDA_R_32F, lda, sa,
          db, CUDA_R_32F, ldb, sb, &half, dc, CUDA_R_32F, ldc, sc, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
      std::vector<float> got(c.size());
      cudaMemcpy(got.data(), dc, c.size() * 4, cudaMemcpyDeviceToHost);
      bool ok = st == CUBLAS_STATUS_SUCCESS;
      for (int bi = 0; bi < batch && ok; bi++) {
        std::vector<float> ab(a.begin() + bi * sa, a.begin() + (bi + 1) * sa), bb(b.begin() + bi * sb, b.begin() + (bi + 1) * sb);
        std::vector<double> ref(c.begin() + bi * sc, c.begin() + (bi + 1) * sc);
        gemm_ref(ta, tb, m, n, k, 0.5, ab, lda, bb, ldb, 0.5, ref, ldc);
        for (long long i = 0; i < sc; i++) {
          const bool inside = i % ldc < m && i / ldc < n;
          // Integers: exact in f32. Outside the matrices (padding) nothing may change.
          ok = ok && (inside ? got[bi * sc + i] == (float)ref[i] : got[bi * sc + i] == c[bi * sc + i]);
        }
      }
      char what[128];
      snprintf(what, sizeof what, "f32 GEMM op %c%c, padded leading dimensions, 3 strided batches: exact, padding untouched",
               ta ? 'T' : 'N', tb ? 'T' : 'N');
      check(ok, what);
      cudaFree(da);
      cudaFree(db);
      cudaFree(dc);
    }
  }
  // bf16 x bf16 -> bf16: the f32 result rounded once; beta = 0 over a NaN C.
  {
    const int m = 3, n = 2, k = 2;
    const uint16_t a[] = {0x3f80, 0x4000, 0x4040, 0x3f81, 0x3f80, 0x3f80};  // column-major 3x2
    const uint16_t b[] = {0x3f80, 0x3b80, 0x4000, 0x3f80};                  // 2x2: [1, 2^-8; 2, 1]
    uint16_t *da, *db, *dc;
    cudaMalloc(&da, sizeof a);
    cudaMalloc(&db, sizeof b);
    cudaMalloc(&dc, m * n * 2);  // NaN-filled
    cudaMemcpy(da, a, sizeof a, cudaMemcpyHostToDevice);
    cudaMemcpy(db, b, sizeof b, cudaMemcpyHostToDevice);
    const cublasStatus_t st = cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &one, da, CUDA_R_16BF, m, 0,
                                                         db, CUDA_R_16BF, k, 0, &zero, dc, CUDA_R_16BF, m, 0, 1,
                                                         CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    uint16_t c[6];
    cudaMemcpy(c, dc, sizeof c, cudaMemcpyDeviceToHost);
    bool ok = st == CUBLAS_STATUS_SUCCESS;
    for (int j = 0; j < n; j++) {
      for (int i = 0; i < m; i++) {
        const float exact = bf16_to_f32(a[i]) * bf16_to_f32(b[j * k]) + bf16_to_f32(a[m + i]) * bf16_to_f32(b[j * k + 1]);
        ok = ok && c[j * m + i] == __float2bfloat16_rn(exact).bits;
      }
    }
    check(ok, "bf16 GEMM: f32 accumulation rounded once to bf16; beta = 0 does not read the NaN C");
    cudaFree(da);
    cudaFree(db);
    cudaFree(dc);
  }
  float* d;
  cudaMalloc(&d, 64 * 4);
  check(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, d, CUDA_R_32F, 3, 0, d, CUDA_R_32F, 4, 0,
                                   &zero, d, CUDA_R_32F, 4, 0, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) ==
            CUBLAS_STATUS_INVALID_VALUE,
        "lda < m: CUBLAS_STATUS_INVALID_VALUE");
  check(cublasGemmStridedBatchedEx(h, CUBLAS_OP_T, CUBLAS_OP_N, 4, 4, 4, &one, d, CUDA_R_32F, 4, 0, d, CUDA_R_32F, 3, 0,
                                   &zero, d, CUDA_R_32F, 4, 0, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) ==
            CUBLAS_STATUS_INVALID_VALUE,
        "ldb < k: CUBLAS_STATUS_INVALID_VALUE");
  check(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, -1, &one, d, CUDA_R_32F, 4, 0, d, CUDA_R_32F, 4, 0,
                                   &zero, d, CUDA_R_32F, 4, 0, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) ==
            CUBLAS_STATUS_INVALID_VALUE,
        "k < 0: CUBLAS_STATUS_INVALID_VALUE");
  check(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, d, CUDA_R_32F, 4, 0, d, CUDA_R_32F, 4, 0,
                                   &zero, d, CUDA_R_16BF, 4, 0, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) ==
            CUBLAS_STATUS_NOT_SUPPORTED,
        "f32 x f32 -> bf16: CUBLAS_STATUS_NOT_SUPPORTED");
  check(cublasGemmStridedBatchedEx(nullptr, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, d, CUDA_R_32F, 4, 0, d, CUDA_R_32F, 4,
                                   0, &zero, d, CUDA_R_32F, 4, 0, 1, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) ==
            CUBLAS_STATUS_NOT_INITIALIZED,
        "no handle: CUBLAS_STATUS_NOT_INITIALIZED");
  check(cublasSetWorkspace(h, d + 1, 16) == CUBLAS_STATUS_INVALID_VALUE, "a workspace not 256-byte aligned: refused");
  check(strcmp(cublasGetStatusName(CUBLAS_STATUS_NOT_SUPPORTED), "CUBLAS_STATUS_NOT_SUPPORTED") == 0,
        "cublasGetStatusName");
  cudaFree(d);
  check(cublasDestroy(h) == CUBLAS_STATUS_SUCCESS, "cublasDestroy");
}

// ---- cuSOLVER -----------------------------------------------------------------------------------

void cusolver_scenario() {
  cusolverDnHandle_t h;
  check(cusolverDnCreate(&h) == CUSOLVER_STATUS_SUCCESS, "cusolverDnCreate");
  const int n = 3;
  // A = L L^T with L = [2 0 0; 1 3 0; 4 5 6] (column-major, the lower triangle is what counts).
  const double spd[9] = {4, 2, 8, 2, 10, 19, 8, 19, 77};
  double *da, *work;
  int* info;
  cudaMalloc(&da, sizeof spd);
  cudaMalloc(&info, sizeof(int));
  cudaMemcpy(da, spd, sizeof spd, cudaMemcpyHostToDevice);
  int lwork = 0, lwork_inv = 0;
  check(cusolverDnDpotrf_bufferSize(h, CUBLAS_FILL_MODE_LOWER, n, da, n, &lwork) == CUSOLVER_STATUS_SUCCESS && lwork > 0,
        "cusolverDnDpotrf_bufferSize");
  check(cusolverDnDpotri_bufferSize(h, CUBLAS_FILL_MODE_LOWER, n, da, n, &lwork_inv) == CUSOLVER_STATUS_SUCCESS,
        "cusolverDnDpotri_bufferSize");
  const int lw = lwork > lwork_inv ? lwork : lwork_inv;
  cudaMalloc(&work, (size_t)lw * sizeof(double));
  check(cusolverDnDpotrf(h, CUBLAS_FILL_MODE_LOWER, n, da, n, work, lwork - 1, info) == CUSOLVER_STATUS_INVALID_VALUE,
        "potrf with less workspace than the query asked: CUSOLVER_STATUS_INVALID_VALUE");
  check(cusolverDnDpotrf(h, CUBLAS_FILL_MODE_LOWER, n, da, 2, work, lw, info) == CUSOLVER_STATUS_INVALID_VALUE,
        "potrf with lda < n: CUSOLVER_STATUS_INVALID_VALUE");
  check(cusolverDnDpotrf(h, CUBLAS_FILL_MODE_LOWER, n, da, n, work, lw, info) == CUSOLVER_STATUS_SUCCESS, "potrf");
  double l[9];
  int hinfo = -7;
  cudaMemcpy(l, da, sizeof l, cudaMemcpyDeviceToHost);
  cudaMemcpy(&hinfo, info, sizeof hinfo, cudaMemcpyDeviceToHost);
  check(hinfo == 0 && l[0] == 2 && l[1] == 1 && l[2] == 4 && l[4] == 3 && l[5] == 5 && l[8] == 6,
        "potrf: info 0 and the Cholesky factor in the lower triangle");
  check(cusolverDnDpotri(h, CUBLAS_FILL_MODE_LOWER, n, da, n, work, lw, info) == CUSOLVER_STATUS_SUCCESS, "potri");
  double inv[9];
  cudaMemcpy(inv, da, sizeof inv, cudaMemcpyDeviceToHost);
  double worst = 0;  // (A inv)(i, j) vs I, with inv's lower triangle mirrored
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < n; j++) {
      double acc = 0;
      for (int p = 0; p < n; p++) acc += spd[p * n + i] * (p >= j ? inv[j * n + p] : inv[p * n + j]);
      worst = fmax(worst, fabs(acc - (i == j ? 1.0 : 0.0)));
    }
  }
  check(worst < 1e-12, "potri: the inverse in the lower triangle");
  // Not positive definite at order 2: [1 2; 2 1] in the leading block.
  const double bad[9] = {1, 2, 0, 2, 1, 0, 0, 0, 1};
  cudaMemcpy(da, bad, sizeof bad, cudaMemcpyHostToDevice);
  cusolverDnDpotrf(h, CUBLAS_FILL_MODE_LOWER, n, da, n, work, lw, info);
  cudaMemcpy(&hinfo, info, sizeof hinfo, cudaMemcpyDeviceToHost);
  check(hinfo == 2, "potrf of a matrix whose leading minor of order 2 is not positive definite: info 2");
  cudaFree(da);
  cudaFree(work);
  cudaFree(info);
  check(cusolverDnDestroy(h) == CUSOLVER_STATUS_SUCCESS, "cusolverDnDestroy");
}

// ---- cub -----------------------------------------------------------------------------------------

void cub_scenario() {
  const int n = 9;
  // Keys 0x1xx and 0x0xx: with end_bit 8 only the low byte orders them (ties keep input order).
  const uint32_t keys[n] = {0x105, 0x003, 0x005, 0x103, 0x0ff, 0x001, 0x005, 0x1ff, 0x000};
  const int32_t vals[n] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
  uint32_t *dk, *dko;
  int32_t *dv, *dvo;
  cudaMalloc(&dk, sizeof keys);
  cudaMalloc(&dko, sizeof keys);
  cudaMalloc(&dv, sizeof vals);
  cudaMalloc(&dvo, sizeof vals);
  cudaMemcpy(dk, keys, sizeof keys, cudaMemcpyHostToDevice);
  cudaMemcpy(dv, vals, sizeof vals, cudaMemcpyHostToDevice);
  size_t temp_bytes = 0;
  check(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, (const uint32_t*)dk, dko, (const int32_t*)dv, dvo, n, 0, 8) ==
                cudaSuccess &&
            temp_bytes > 0,
        "SortPairs without storage: the size query");
  void* temp;
  cudaMalloc(&temp, temp_bytes);
  size_t too_small = temp_bytes - 1;
  check(cub::DeviceRadixSort::SortPairs(temp, too_small, (const uint32_t*)dk, dko, (const int32_t*)dv, dvo, n, 0, 8) ==
            cudaErrorInvalidValue,
        "SortPairs with less storage than asked: cudaErrorInvalidValue");
  cudaGetLastError();
  check(cub::DeviceRadixSort::SortPairs(temp, temp_bytes, (const uint32_t*)dk, dko, (const int32_t*)dv, dvo, n, 0, 8) ==
            cudaSuccess,
        "SortPairs over key bits [0, 8)");
  uint32_t ko[n];
  int32_t vo[n];
  cudaMemcpy(ko, dko, sizeof ko, cudaMemcpyDeviceToHost);
  cudaMemcpy(vo, dvo, sizeof vo, cudaMemcpyDeviceToHost);
  const int32_t expect_low[n] = {8, 5, 1, 3, 0, 2, 6, 4, 7};
  check(memcmp(vo, expect_low, sizeof vo) == 0 && ko[0] == 0x000 && ko[8] == 0x1ff,
        "stable, ordered by the low byte only (0x105 before 0x005: input order)");
  cub::DeviceRadixSort::SortPairs(temp, temp_bytes, (const uint32_t*)dk, dko, (const int32_t*)dv, dvo, n, 0, 9);
  cudaMemcpy(vo, dvo, sizeof vo, cudaMemcpyDeviceToHost);
  const int32_t expect_full[n] = {8, 5, 1, 2, 6, 4, 3, 0, 7};
  check(memcmp(vo, expect_full, sizeof vo) == 0, "over key bits [0, 9): fully ordered, stable");
  cudaFree(dk);
  cudaFree(dko);
  cudaFree(dv);
  cudaFree(dvo);
  cudaFree(temp);
}

// ---- NCCL ----------------------------------------------------------------------------------------

void nccl_scenario() {
  int version = 0;
  check(ncclGetVersion(&version) == ncclSuccess && version == NCCL_VERSION_CODE, "ncclGetVersion");
  ncclUniqueId id;
  check(ncclGetUniqueId(&id) == ncclSuccess, "ncclGetUniqueId");
  ncclComm_t comm = nullptr, two = nullptr;
  check(ncclCommInitRank(&two, 2, id, 0) == ncclInvalidUsage && strstr(ncclGetLastError(nullptr), "one rank only"),
        "two ranks: ncclInvalidUsage, saying the emulation runs one rank");
  check(ncclCommInitRank(&comm, 1, id, 0) == ncclSuccess, "ncclCommInitRank, rank 0 of 1");
  int count = 0, rank = -1, dev = -1;
  check(ncclCommCount(comm, &count) == ncclSuccess && count == 1 && ncclCommUserRank(comm, &rank) == ncclSuccess &&
            rank == 0 && ncclCommCuDevice(comm, &dev) == ncclSuccess && dev == 0,
        "ncclCommCount / UserRank / CuDevice");
  cudaStream_t s;
  cudaStreamCreate(&s);
  const int n = 6;
  const float x[n] = {1.5f, -2.0f, 3.25f, 1e-30f, -0.0f, 65504.0f};
  float *send, *recv;
  cudaMalloc(&send, sizeof x);
  cudaMalloc(&recv, 2 * sizeof x);
  cudaMemcpy(send, x, sizeof x, cudaMemcpyHostToDevice);
  float out[2 * n];
  for (ncclRedOp_t op : {ncclSum, ncclAvg, ncclMax}) {
    cudaMemsetAsync(recv, 0, sizeof x, s);
    const bool called = ncclAllReduce(send, recv, n, ncclFloat32, op, comm, s) == ncclSuccess;
    cudaMemcpyAsync(out, recv, sizeof x, cudaMemcpyDeviceToHost, s);
    char what[96];
    snprintf(what, sizeof what, "ncclAllReduce (op %d, f32): the input, bit for bit, after the memset before it", (int)op);
    check(called && memcmp(out, x, sizeof x) == 0, what);
  }
  check(ncclAllReduce(recv, recv, n, ncclBfloat16, ncclSum, comm, s) == ncclSuccess, "ncclAllReduce in place, bf16");
  check(ncclReduceScatter(send, recv, n, ncclFloat32, ncclSum, comm, s) == ncclSuccess &&
            cudaMemcpy(out, recv, sizeof x, cudaMemcpyDeviceToHost) == cudaSuccess && memcmp(out, x, sizeof x) == 0,
        "ncclReduceScatter");
  check(ncclAllGather(send, recv + n, n, ncclFloat32, comm, s) == ncclSuccess &&
            cudaMemcpy(out, recv + n, sizeof x, cudaMemcpyDeviceToHost) == cudaSuccess && memcmp(out, x, sizeof x) == 0,
        "ncclAllGather");
  check(ncclBroadcast(send, recv, n, ncclFloat32, 0, comm, s) == ncclSuccess && ncclReduce(send, recv, n, ncclFloat32, ncclMax, 0, comm, s) == ncclSuccess,
        "ncclBroadcast / ncclReduce, root 0");
  check(ncclBroadcast(send, recv, n, ncclFloat32, 1, comm, s) == ncclInvalidArgument, "root 1 of 1 rank: ncclInvalidArgument");
  check(ncclAllReduce(send, recv, n, (ncclDataType_t)42, ncclSum, comm, s) == ncclInvalidArgument,
        "an unknown data type: ncclInvalidArgument");
  check(ncclAllReduce(x, recv, n, ncclFloat32, ncclSum, comm, s) == ncclInvalidArgument,
        "a host buffer: ncclInvalidArgument");
  // Send / receive to self, paired inside a group.
  cudaMemsetAsync(recv, 0, sizeof x, s);
  ncclGroupStart();
  ncclSend(send, n, ncclFloat32, 0, comm, s);
  ncclRecv(recv, n, ncclFloat32, 0, comm, s);
  check(ncclGroupEnd() == ncclSuccess && cudaMemcpy(out, recv, sizeof x, cudaMemcpyDeviceToHost) == cudaSuccess &&
            memcmp(out, x, sizeof x) == 0,
        "ncclSend + ncclRecv to self in a group");
  check(ncclSend(send, n, ncclFloat32, 0, comm, s) == ncclInvalidUsage, "a send to self outside a group: ncclInvalidUsage");
  check(ncclGroupEnd() == ncclInvalidUsage, "ncclGroupEnd without ncclGroupStart: ncclInvalidUsage");
  check(strcmp(ncclGetErrorString(ncclInvalidUsage), "invalid usage (run with NCCL_DEBUG=WARN for details)") == 0,
        "ncclGetErrorString");
  check(ncclCommFinalize(comm) == ncclSuccess && ncclCommDestroy(comm) == ncclSuccess, "ncclCommFinalize / Destroy");

  // A non-blocking communicator: in progress until ncclCommGetAsyncError says otherwise.
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t nb = nullptr;
  check(ncclCommInitRankConfig(&nb, 1, id, 0, &config) == ncclInProgress && nb != nullptr,
        "ncclCommInitRankConfig, blocking = 0: ncclInProgress");
  check(ncclAllReduce(send, recv, n, ncclFloat32, ncclSum, nb, s) == ncclInvalidUsage,
        "a collective before initialization finished: ncclInvalidUsage");
  ncclResult_t state = ncclInProgress;
  int polls = 0;
  while (state == ncclInProgress && polls < 10) {
    ncclCommGetAsyncError(nb, &state);
    polls++;
  }
  check(state == ncclSuccess && polls > 1, "ncclCommGetAsyncError: in progress, then success");
  check(ncclAllReduce(send, recv, n, ncclFloat32, ncclSum, nb, s) == ncclSuccess, "then collectives work");
  check(ncclCommFinalize(nb) == ncclInProgress, "ncclCommFinalize of a non-blocking communicator: in progress");
  state = ncclInProgress;
  for (polls = 0; state == ncclInProgress && polls < 10; polls++) ncclCommGetAsyncError(nb, &state);
  check(state == ncclSuccess && ncclCommDestroy(nb) == ncclSuccess, "finalize completes; ncclCommDestroy");
  ncclComm_t ab = nullptr;
  ncclCommInitRank(&ab, 1, id, 0);
  check(ncclCommAbort(ab) == ncclSuccess, "ncclCommAbort");
  cudaFree(send);
  cudaFree(recv);
}

// ---- sticky errors (each in its own process) ----------------------------------------------------

__global__ void read_kernel(const float* x, float* out) { out[0] = x[blockIdx.x * blockDim.x + threadIdx.x]; }

void expect_sticky(cudaStream_t s, const char* what) {
  const cudaError_t sync = cudaStreamSynchronize(s);
  check(sync == cudaErrorIllegalAddress, what);
  float* p = nullptr;
  check(cudaMalloc(&p, 4) == cudaErrorIllegalAddress && cudaGetLastError() == cudaErrorIllegalAddress &&
            cudaGetLastError() == cudaErrorIllegalAddress,
        "sticky: later calls fail with it and cudaGetLastError does not clear it");
}

void sticky_kernel_scenario() {
  cudaStream_t s;
  cudaStreamCreate(&s);
  float* x;
  float* out;
  cudaMalloc(&x, 4 * sizeof(float));
  cudaMalloc(&out, sizeof(float));
  // Reads 2048 floats of a 4-float allocation: past its page, into the guard page after it.
  NM_CUDA_LAUNCH(2, 1024, 0, s, read_kernel)(x, out);
  check(cudaGetLastError() == cudaSuccess, "the launch itself succeeds");
  expect_sticky(s, "a kernel reading past its allocation into the guard page: cudaErrorIllegalAddress at the next sync");
}

void sticky_cublas_scenario() {
  cublasHandle_t h;
  cublasCreate(&h);
  cudaStream_t s;
  cudaStreamCreate(&s);
  cublasSetStream(h, s);
  float* d;
  cudaMalloc(&d, 16 * sizeof(float));
  const float one = 1.0f;
  // Valid arguments for cuBLAS, but a batch stride that runs past the 16-float allocation.
  check(cublasGemmStridedBatchedEx(h, CUBLAS_OP_N, CUBLAS_OP_N, 4, 4, 4, &one, d, CUDA_R_32F, 4, 16, d, CUDA_R_32F, 4, 0,
                                   &one, d, CUDA_R_32F, 4, 0, 2, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) ==
            CUBLAS_STATUS_SUCCESS,
        "cuBLAS accepts the call");
  expect_sticky(s, "operand A's second batch entry lies past the allocation: cudaErrorIllegalAddress at the next sync");
}

void sticky_free_scenario() {
  cudaStream_t s;
  cudaStreamCreate(&s);
  cudaMemPoolProps props;
  memset(&props, 0, sizeof props);
  props.allocType = cudaMemAllocationTypePinned;
  props.location.type = cudaMemLocationTypeDevice;
  cudaMemPool_t pool;
  cudaMemPoolCreate(&pool, &props);
  float *x, *out;
  cudaMallocFromPoolAsync(&x, 4096, pool, s);
  cudaMallocFromPoolAsync(&out, 4, pool, s);
  cudaFreeAsync(x, s);  // freed in stream order before the kernel that reads it
  NM_CUDA_LAUNCH(1, 32, 0, s, read_kernel)(x, out);
  expect_sticky(s, "a kernel reading memory freed before it in stream order: cudaErrorIllegalAddress");
}

}  // namespace

int main(int argc, char** argv) {
  const std::string scenario = argc > 1 ? argv[1] : "";
  if (scenario == "runtime") {
    runtime_scenario();
  } else if (scenario == "cublas") {
    cublas_scenario();
  } else if (scenario == "cusolver") {
    cusolver_scenario();
  } else if (scenario == "cub") {
    cub_scenario();
  } else if (scenario == "nccl") {
    nccl_scenario();
  } else if (scenario == "sticky-kernel") {
    sticky_kernel_scenario();
  } else if (scenario == "sticky-cublas") {
    sticky_cublas_scenario();
  } else if (scenario == "sticky-free") {
    sticky_free_scenario();
  } else {
    fprintf(stderr, "usage: standins_selftest runtime|cublas|cusolver|cub|nccl|sticky-kernel|sticky-cublas|sticky-free\n");
    return 2;
  }
  printf("%s: %d failure(s)\n", scenario.c_str(), g_failures);
  return g_failures == 0 ? 0 : 1;
}
