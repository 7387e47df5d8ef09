// cuBLAS stand-in: handles, their settings, and cublasGemmStridedBatchedEx on OpenBLAS.
//
// The call is checked as cuBLAS checks it (handle, operations, m/n/k/batch >= 0, lda >= max(1,
// op(A) rows) ..., the type combination and compute type) and returns cuBLAS's status codes. The
// product is enqueued on the handle's stream; when it runs, each operand's span (all batches) must
// lie in one live device allocation, else the context gets the sticky cudaErrorIllegalAddress, as
// a GPU would. Every batch entry then goes to cblas_sgemm column-major with the arguments exactly
// as given (operations, m, n, k, leading dimensions, batch strides): a wrong flag or leading
// dimension computes the same wrong thing it would on a GPU. bf16 operands are widened to f32
// (exact) and a bf16 C is rounded once from the f32 result (round to nearest even); accumulation
// is OpenBLAS's f32 (no TF32, no reduced-precision reductions). Large products are split over
// column blocks of C and run on the launcher's threads; OpenBLAS itself runs single-threaded.
#include <cblas.h>
#include <string.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../include/cublas_v2.h"
#include "../include/cublasLt.h"
#include "../runtime/handle_registry.h"
#include "../runtime/memory_map.h"
#include "../runtime/runtime.h"
#include "../runtime/stream.h"

extern "C" void openblas_set_num_threads(int num_threads);

struct cublasContext {
  cudaStream_t stream = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  cublasMath_t math = CUBLAS_DEFAULT_MATH;
  cublasPointerMode_t pointer_mode = CUBLAS_POINTER_MODE_HOST;
};

struct cublasLtContext {
  int unused = 0;
};

