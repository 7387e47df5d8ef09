// The CPU backend: the nm_backend_ops table over the CPU kernels. Each op validates its
// arguments on the calling thread, then enqueues the kernel on the backend's WorkQueue.
#include "cpu_backend.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include "gemm.h"
#include "kernels.h"
#include "optim_kernels.h"
#include "thread_pool.h"
#include "work_queue.h"

struct nm_backend {
  nm::cpu::WorkQueue queue;
};

struct nm_fence {
  uint64_t ticket;
};

namespace nm::cpu {
namespace {

thread_local std::string last_error_message;

nm_status fail(nm_status code, const char* op, const std::string& what) {
  last_error_message = std::string(op) + ": " + what;
  return code;
}

bool is_float(nm_dtype d) { return d == NM_F32 || d == NM_BF16; }
bool is_known(nm_dtype d) { return nm_dtype_size(d) != 0; }

#define NM_REQUIRE(cond, op, what) \
  do {                             \
    if (!(cond)) return fail(NM_ERR_INVALID, op, what); \
  } while (0)

nm_backend* create(int device_index, char* err, size_t err_len) {
  if (device_index != 0) {
    std::snprintf(err, err_len, "the CPU backend has one device (index 0), got %d", device_index);
    return nullptr;
  }
  return new nm_backend();
}

void destroy(nm_backend* be) { delete be; }

const char* last_error() { return last_error_message.c_str(); }

nm_status describe(nm_backend*, char* buf, size_t len) {
  std::snprintf(buf, len, "{\"name\":\"cpu\",\"threads\":%d,\"gemmKernel\":\"%s\"}",
                compute_pool().size(), gemm_kernel_name());
  return NM_OK;
}

nm_status alloc(nm_backend*, size_t bytes, void** out) {
  NM_REQUIRE(out != nullptr, "alloc", "out is null");
  const size_t rounded = ((bytes == 0 ? 1 : bytes) + 255) / 256 * 256;
  void* p = std::aligned_alloc(256, rounded);
  if (p == nullptr) {
    return fail(NM_ERR_OUT_OF_MEMORY, "alloc", "out of host memory allocating " +
                                                    std::to_string(bytes) + " bytes");
  }
  *out = p;
  return NM_OK;
}

nm_status free_memory(nm_backend* be, void* ptr) {
  if (ptr == nullptr) return NM_OK;
  be->queue.enqueue([ptr] { std::free(ptr); });
  return NM_OK;
}

nm_status host_alloc(nm_backend* be, size_t bytes, void** out) { return alloc(be, bytes, out); }

nm_status host_free(nm_backend*, void* ptr) {
  std::free(ptr);
  return NM_OK;
}

nm_status upload(nm_backend* be, void* dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return NM_OK;
  NM_REQUIRE(dst != nullptr && host_src != nullptr, "upload", "null pointer");
  // Snapshot now: the caller may reuse host_src as soon as we return.
  void* staging = std::malloc(bytes);
  if (staging == nullptr) return fail(NM_ERR_OUT_OF_MEMORY, "upload", "out of host memory");
  std::memcpy(staging, host_src, bytes);
  be->queue.enqueue([=] {
    std::memcpy(dst, staging, bytes);
    std::free(staging);
  });
  return NM_OK;
}

nm_status download(nm_backend* be, void* host_dst, const void* src, size_t bytes) {
  if (bytes == 0) return NM_OK;
  NM_REQUIRE(host_dst != nullptr && src != nullptr, "download", "null pointer");
  be->queue.enqueue([=] { std::memcpy(host_dst, src, bytes); });
  return NM_OK;
}

nm_status copy(nm_backend* be, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return NM_OK;
  NM_REQUIRE(dst != nullptr && src != nullptr, "copy", "null pointer");
  be->queue.enqueue([=] { std::memmove(dst, src, bytes); });
  return NM_OK;
}

nm_status copy_rows_op(nm_backend* be, void* dst, int64_t dst_stride, const void* src,
                       int64_t src_stride, int64_t rows, int64_t row_bytes) {
  NM_REQUIRE(rows >= 0 && row_bytes >= 0, "copy_rows", "negative size");
  if (rows == 0 || row_bytes == 0) return NM_OK;
  NM_REQUIRE(dst != nullptr && src != nullptr, "copy_rows", "null pointer");
  NM_REQUIRE(dst_stride >= row_bytes && src_stride >= row_bytes, "copy_rows",
             "row stride smaller than the row");
  be->queue.enqueue([=] { copy_rows(dst, dst_stride, src, src_stride, rows, row_bytes); });
  return NM_OK;
}

nm_status fill_op(nm_backend* be, void* dst, nm_dtype dtype, int64_t n, double value) {
  NM_REQUIRE(is_known(dtype), "fill", "unknown dtype");
  NM_REQUIRE(n >= 0, "fill", "negative element count");
  if (n == 0) return NM_OK;
  NM_REQUIRE(dst != nullptr, "fill", "null pointer");
  be->queue.enqueue([=] { fill(dst, dtype, n, value); });
  return NM_OK;
}

nm_status cast_op(nm_backend* be, void* dst, nm_dtype dst_dtype, const void* src,
                  nm_dtype src_dtype, int64_t n) {
  NM_REQUIRE(cast_supported(dst_dtype, src_dtype), "cast", "unsupported dtype pair");
  NM_REQUIRE(n >= 0, "cast", "negative element count");
  if (n == 0) return NM_OK;
  NM_REQUIRE(dst != nullptr && src != nullptr, "cast", "null pointer");
  be->queue.enqueue([=] { cast(dst, dst_dtype, src, src_dtype, n); });
  return NM_OK;
}

nm_status binary_op(nm_backend* be, nm_binary_op op, void* out, const void* a, const void* b,
                    nm_dtype dtype, int64_t n) {
  NM_REQUIRE(op == NM_ADD || op == NM_SUB || op == NM_MUL, "binary", "unknown op");
  NM_REQUIRE(is_float(dtype), "binary", "dtype must be f32 or bf16");
  NM_REQUIRE(n >= 0, "binary", "negative element count");
  if (n == 0) return NM_OK;
  NM_REQUIRE(out != nullptr && a != nullptr && b != nullptr, "binary", "null pointer");
  be->queue.enqueue([=] { binary(op, out, a, b, dtype, n); });
  return NM_OK;
}

nm_status scale_op(nm_backend* be, void* out, const void* x, float alpha, nm_dtype dtype,
                   int64_t n) {
  NM_REQUIRE(is_float(dtype), "scale", "dtype must be f32 or bf16");
  NM_REQUIRE(n >= 0, "scale", "negative element count");
  if (n == 0) return NM_OK;
  NM_REQUIRE(out != nullptr && x != nullptr, "scale", "null pointer");
  be->queue.enqueue([=] { scale(out, x, alpha, dtype, n); });
  return NM_OK;
}

nm_status axpy_op(nm_backend* be, void* y, const void* x, float alpha, nm_dtype dtype,
                  int64_t n) {
  NM_REQUIRE(is_float(dtype), "axpy", "dtype must be f32 or bf16");
  NM_REQUIRE(n >= 0, "axpy", "negative element count");
  if (n == 0) return NM_OK;
  NM_REQUIRE(y != nullptr && x != nullptr, "axpy", "null pointer");
  be->queue.enqueue([=] { axpy(y, x, alpha, dtype, n); });
  return NM_OK;
}

nm_status reduce_op(nm_backend* be, const char* name, bool squares, void* out, const void* x,
                    nm_dtype dtype, int64_t n) {
  NM_REQUIRE(is_float(dtype), name, "dtype must be f32 or bf16");
  NM_REQUIRE(n >= 0, name, "negative element count");
  NM_REQUIRE(out != nullptr && (n == 0 || x != nullptr), name, "null pointer");
  be->queue.enqueue([=] { *static_cast<float*>(out) = sum(x, dtype, n, squares); });
  return NM_OK;
}

nm_status sum_op(nm_backend* be, void* out, const void* x, nm_dtype dtype, int64_t n) {
  return reduce_op(be, "sum", false, out, x, dtype, n);
}

nm_status sum_squares_op(nm_backend* be, void* out, const void* x, nm_dtype dtype, int64_t n) {
  return reduce_op(be, "sum_squares", true, out, x, dtype, n);
}

nm_status gemm_op(nm_backend* be, const nm_gemm_args* args) {
  NM_REQUIRE(args != nullptr, "gemm", "args is null");
  const nm_gemm_args a = *args;  // copied: the caller's struct may not outlive this call
  NM_REQUIRE(is_float(a.ab_dtype) && is_float(a.c_dtype), "gemm", "dtypes must be f32 or bf16");
  NM_REQUIRE(a.m >= 0 && a.n >= 0 && a.k >= 0 && a.batch >= 1, "gemm", "bad sizes");
  if (a.m == 0 || a.n == 0) return NM_OK;
  NM_REQUIRE(a.c != nullptr && (a.k == 0 || (a.a != nullptr && a.b != nullptr)), "gemm",
             "null pointer");
  NM_REQUIRE(a.ldc >= a.n && a.lda >= (a.trans_a ? a.m : a.k) && a.ldb >= (a.trans_b ? a.k : a.n),
             "gemm", "leading dimension smaller than the row width");
  be->queue.enqueue([a] { gemm(a); });
  return NM_OK;
}

nm_status fence_create(nm_backend* be, nm_fence** out) {
  NM_REQUIRE(out != nullptr, "fence_create", "out is null");
  *out = new nm_fence{be->queue.last_ticket()};
  return NM_OK;
}

nm_status fence_wait(nm_backend* be, nm_fence* fence) {
  NM_REQUIRE(fence != nullptr, "fence_wait", "fence is null");
  be->queue.wait_for(fence->ticket);
  return NM_OK;
}

void fence_destroy(nm_backend*, nm_fence* fence) { delete fence; }

// ---- optimizer ops ---------------------------------------------------------------------------

// count = a * b * c, or -1 when it would overflow int64 (all three >= 0).
int64_t checked_product(int64_t a, int64_t b, int64_t c) {
  if (a == 0 || b == 0 || c == 0) return 0;
  if (a > INT64_MAX / b) return -1;
  const int64_t ab = a * b;
  if (ab > INT64_MAX / c) return -1;
  return ab * c;
}

bool ranges_overlap(const void* a, const void* b, size_t bytes) {
  const uintptr_t x = reinterpret_cast<uintptr_t>(a);
  const uintptr_t y = reinterpret_cast<uintptr_t>(b);
  return x < y + bytes && y < x + bytes;
}

nm_status newton_schulz_op(nm_backend* be, void* out, const void* x, int64_t batch, int64_t rows,
                           int64_t cols, int32_t steps, float coef_a, float coef_b, float coef_c,
                           float eps) {
  static const char* const kOp = "newton_schulz";
  NM_REQUIRE(batch >= 0 && rows >= 0 && cols >= 0, kOp, "negative size");
  NM_REQUIRE(steps >= 0, kOp, "negative step count");
  const int64_t total = checked_product(batch, rows, cols);
  NM_REQUIRE(total >= 0 && total <= INT64_MAX / 8, kOp, "size overflows");
  if (total == 0) return NM_OK;
  NM_REQUIRE(out != nullptr && x != nullptr, kOp, "null pointer");
  NM_REQUIRE(!ranges_overlap(out, x, static_cast<size_t>(total) * sizeof(float)), kOp,
             "out may not alias x");
  // Scratch is allocated here so that running out of memory is reported to the caller.
  const size_t ws_bytes = newton_schulz_workspace_bytes(batch, rows, cols);
  void* ws = std::malloc(ws_bytes);
  if (ws == nullptr) {
    return fail(NM_ERR_OUT_OF_MEMORY, kOp,
                "out of host memory allocating " + std::to_string(ws_bytes) + " bytes of scratch");
  }
  float* o = static_cast<float*>(out);
  const float* in = static_cast<const float*>(x);
  be->queue.enqueue([=] {
    newton_schulz(o, in, batch, rows, cols, steps, coef_a, coef_b, coef_c, eps, ws);
    std::free(ws);
  });
  return NM_OK;
}

nm_status cholesky_inverse_op(nm_backend* be, void* kinv, const void* k, void* info, int64_t batch,
                              int64_t d, float ridge_mult, float ridge_eps) {
  static const char* const kOp = "cholesky_inverse";
  NM_REQUIRE(batch >= 0, kOp, "negative batch");
  NM_REQUIRE(d >= 1, kOp, "d must be >= 1");
  NM_REQUIRE(d <= (int64_t{1} << 20) && checked_product(batch, d, d) >= 0, kOp, "size too large");
  if (batch == 0) return NM_OK;
  NM_REQUIRE(kinv != nullptr && k != nullptr && info != nullptr, kOp, "null pointer");
  const size_t ws_bytes = cholesky_inverse_workspace_bytes(batch, d);
  void* ws = std::malloc(ws_bytes);
  if (ws == nullptr) {
    return fail(NM_ERR_OUT_OF_MEMORY, kOp,
                "out of host memory allocating " + std::to_string(ws_bytes) + " bytes of scratch");
  }
  float* out = static_cast<float*>(kinv);
  const float* in = static_cast<const float*>(k);
  int32_t* status = static_cast<int32_t*>(info);
  be->queue.enqueue([=] {
    cholesky_inverse(out, in, status, batch, d, ridge_mult, ridge_eps, ws);
    std::free(ws);
  });
  return NM_OK;
}

nm_status momentum_update_op(nm_backend* be, void* buf, void* u, const void* g, int64_t n,
                             float momentum, int32_t nesterov) {
  static const char* const kOp = "momentum_update";
  NM_REQUIRE(n >= 0, kOp, "negative element count");
  if (n == 0) return NM_OK;
  NM_REQUIRE(buf != nullptr && u != nullptr && g != nullptr, kOp, "null pointer");
  float* b = static_cast<float*>(buf);
  float* uo = static_cast<float*>(u);
  const float* gi = static_cast<const float*>(g);
  const bool nest = nesterov != 0;
  be->queue.enqueue([=] { momentum_update(b, uo, gi, n, momentum, nest); });
  return NM_OK;
}

nm_status apply_update_op(nm_backend* be, void* w, const void* u, int64_t n, float decay,
                          float step) {
  static const char* const kOp = "apply_update";
  NM_REQUIRE(n >= 0, kOp, "negative element count");
  if (n == 0) return NM_OK;
  NM_REQUIRE(w != nullptr && u != nullptr, kOp, "null pointer");
  float* wo = static_cast<float*>(w);
  const float* ui = static_cast<const float*>(u);
  be->queue.enqueue([=] { apply_update(wo, ui, n, decay, step); });
  return NM_OK;
}

nm_status adamw_update_op(nm_backend* be, void* w, const void* g, void* m, void* v, int64_t n,
                          const nm_adamw_scalars* scalars) {
  static const char* const kOp = "adamw_update";
  NM_REQUIRE(n >= 0, kOp, "negative element count");
  NM_REQUIRE(scalars != nullptr, kOp, "scalars is null");
  const nm_adamw_scalars s = *scalars;  // copied: the caller's struct may not outlive this call
  // sqrt_bias2 = sqrt(1 - beta2^t) is in (0, 1] for every step t >= 1.
  NM_REQUIRE(s.sqrt_bias2 > 0.0f, kOp, "sqrt_bias2 must be > 0 (sqrt(1 - beta2^t), t >= 1)");
  if (n == 0) return NM_OK;
  NM_REQUIRE(w != nullptr && g != nullptr && m != nullptr && v != nullptr, kOp, "null pointer");
  float* wo = static_cast<float*>(w);
  const float* gi = static_cast<const float*>(g);
  float* mo = static_cast<float*>(m);
  float* vo = static_cast<float*>(v);
  be->queue.enqueue([=] {
    adamw_update(wo, gi, mo, vo, n, s);
  });
  return NM_OK;
}

const nm_backend_ops kCpuOps = {
    NM_BACKEND_ABI_VERSION,
    "cpu",
    create,
    destroy,
    last_error,
    describe,
    alloc,
    free_memory,
    host_alloc,
    host_free,
    upload,
    download,
    copy,
    copy_rows_op,
    fill_op,
    cast_op,
    binary_op,
    scale_op,
    axpy_op,
    sum_op,
    sum_squares_op,
    gemm_op,
    fence_create,
    fence_wait,
    fence_destroy,
    newton_schulz_op,
    cholesky_inverse_op,
    momentum_update_op,
    apply_update_op,
    adamw_update_op,
};

}  // namespace
}  // namespace nm::cpu

extern "C" const nm_backend_ops* nm_cpu_backend_ops(void) { return &nm::cpu::kCpuOps; }
