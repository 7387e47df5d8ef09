// Backend lifecycle: create (device checks, stream, allocator, cuBLAS/cuBLASLt/cuSOLVER handles),
// destroy, describe, last_error, and the enter() helper every op starts with.
#include <nccl.h>
#include <stdint.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <new>

#include "check.h"
#include "context.h"
#include "ops.h"

namespace nm_cuda {
namespace {

// cuBLAS workspace: NVIDIA recommends 32 MiB on Hopper for the best kernels; owning it (instead
// of cuBLAS's internal per-stream pool) keeps its lifetime tied to the backend.
constexpr size_t kCublasWorkspaceBytes = 32u << 20;
constexpr int kProbeValue = 0x6e6d;

__global__ void probe_kernel(int* out) { *out = kProbeValue; }

// "sm_80, sm_90": the architectures nvcc compiled this file for (__CUDA_ARCH_LIST__ is defined by
// nvcc in the host pass too, e.g. 800,900). Every .cu in the module is built with the same list.
void built_archs(char* out, size_t out_len) {
  out[0] = '\0';
#ifdef __CUDA_ARCH_LIST__
  static const int kArchs[] = {__CUDA_ARCH_LIST__};
  size_t used = 0;
  for (size_t i = 0; i < sizeof kArchs / sizeof kArchs[0] && used < out_len; i++) {
    int n = snprintf(out + used, out_len - used, "%ssm_%d", i ? ", " : "", kArchs[i] / 10);
    if (n < 0) break;
    used += (size_t)n;
  }
#else
  snprintf(out, out_len, "(unknown architectures)");
#endif
}

// Launches a one-thread kernel and reads its result back. This is where a module built for the
// wrong GPU generation fails (no kernel image), so the error can say exactly that.
nm_status probe_kernel_image(nm_backend* be) {
  int* d_value = nullptr;
  NM_CUDA_CHECK(nullptr, cudaMalloc(&d_value, sizeof(int)));
  NM_CUDA_LAUNCH(1, 1, 0, be->stream, probe_kernel)(d_value);
  cudaError_t err = cudaGetLastError();
  int h_value = 0;
  if (err == cudaSuccess) {
    err = cudaMemcpyAsync(&h_value, d_value, sizeof h_value, cudaMemcpyDeviceToHost, be->stream);
  }
  if (err == cudaSuccess) err = cudaStreamSynchronize(be->stream);
  cudaError_t free_err = cudaFree(d_value);

  char archs[256];
  built_archs(archs, sizeof archs);
  if (err == cudaErrorNoKernelImageForDevice || err == cudaErrorInvalidDeviceFunction) {
    return set_error(NM_ERR_UNAVAILABLE,
                     "this module was built for %s but the GPU is sm_%d%d (%s); rebuild it with "
                     "NM_CUDA_ARCHS including %d%d (%s)",
                     archs, be->cc_major, be->cc_minor, be->name, be->cc_major, be->cc_minor,
                     cudaGetErrorName(err));
  }
  if (err == cudaErrorUnsupportedPtxVersion || err == cudaErrorInvalidPtx) {
    int driver = 0;
    cudaDriverGetVersion(&driver);
    return set_error(NM_ERR_UNAVAILABLE,
                     "this module was built for %s; the GPU (sm_%d%d, %s) can only run it by "
                     "JIT-compiling its PTX, which the installed driver (CUDA %d.%d) cannot do: "
                     "%s (%s)",
                     archs, be->cc_major, be->cc_minor, be->name, driver / 1000,
                     (driver % 1000) / 10, cudaGetErrorString(err), cudaGetErrorName(err));
  }
  if (err != cudaSuccess) return fail_cuda(nullptr, "probe kernel launch", err);
  if (free_err != cudaSuccess) return fail_cuda(nullptr, "cudaFree", free_err);
  if (h_value != kProbeValue) {
    return set_error(NM_ERR_DEVICE, "probe kernel ran but did not write its result (read %d)",
                     h_value);
  }
  return NM_OK;
}

// The oldest driver branch that runs a CUDA runtime of this major version (CUDA 13.x: R580,
// 12.x: R525, thanks to minor-version compatibility).
int min_driver_branch(int runtime_version) {
  return runtime_version >= 13000 ? 580 : runtime_version >= 12000 ? 525 : 450;
}

// Why there is no usable device, with the driver's and the runtime's CUDA versions: this is the
// message a machine without a (new enough) driver, or without a GPU, shows in devices().
nm_status no_device_error(cudaError_t err) {
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);  // 0 when no driver is installed
  cudaRuntimeGetVersion(&runtime);
  const int branch = min_driver_branch(runtime);
  // A working driver without visible devices: CUDA says cudaErrorNoDevice (count 0).
  if (err == cudaSuccess || err == cudaErrorNoDevice) {
    const char* visible = getenv("CUDA_VISIBLE_DEVICES");
    return set_error(NM_ERR_UNAVAILABLE,
                     "no CUDA-capable device is visible (NVIDIA driver for CUDA %d.%d, CUDA "
                     "runtime %d.%d%s%s%s)",
                     driver / 1000, (driver % 1000) / 10, runtime / 1000, (runtime % 1000) / 10,
                     visible ? ", CUDA_VISIBLE_DEVICES='" : "", visible ? visible : "",
                     visible ? "'" : "");
  }
  if (driver == 0) {
    return set_error(NM_ERR_UNAVAILABLE,
                     "no NVIDIA driver was found (libcuda.so.1 could not be loaded); this module "
                     "uses the CUDA %d.%d runtime, which needs driver R%d or newer (%s: %s)",
                     runtime / 1000, (runtime % 1000) / 10, branch, cudaGetErrorName(err),
                     cudaGetErrorString(err));
  }
  if (err == cudaErrorInsufficientDriver || driver / 1000 < runtime / 1000) {
    return set_error(NM_ERR_UNAVAILABLE,
                     "the NVIDIA driver supports CUDA %d.%d but this module uses the CUDA %d.%d "
                     "runtime; update the driver to R%d or newer (%s: %s)",
                     driver / 1000, (driver % 1000) / 10, runtime / 1000, (runtime % 1000) / 10,
                     branch, cudaGetErrorName(err), cudaGetErrorString(err));
  }
  char what[512];
  snprintf(what, sizeof what, "cudaGetDeviceCount failed: %s (%s); NVIDIA driver for CUDA %d.%d, "
           "CUDA runtime %d.%d", cudaGetErrorString(err), cudaGetErrorName(err), driver / 1000,
           (driver % 1000) / 10, runtime / 1000, (runtime % 1000) / 10);
  return set_error(status_of(err), "%s", what);
}

nm_status create_impl(int device_index, nm_backend** out) {
  int count = 0;
  cudaError_t count_err = cudaGetDeviceCount(&count);
  if (count_err != cudaSuccess || count <= 0) return no_device_error(count_err);
  if (device_index < 0 || device_index >= count) {
    return set_error(NM_ERR_INVALID, "CUDA device index %d is out of range (%d device%s visible)",
                     device_index, count, count == 1 ? "" : "s");
  }

  nm_backend* be = new (std::nothrow) nm_backend();
  if (be == nullptr) return set_error(NM_ERR_OUT_OF_MEMORY, "out of host memory");
  *out = be;  // from here on the caller destroys a partial backend on failure
  be->device = device_index;

  NM_CUDA_CHECK(nullptr, cudaSetDevice(device_index));
  cudaDeviceProp prop;
  NM_CUDA_CHECK(nullptr, cudaGetDeviceProperties(&prop, device_index));
  snprintf(be->name, sizeof be->name, "%s", prop.name);
  be->total_memory = prop.totalGlobalMem;
  int pools_supported = 0, max_pitch = 0;
  NM_CUDA_CHECK(nullptr, cudaDeviceGetAttribute(&be->cc_major, cudaDevAttrComputeCapabilityMajor,
                                                device_index));
  NM_CUDA_CHECK(nullptr, cudaDeviceGetAttribute(&be->cc_minor, cudaDevAttrComputeCapabilityMinor,
                                                device_index));
  NM_CUDA_CHECK(nullptr, cudaDeviceGetAttribute(&be->sm_count, cudaDevAttrMultiProcessorCount,
                                                device_index));
  NM_CUDA_CHECK(nullptr, cudaDeviceGetAttribute(&max_pitch, cudaDevAttrMaxPitch, device_index));
  NM_CUDA_CHECK(nullptr, cudaDeviceGetAttribute(&pools_supported,
                                                cudaDevAttrMemoryPoolsSupported, device_index));
  be->max_pitch = max_pitch > 0 ? (size_t)max_pitch : 0;

  NM_CUDA_CHECK(nullptr, cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking));
  NM_TRY(probe_kernel_image(be));