namespace nm_emu {
namespace blas {
namespace {

using rt::MemoryKind;

// cuBLAS and cuBLASLt handles, in one registry.
HandleRegistry<const void*>& handles() { return registry_of<const void*>(); }
bool is_live(const void* handle) { return handles().contains(handle); }
void add_handle(const void* handle) { handles().add(handle); }
bool remove_handle(const void* handle) { return handles().remove(handle); }

// A usable device (what cublasCreate needs, else CUBLAS_STATUS_NOT_INITIALIZED).
bool device_ready() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0 && rt::sticky_error() == cudaSuccess;
}

size_t type_size(cudaDataType t) { return t == CUDA_R_32F ? 4 : 2; }

float bf16_to_f32(uint16_t bits) {
  const uint32_t u = (uint32_t)bits << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

uint16_t f32_to_bf16(float v) { return __float2bfloat16_rn(v).bits; }

struct Gemm {
  cublasOperation_t transa, transb;
  int m, n, k;
  float alpha, beta;
  const void* alpha_ptr = nullptr;  // device pointer mode: read when the product runs
  const void* beta_ptr = nullptr;
  const char* a;
  cudaDataType a_type;
  int lda;
  long long stride_a;
  const char* b;
  cudaDataType b_type;
  int ldb;
  long long stride_b;
  char* c;
  cudaDataType c_type;
  int ldc;
  long long stride_c;
  int batch;
  int chunks = 1;     // column blocks of C per batch entry
  int chunk_cols = 0;  // columns per block (the last one may have fewer)
};

// Elements spanned by a column-major rows x cols operand with leading dimension ld, over batch
// entries `stride` apart.
size_t extent(int rows, int cols, int ld, long long stride, int batch) {
  if (rows == 0 || cols == 0) return 0;
  const long long one = (long long)ld * (cols - 1) + rows;
  const long long lo = std::min(0LL, stride * (batch - 1));
  const long long hi = std::max(0LL, stride * (batch - 1));
  return (size_t)(one + hi - lo);
}

const char* first_element(const char* p, long long stride, int batch, size_t elem) {
  return p + std::min(0LL, stride * (batch - 1)) * (long long)elem;
}

// The operand spans, checked when the product runs (frees are stream-ordered).
bool operands_live(const Gemm& g, std::string* why) {
  const bool ta = g.transa != CUBLAS_OP_N, tb = g.transb != CUBLAS_OP_N;
  struct Operand {
    const char* name;
    const char* p;
    size_t elems;
    size_t elem;
  };
  const bool reads_ab = g.k > 0 && g.alpha != 0.0f;
  const Operand ops[] = {
      {"A", reads_ab ? first_element(g.a, g.stride_a, g.batch, type_size(g.a_type)) : nullptr,
       extent(ta ? g.k : g.m, ta ? g.m : g.k, g.lda, g.stride_a, g.batch), type_size(g.a_type)},
      {"B", reads_ab ? first_element(g.b, g.stride_b, g.batch, type_size(g.b_type)) : nullptr,
       extent(tb ? g.n : g.k, tb ? g.k : g.n, g.ldb, g.stride_b, g.batch), type_size(g.b_type)},
      {"C", first_element(g.c, g.stride_c, g.batch, type_size(g.c_type)),
       extent(g.m, g.n, g.ldc, g.stride_c, g.batch), type_size(g.c_type)},
  };
  for (const Operand& op : ops) {
    if (op.p == nullptr || op.elems == 0) continue;
    std::string what;
    if (rt::check_live_range(op.p, op.elems * op.elem, MemoryKind::kDevice, &what)) {
      *why = std::string("operand ") + op.name + ": " + what;
      return false;
    }
  }
  return true;
}

// Widens a column-major rows x cols bf16 operand (leading dimension ld) into f32 with the same ld.
void widen(std::vector<float>& out, const uint16_t* in, int rows, int cols, int ld) {
  if (rows == 0 || cols == 0) return;
  const size_t span = (size_t)ld * (cols - 1) + rows;
  out.resize(span);
  for (int j = 0; j < cols; j++) {
    for (int i = 0; i < rows; i++) out[(size_t)j * ld + i] = bf16_to_f32(in[(size_t)j * ld + i]);
  }
}

CBLAS_TRANSPOSE cblas_op(cublasOperation_t op) { return op == CUBLAS_OP_N ? CblasNoTrans : CblasTrans; }

// One work item: batch entry `item / chunks`, columns [j0, j1) of its C.
void run_item(const Gemm& g, int item) {
  const int batch = item / g.chunks, chunk = item % g.chunks;
  const int j0 = chunk * g.chunk_cols;
  const int cols = std::min(g.n, j0 + g.chunk_cols) - j0;
  if (cols <= 0) return;
  const bool ta = g.transa != CUBLAS_OP_N, tb = g.transb != CUBLAS_OP_N;
  const char* a = g.a + (long long)batch * g.stride_a * (long long)type_size(g.a_type);
  const char* b = g.b + (long long)batch * g.stride_b * (long long)type_size(g.b_type);
  char* c = g.c + (long long)batch * g.stride_c * (long long)type_size(g.c_type);
  // Column j of op(B) starts at B + j*ldb (B is k x n) or B + j (B is n x k, transposed).
  b += (size_t)(tb ? j0 : (long long)j0 * g.ldb) * type_size(g.b_type);
  c += (size_t)j0 * g.ldc * type_size(g.c_type);

  thread_local std::vector<float> wa, wb, wc;
  const float* af = reinterpret_cast<const float*>(a);
  const float* bf = reinterpret_cast<const float*>(b);
  const bool reads_ab = g.k > 0 && g.alpha != 0.0f;
  if (g.a_type == CUDA_R_16BF && reads_ab) {
    widen(wa, reinterpret_cast<const uint16_t*>(a), ta ? g.k : g.m, ta ? g.m : g.k, g.lda);
    widen(wb, reinterpret_cast<const uint16_t*>(b), tb ? cols : g.k, tb ? g.k : cols, g.ldb);
    af = wa.data();
    bf = wb.data();
  }
  if (g.c_type == CUDA_R_32F) {
    cblas_sgemm(CblasColMajor, cblas_op(g.transa), cblas_op(g.transb), g.m, cols, g.k, g.alpha, af, g.lda, bf,
                g.ldb, g.beta, reinterpret_cast<float*>(c), g.ldc);
    return;
  }
  // bf16 C: f32 product (plus beta * widened C) in a compact buffer, rounded once into C.
  uint16_t* cb = reinterpret_cast<uint16_t*>(c);
  wc.assign((size_t)g.m * cols, 0.0f);
  if (g.beta != 0.0f) {
    for (int j = 0; j < cols; j++) {
      for (int i = 0; i < g.m; i++) wc[(size_t)j * g.m + i] = bf16_to_f32(cb[(size_t)j * g.ldc + i]);
    }
  }
  cblas_sgemm(CblasColMajor, cblas_op(g.transa), cblas_op(g.transb), g.m, cols, g.k, g.alpha, af, g.lda, bf, g.ldb,
              g.beta, wc.data(), g.m);
  for (int j = 0; j < cols; j++) {
    for (int i = 0; i < g.m; i++) cb[(size_t)j * g.ldc + i] = f32_to_bf16(wc[(size_t)j * g.m + i]);
  }
}

void run_gemm(const Gemm& given) {
  Gemm g = given;
  if (g.alpha_ptr != nullptr) {
    std::string why;
    if (rt::check_live_range(g.alpha_ptr, 4, MemoryKind::kDevice, &why) ||
        rt::check_live_range(g.beta_ptr, 4, MemoryKind::kDevice, &why)) {
      rt::set_sticky_error(cudaErrorIllegalAddress, "cublasGemmStridedBatchedEx: alpha / beta: " + why);
      return;
    }
    memcpy(&g.alpha, g.alpha_ptr, 4);
    memcpy(&g.beta, g.beta_ptr, 4);
  }
  std::string why;
  if (!operands_live(g, &why)) {
    rt::set_sticky_error(cudaErrorIllegalAddress, "cublasGemmStridedBatchedEx: " + why);
    return;
  }
  // Column blocks: enough items to keep the launcher's threads busy on a large product.
  const double flops = 2.0 * g.m * g.n * (double)g.k;
  const int threads = (int)launcher_threads();
  int chunks = 1;
  if (g.batch < 2 * threads && flops > 4e6) chunks = std::min(g.n / 16, (2 * threads + g.batch - 1) / g.batch);
  if (chunks < 1) chunks = 1;
  g.chunks = chunks;
  g.chunk_cols = (g.n + chunks - 1) / chunks;
  KernelLaunch items;
  items.name = "cublasGemmStridedBatchedEx";
  items.host_items = true;
  items.args = &g;
  items.invoke = [](const void* self) { run_item(*static_cast<const Gemm*>(self), (int)blockIdx.x); };
  items.grid = dim3((unsigned)(g.batch * g.chunks));
  items.block = dim3(1);
  const LaunchOutcome outcome = run_grid(items);
  if (outcome.kind != LaunchOutcome::kOk) rt::set_sticky_error(cudaErrorIllegalAddress, outcome.message);
}

// OpenBLAS runs single-threaded (also its LAPACK, for cusolver.cc): the launcher's threads split
// the work instead, so the two thread pools never compete for the cores.
struct SingleThreadedOpenBlas {
  SingleThreadedOpenBlas() { openblas_set_num_threads(1); }
} g_single_threaded_openblas;

bool supported_types(cudaDataType a, cudaDataType b, cudaDataType c, cublasComputeType_t compute) {
  if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_PEDANTIC) return false;
  if (a != b) return false;
  if (a == CUDA_R_32F) return c == CUDA_R_32F;
  if (a == CUDA_R_16BF) return c == CUDA_R_16BF || c == CUDA_R_32F;
  return false;
}

bool valid_algo(int algo) { return algo == -1 || (algo >= 0 && algo <= 23) || (algo >= 99 && algo <= 115); }

bool valid_op(cublasOperation_t op) { return op == CUBLAS_OP_N || op == CUBLAS_OP_T || op == CUBLAS_OP_C; }

}  // namespace
}  // namespace blas
}  // namespace nm_emu