  if (pools_supported) {
    // A pool of our own (not the device default) so its settings do not leak into other users
    // of the device in this process. Keep freed memory cached instead of returning it to the
    // driver at every synchronization (the default threshold of 0 does that).
    cudaMemPoolProps props;
    memset(&props, 0, sizeof props);
    props.allocType = cudaMemAllocationTypePinned;
    props.handleTypes = cudaMemHandleTypeNone;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device_index;
    NM_CUDA_CHECK(nullptr, cudaMemPoolCreate(&be->pool, &props));
    uint64_t threshold = UINT64_MAX;
    NM_CUDA_CHECK(nullptr,
                  cudaMemPoolSetAttribute(be->pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  }

  NM_CUBLAS_CHECK(nullptr, cublasCreate(&be->cublas));
  // cublasSetStream resets the workspace to cuBLAS's default, so it must come first.
  NM_CUBLAS_CHECK(nullptr, cublasSetStream(be->cublas, be->stream));
  NM_CUDA_CHECK(nullptr, cudaMalloc(&be->cublas_workspace, kCublasWorkspaceBytes));
  be->cublas_workspace_bytes = kCublasWorkspaceBytes;
  NM_CUBLAS_CHECK(nullptr, cublasSetWorkspace(be->cublas, be->cublas_workspace,
                                              be->cublas_workspace_bytes));
  // Default math: no TF32 for f32 GEMMs (results match the CPU reference to ~1e-5); and never
  // reduce split-K partials in bf16 when C is bf16.
  NM_CUBLAS_CHECK(nullptr,
                  cublasSetMathMode(be->cublas, (cublasMath_t)(CUBLAS_DEFAULT_MATH |
                                    CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)));
  NM_CUBLAS_CHECK(nullptr, cublasSetPointerMode(be->cublas, CUBLAS_POINTER_MODE_HOST));
  NM_CUBLAS_CHECK(nullptr, cublasLtCreate(&be->cublaslt));
  NM_CUSOLVER_CHECK(nullptr, cusolverDnCreate(&be->cusolver));
  NM_CUSOLVER_CHECK(nullptr, cusolverDnSetStream(be->cusolver, be->stream));

  NM_CUDA_CHECK(nullptr, cudaMalloc(&be->reduce_partials, kReduceBlocks * sizeof(double)));
  return NM_OK;
}

// Appends s to out as a JSON string body (quotes and control characters escaped).
void json_escape(const char* s, char* out, size_t out_len) {
  size_t used = 0;
  for (; *s != '\0' && used + 7 < out_len; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      out[used++] = '\\';
      out[used++] = (char)ch;
    } else if (ch < 0x20) {
      used += (size_t)snprintf(out + used, out_len - used, "\\u%04x", ch);
    } else {
      out[used++] = (char)ch;
    }
  }
  out[used] = '\0';
}

}  // namespace

nm_status enter(nm_backend* be, const char* op) {
  if (be == nullptr) return fail_invalid(op, "backend is NULL");
  int current = -1;
  if (cudaGetDevice(&current) != cudaSuccess || current != be->device) {
    NM_CUDA_CHECK(op, cudaSetDevice(be->device));
  }
  return NM_OK;
}

nm_backend* create(int device_index, char* err, size_t err_len) {
  nm_backend* be = nullptr;
  nm_status status = create_impl(device_index, &be);
  if (status == NM_OK) return be;
  if (err != nullptr && err_len > 0) snprintf(err, err_len, "%s", last_error());
  if (be != nullptr) {
    // destroy() may overwrite the thread's message while tearing down; keep create's reason.
    char reason[1024];
    snprintf(reason, sizeof reason, "%s", last_error());
    destroy(be);
    set_error(status, "%s", reason);
  }
  return nullptr;
}

void destroy(nm_backend* be) {
  if (be == nullptr) return;
  // Errors while tearing down are not actionable (the process may be exiting and the runtime
  // unloading); each step still runs so nothing that can be released leaks.
  cudaSetDevice(be->device);
  if (be->stream != nullptr) cudaStreamSynchronize(be->stream);
  staging_destroy(be);
  if (be->cusolver != nullptr) cusolverDnDestroy(be->cusolver);
  if (be->cublaslt != nullptr) cublasLtDestroy(be->cublaslt);
  if (be->cublas != nullptr) cublasDestroy(be->cublas);
  if (be->cublas_workspace != nullptr) cudaFree(be->cublas_workspace);
  if (be->reduce_partials != nullptr) cudaFree(be->reduce_partials);
  // Outstanding allocations keep the pool alive until they are freed (cudaMemPoolDestroy).
  if (be->pool != nullptr) cudaMemPoolDestroy(be->pool);
  if (be->stream != nullptr) cudaStreamDestroy(be->stream);
  delete be;
}