using namespace nm_emu::blas;
using nm_emu::rt::note;

extern "C" {

cublasStatus_t cublasCreate(cublasHandle_t* handle) {
  NM_EMU_ENTRY("cublasCreate");
  if (nm_emu_injected_) return (cublasStatus_t)nm_emu_injected_;
  if (handle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (!device_ready()) return CUBLAS_STATUS_NOT_INITIALIZED;
  *handle = new cublasContext();
  add_handle(*handle);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDestroy(cublasHandle_t handle) {
  NM_EMU_ENTRY("cublasDestroy");
  if (nm_emu_injected_) return (cublasStatus_t)nm_emu_injected_;
  if (!remove_handle(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  // cuBLAS synchronizes the handle's stream before releasing it.
  if (nm_emu::rt::Stream* s = nm_emu::rt::resolve_stream(handle->stream)) s->wait(s->last_enqueued());
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream(cublasHandle_t handle, cudaStream_t streamId) {
  NM_EMU_ENTRY("cublasSetStream");
  if (nm_emu_injected_) return (cublasStatus_t)nm_emu_injected_;
  if (!is_live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (nm_emu::rt::resolve_stream(streamId) == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  handle->stream = streamId;
  // As in cuBLAS: setting the stream drops a user workspace (back to cuBLAS's own pool).
  handle->workspace = nullptr;
  handle->workspace_bytes = 0;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetStream(cublasHandle_t handle, cudaStream_t* streamId) {
  NM_EMU_ENTRY("cublasGetStream");
  if (nm_emu_injected_) return (cublasStatus_t)nm_emu_injected_;
  if (!is_live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (streamId == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *streamId = handle->stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetWorkspace(cublasHandle_t handle, void* workspace, size_t workspaceSizeInBytes) {
  NM_EMU_ENTRY("cublasSetWorkspace");
  if (nm_emu_injected_) return (cublasStatus_t)nm_emu_injected_;
  if (!is_live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (workspaceSizeInBytes > 0) {
    // cuBLAS wants device memory aligned to 256 bytes.
    std::string why;
    if (workspace == nullptr || ((uintptr_t)workspace & 255) != 0 ||
        nm_emu::rt::check_range(workspace, workspaceSizeInBytes, nm_emu::rt::MemoryKind::kDevice, &why)) {
      return CUBLAS_STATUS_INVALID_VALUE;
    }
  }
  handle->workspace = workspace;
  handle->workspace_bytes = workspaceSizeInBytes;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  NM_EMU_ENTRY("cublasSetMathMode");
  if (nm_emu_injected_) return (cublasStatus_t)nm_emu_injected_;
  if (!is_live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  const int base = (int)mode & 0xf, flags = (int)mode & ~0xf;
  if (base > CUBLAS_TF32_TENSOR_OP_MATH || (flags & ~CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION) != 0) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetMathMode(cublasHandle_t handle, cublasMath_t* mode) {
  NM_EMU_ENTRY("cublasGetMathMode");
  if (nm_emu_injected_) return (cublasStatus_t)nm_emu_injected_;
  if (!is_live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->math;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetPointerMode(cublasHandle_t handle, cublasPointerMode_t mode) {
  NM_EMU_ENTRY("cublasSetPointerMode");
  if (nm_emu_injected_) return (cublasStatus_t)nm_emu_injected_;
  if (!is_live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode != CUBLAS_POINTER_MODE_HOST && mode != CUBLAS_POINTER_MODE_DEVICE) return CUBLAS_STATUS_INVALID_VALUE;
  handle->pointer_mode = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetPointerMode(cublasHandle_t handle, cublasPointerMode_t* mode) {
  NM_EMU_ENTRY("cublasGetPointerMode");
  if (nm_emu_injected_) return (cublasStatus_t)nm_emu_injected_;
  if (!is_live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (mode == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  *mode = handle->pointer_mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGetProperty(libraryPropertyType type, int* value) {
  NM_EMU_ENTRY("cublasGetProperty");
  if (nm_emu_injected_) return (cublasStatus_t)nm_emu_injected_;
  if (value == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  switch (type) {
    case MAJOR_VERSION: *value = 13; break;  // the CUDA 13.0 toolkit's cuBLAS 13.0.2
    case MINOR_VERSION: *value = 0; break;
    case PATCH_LEVEL: *value = 2; break;
    default: return CUBLAS_STATUS_INVALID_VALUE;
  }
  return CUBLAS_STATUS_SUCCESS;
}

const char* cublasGetStatusName(cublasStatus_t status) {
  NM_EMU_ENTRY("cublasGetStatusName");
  (void)nm_emu_injected_;
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

const char* cublasGetStatusString(cublasStatus_t status) {
  NM_EMU_ENTRY("cublasGetStatusString");
  (void)nm_emu_injected_;
  switch (status) {
    case CUBLAS_STATUS_SUCCESS: return "success";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "the library was not initialized";
    case CUBLAS_STATUS_ALLOC_FAILED: return "the resource allocation failed";
    case CUBLAS_STATUS_INVALID_VALUE: return "an invalid numeric value was used as an argument";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "an absent device architectural feature is required";
    case CUBLAS_STATUS_MAPPING_ERROR: return "an access to GPU memory space failed";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "the GPU program failed to execute";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "an internal operation failed";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "the functionality requested is not supported";
    case CUBLAS_STATUS_LICENSE_ERROR: return "error detected trying to check the license";
  }
  return "unknown error";
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb,
                                          int m, int n, int k, const void* alpha, const void* A, cudaDataType Atype,
                                          int lda, long long int strideA, const void* B, cudaDataType Btype, int ldb,
                                          long long int strideB, const void* beta, void* C, cudaDataType Ctype,
                                          int ldc, long long int strideC, int batchCount,
                                          cublasComputeType_t computeType, cublasGemmAlgo_t algo) {
  NM_EMU_ENTRY("cublasGemmStridedBatchedEx");
  if (nm_emu_injected_) return (cublasStatus_t)nm_emu_injected_;
  if (!is_live(handle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (!valid_op(transa) || !valid_op(transb) || m < 0 || n < 0 || k < 0 || batchCount < 0) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  const int min_lda = transa == CUBLAS_OP_N ? m : k, min_ldb = transb == CUBLAS_OP_N ? k : n;
  if (lda < std::max(1, min_lda) || ldb < std::max(1, min_ldb) || ldc < std::max(1, m)) {
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  if (alpha == nullptr || beta == nullptr || !valid_algo((int)algo)) return CUBLAS_STATUS_INVALID_VALUE;
  if (!supported_types(Atype, Btype, Ctype, computeType)) return CUBLAS_STATUS_NOT_SUPPORTED;
  if (nm_emu::rt::sticky_error() != cudaSuccess) return CUBLAS_STATUS_EXECUTION_FAILED;
  if (m == 0 || n == 0 || batchCount == 0) return CUBLAS_STATUS_SUCCESS;
  nm_emu::rt::Stream* stream = nm_emu::rt::resolve_stream(handle->stream);
  if (stream == nullptr) return CUBLAS_STATUS_EXECUTION_FAILED;
  Gemm g;
  g.transa = transa;
  g.transb = transb;
  g.m = m;
  g.n = n;
  g.k = k;
  if (handle->pointer_mode == CUBLAS_POINTER_MODE_HOST) {
    memcpy(&g.alpha, alpha, 4);  // read now: the caller's variables may be gone when it runs
    memcpy(&g.beta, beta, 4);
  } else {
    g.alpha = 1.0f;  // placeholders for the span check; the real values are read when it runs
    g.beta = 1.0f;
    g.alpha_ptr = alpha;
    g.beta_ptr = beta;
  }
  g.a = static_cast<const char*>(A);
  g.a_type = Atype;
  g.lda = lda;
  g.stride_a = strideA;
  g.b = static_cast<const char*>(B);
  g.b_type = Btype;
  g.ldb = ldb;
  g.stride_b = strideB;
  g.c = static_cast<char*>(C);
  g.c_type = Ctype;
  g.ldc = ldc;
  g.stride_c = strideC;
  g.batch = batchCount;
  stream->enqueue([g] { run_gemm(g); });
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtCreate(cublasLtHandle_t* lightHandle) {
  NM_EMU_ENTRY("cublasLtCreate");
  if (nm_emu_injected_) return (cublasStatus_t)nm_emu_injected_;
  if (lightHandle == nullptr) return CUBLAS_STATUS_INVALID_VALUE;
  if (!device_ready()) return CUBLAS_STATUS_NOT_INITIALIZED;
  *lightHandle = new cublasLtContext();
  add_handle(*lightHandle);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtDestroy(cublasLtHandle_t lightHandle) {
  NM_EMU_ENTRY("cublasLtDestroy");
  if (nm_emu_injected_) return (cublasStatus_t)nm_emu_injected_;
  if (!remove_handle(lightHandle)) return CUBLAS_STATUS_NOT_INITIALIZED;
  delete lightHandle;
  return CUBLAS_STATUS_SUCCESS;
}

}  // extern "C"