const char* last_error_message() { return last_error(); }

nm_status describe(nm_backend* be, char* buf, size_t buf_len) {
  static const char* const kOp = "describe";
  NM_TRY(enter(be, kOp));
  if (buf == nullptr || buf_len == 0) return fail_invalid(kOp, "buf is NULL or empty");
  int driver = 0, runtime = 0, nccl = 0;
  int cublas_major = 0, cublas_minor = 0, cublas_patch = 0;
  NM_CUDA_CHECK(kOp, cudaDriverGetVersion(&driver));
  NM_CUDA_CHECK(kOp, cudaRuntimeGetVersion(&runtime));
  NM_CUBLAS_CHECK(kOp, cublasGetProperty(MAJOR_VERSION, &cublas_major));
  NM_CUBLAS_CHECK(kOp, cublasGetProperty(MINOR_VERSION, &cublas_minor));
  NM_CUBLAS_CHECK(kOp, cublasGetProperty(PATCH_LEVEL, &cublas_patch));
  NM_NCCL_CHECK(kOp, ncclGetVersion(&nccl));
  char name[512];
  json_escape(be->name, name, sizeof name);
  int n = snprintf(buf, buf_len,
                   "{\"name\":\"%s\",\"index\":%d,\"computeCapability\":\"%d.%d\","
                   "\"totalMemory\":%llu,\"multiprocessors\":%d,"
                   "\"driverVersion\":\"%d.%d\",\"runtimeVersion\":\"%d.%d\","
                   "\"cublasVersion\":\"%d.%d.%d\",\"ncclVersion\":\"%d.%d.%d\"}",
                   name, be->device, be->cc_major, be->cc_minor,
                   (unsigned long long)be->total_memory, be->sm_count, driver / 1000,
                   (driver % 1000) / 10, runtime / 1000, (runtime % 1000) / 10, cublas_major,
                   cublas_minor, cublas_patch, nccl / 10000, (nccl % 10000) / 100, nccl % 100);
  if (n < 0 || (size_t)n >= buf_len) {
    return fail_invalid(kOp, "buffer of %zu bytes is too small (needs %d)", buf_len, n + 1);
  }
  return NM_OK;
}

}  // namespace nm_cuda
