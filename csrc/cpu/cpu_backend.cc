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

#include "../core/gemm_check.h"
#include "gemm.h"
#include "kernels.h"
#include "model_kernels_a.h"
#include "model_kernels_b.h"
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
  char problem[320];
  if (nm_gemm_args_invalid(&a, problem, sizeof problem)) {
    return fail(NM_ERR_INVALID, "gemm", problem);
  }
  if (a.m == 0 || a.n == 0 || a.batch == 0) return NM_OK;
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

// ---- GPT-2 model ops (embedding, RMSNorm, GELU, cross-entropy) -------------------------------

nm_status embedding_forward_op(nm_backend* be, void* out, const void* wte, const void* ids,
                               int64_t n, int64_t c) {
  static const char* const kOp = "embedding_forward";
  NM_REQUIRE(n >= 0 && c >= 0, kOp, "negative size");
  NM_REQUIRE(checked_product(n, c, 4) >= 0, kOp, "size overflows");
  if (n == 0 || c == 0) return NM_OK;
  NM_REQUIRE(out != nullptr && wte != nullptr && ids != nullptr, kOp, "null pointer");
  float* o = static_cast<float*>(out);
  const float* w = static_cast<const float*>(wte);
  const int32_t* id = static_cast<const int32_t*>(ids);
  be->queue.enqueue([=] { embedding_forward(o, w, id, n, c); });
  return NM_OK;
}

nm_status embedding_backward_op(nm_backend* be, void* dwte, const void* dout, const void* ids,
                                int64_t n, int64_t c, int64_t vocab) {
  static const char* const kOp = "embedding_backward";
  NM_REQUIRE(n >= 0 && c >= 0 && vocab >= 0, kOp, "negative size");
  NM_REQUIRE(checked_product(n, c, 4) >= 0 && checked_product(vocab, c, 4) >= 0 &&
                 vocab < INT64_MAX / 16 - n,
             kOp, "size overflows");
  if (n == 0 || c == 0) return NM_OK;  // nothing to add
  NM_REQUIRE(vocab >= 1, kOp, "vocab must be >= 1 when there are ids");
  NM_REQUIRE(dwte != nullptr && dout != nullptr && ids != nullptr, kOp, "null pointer");
  // Scratch for the counting sort, allocated here so running out of memory is reported.
  const size_t ws_bytes = embedding_backward_workspace_bytes(n, vocab);
  void* ws = std::malloc(ws_bytes);
  if (ws == nullptr) {
    return fail(NM_ERR_OUT_OF_MEMORY, kOp,
                "out of host memory allocating " + std::to_string(ws_bytes) + " bytes of scratch");
  }
  float* dw = static_cast<float*>(dwte);
  const float* g = static_cast<const float*>(dout);
  const int32_t* id = static_cast<const int32_t*>(ids);
  be->queue.enqueue([=] {
    embedding_backward(dw, g, id, n, c, vocab, ws);
    std::free(ws);
  });
  return NM_OK;
}

nm_status rmsnorm_forward_op(nm_backend* be, void* out, nm_dtype out_dtype, void* rstd,
                             const void* x, int64_t n, int64_t c, float eps) {
  static const char* const kOp = "rmsnorm_forward";
  NM_REQUIRE(is_float(out_dtype), kOp, "out_dtype must be f32 or bf16");
  NM_REQUIRE(n >= 0 && c >= 0, kOp, "negative size");
  NM_REQUIRE(checked_product(n, c, 4) >= 0, kOp, "size overflows");
  NM_REQUIRE(eps >= 0.0f && eps <= 3.4e38f, kOp, "eps must be finite and >= 0");
  if (n == 0) return NM_OK;
  NM_REQUIRE(c >= 1, kOp, "c must be >= 1 (the mean of an empty row is undefined)");
  NM_REQUIRE(out != nullptr && rstd != nullptr && x != nullptr, kOp, "null pointer");
  float* r = static_cast<float*>(rstd);
  const float* xi = static_cast<const float*>(x);
  be->queue.enqueue([=] { rmsnorm_forward(out, out_dtype, r, xi, n, c, eps); });
  return NM_OK;
}

nm_status rmsnorm_backward_op(nm_backend* be, void* dx, const void* dout, const void* x,
                              const void* rstd, int64_t n, int64_t c, int32_t accumulate) {
  static const char* const kOp = "rmsnorm_backward";
  NM_REQUIRE(n >= 0 && c >= 0, kOp, "negative size");
  NM_REQUIRE(checked_product(n, c, 4) >= 0, kOp, "size overflows");
  if (n == 0 || c == 0) return NM_OK;
  NM_REQUIRE(dx != nullptr && dout != nullptr && x != nullptr && rstd != nullptr, kOp,
             "null pointer");
  float* d = static_cast<float*>(dx);
  const float* g = static_cast<const float*>(dout);
  const float* xi = static_cast<const float*>(x);
  const float* r = static_cast<const float*>(rstd);
  const bool acc = accumulate != 0;
  be->queue.enqueue([=] { rmsnorm_backward(d, g, xi, r, n, c, acc); });
  return NM_OK;
}

nm_status gelu_forward_op(nm_backend* be, void* out, nm_dtype out_dtype, const void* x,
                          int64_t n) {
  static const char* const kOp = "gelu_forward";
  NM_REQUIRE(is_float(out_dtype), kOp, "out_dtype must be f32 or bf16");
  NM_REQUIRE(n >= 0, kOp, "negative element count");
  if (n == 0) return NM_OK;
  NM_REQUIRE(out != nullptr && x != nullptr, kOp, "null pointer");
  const float* xi = static_cast<const float*>(x);
  be->queue.enqueue([=] { gelu_forward(out, out_dtype, xi, n); });
  return NM_OK;
}

nm_status gelu_backward_op(nm_backend* be, void* dx, const void* dout, const void* x,
                           int64_t n) {
  static const char* const kOp = "gelu_backward";
  NM_REQUIRE(n >= 0, kOp, "negative element count");
  if (n == 0) return NM_OK;
  NM_REQUIRE(dx != nullptr && dout != nullptr && x != nullptr, kOp, "null pointer");
  float* d = static_cast<float*>(dx);
  const float* g = static_cast<const float*>(dout);
  const float* xi = static_cast<const float*>(x);
  be->queue.enqueue([=] { gelu_backward(d, g, xi, n); });
  return NM_OK;
}

// ---- GPT-2 model ops (rotary, attention) ------------------------------------------------------

// Elements of a [b, t, 3, heads, head_dim] qkv buffer, or -1 when that overflows (or exceeds
// what a byte count can hold). All four sizes >= 0.
int64_t qkv_elements(int64_t b, int64_t t, int64_t heads, int64_t head_dim) {
  const int64_t rows = checked_product(b, t, 1);
  const int64_t width = checked_product(3, heads, head_dim);
  if (rows < 0 || width < 0) return -1;
  const int64_t total = checked_product(rows, width, 1);
  return total >= 0 && total <= INT64_MAX / 8 ? total : -1;
}

nm_status rotary_op(nm_backend* be, void* qkv, int64_t b, int64_t t, int64_t heads,
                    int64_t head_dim, float base, int32_t inverse) {
  static const char* const kOp = "rotary";
  NM_REQUIRE(b >= 0 && t >= 0 && heads >= 0 && head_dim >= 0, kOp, "negative size");
  NM_REQUIRE(head_dim % 2 == 0, kOp, "head_dim must be even (the rotation pairs its two halves)");
  NM_REQUIRE(base > 0.0f && base <= 3.4e38f, kOp, "base must be finite and > 0");
  const int64_t total = qkv_elements(b, t, heads, head_dim);
  NM_REQUIRE(total >= 0, kOp, "size overflows");
  if (total == 0) return NM_OK;
  NM_REQUIRE(qkv != nullptr, kOp, "null pointer");
  float* x = static_cast<float*>(qkv);
  const bool inv = inverse != 0;
  be->queue.enqueue([=] { rotary(x, b, t, heads, head_dim, base, inv); });
  return NM_OK;
}

// Whether [a, a + a_bytes) and [b, b + b_bytes) share a byte.
bool spans_overlap(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  const uintptr_t x = reinterpret_cast<uintptr_t>(a);
  const uintptr_t y = reinterpret_cast<uintptr_t>(b);
  return a_bytes != 0 && b_bytes != 0 && x < y + b_bytes && y < x + a_bytes;
}

nm_status check_attention_args(const char* op, int64_t b, int64_t t, int64_t heads,
                               int64_t head_dim, float scale, int32_t algo, int64_t* total) {
  NM_REQUIRE(b >= 0 && t >= 0 && heads >= 0 && head_dim >= 0, op, "negative size");
  NM_REQUIRE(algo == NM_ATTN_AUTO || algo == NM_ATTN_NAIVE || algo == NM_ATTN_FLASH ||
                 algo == NM_ATTN_FLASH_BF16,
             op,
             "algo must be NM_ATTN_AUTO (0), NM_ATTN_NAIVE (1), NM_ATTN_FLASH (2) or "
             "NM_ATTN_FLASH_BF16 (3), got " +
                 std::to_string(algo));
  NM_REQUIRE(scale - scale == 0.0f, op, "scale must be finite");
  *total = qkv_elements(b, t, heads, head_dim);
  NM_REQUIRE(*total >= 0, op, "size overflows");
  return NM_OK;
}

nm_status attention_forward_op(nm_backend* be, void* out, void* lse, const void* qkv, int64_t b,
                               int64_t t, int64_t heads, int64_t head_dim, float scale,
                               int32_t algo) {
  static const char* const kOp = "attention_forward";
  int64_t total = 0;
  const nm_status st = check_attention_args(kOp, b, t, heads, head_dim, scale, algo, &total);
  if (st != NM_OK) return st;
  if (b == 0 || t == 0 || heads == 0) return NM_OK;  // nothing to write
  NM_REQUIRE(head_dim >= 1, kOp, "head_dim must be >= 1");
  NM_REQUIRE(out != nullptr && lse != nullptr && qkv != nullptr, kOp, "null pointer");
  const size_t qkv_bytes = static_cast<size_t>(total) * sizeof(float);
  const size_t out_bytes = qkv_bytes / 3;
  const size_t lse_bytes = static_cast<size_t>(b * heads * t) * sizeof(float);
  NM_REQUIRE(!spans_overlap(out, out_bytes, qkv, qkv_bytes) &&
                 !spans_overlap(lse, lse_bytes, qkv, qkv_bytes) &&
                 !spans_overlap(out, out_bytes, lse, lse_bytes),
             kOp, "out, lse and qkv may not overlap");
  float* o = static_cast<float*>(out);
  float* l = static_cast<float*>(lse);
  const float* x = static_cast<const float*>(qkv);
  // One f32 implementation serves auto, naive and flash; flash-bf16 has its own roundings.
  if (algo == NM_ATTN_FLASH_BF16) {
    be->queue.enqueue([=] { attention_forward_bf16(o, l, x, b, t, heads, head_dim, scale); });
  } else {
    be->queue.enqueue([=] { attention_forward(o, l, x, b, t, heads, head_dim, scale); });
  }
  return NM_OK;
}

nm_status attention_backward_op(nm_backend* be, void* dqkv, const void* dout, const void* qkv,
                                const void* out, const void* lse, int64_t b, int64_t t,
                                int64_t heads, int64_t head_dim, float scale, int32_t algo) {
  static const char* const kOp = "attention_backward";
  int64_t total = 0;
  const nm_status st = check_attention_args(kOp, b, t, heads, head_dim, scale, algo, &total);
  if (st != NM_OK) return st;
  if (total == 0) return NM_OK;  // dqkv is empty
  NM_REQUIRE(dqkv != nullptr && dout != nullptr && qkv != nullptr && out != nullptr &&
                 lse != nullptr,
             kOp, "null pointer");
  const size_t qkv_bytes = static_cast<size_t>(total) * sizeof(float);
  const size_t out_bytes = qkv_bytes / 3;
  const size_t lse_bytes = static_cast<size_t>(b * heads * t) * sizeof(float);
  NM_REQUIRE(!spans_overlap(dqkv, qkv_bytes, dout, out_bytes) &&
                 !spans_overlap(dqkv, qkv_bytes, qkv, qkv_bytes) &&
                 !spans_overlap(dqkv, qkv_bytes, out, out_bytes) &&
                 !spans_overlap(dqkv, qkv_bytes, lse, lse_bytes),
             kOp, "dqkv may not overlap dout, qkv, out or lse");
  float* d = static_cast<float*>(dqkv);
  const float* g = static_cast<const float*>(dout);
  const float* x = static_cast<const float*>(qkv);
  const float* o = static_cast<const float*>(out);
  const float* l = static_cast<const float*>(lse);
  if (algo == NM_ATTN_FLASH_BF16) {
    be->queue.enqueue(
        [=] { attention_backward_bf16(d, g, x, o, l, b, t, heads, head_dim, scale); });
  } else {
    be->queue.enqueue([=] { attention_backward(d, g, x, o, l, b, t, heads, head_dim, scale); });
  }
  return NM_OK;
}

nm_status cross_entropy_op(nm_backend* be, void* losses, void* logits, const void* targets,
                           int64_t n, int64_t vocab, float grad_scale) {
  static const char* const kOp = "cross_entropy";
  NM_REQUIRE(n >= 0 && vocab >= 0, kOp, "negative size");
  NM_REQUIRE(checked_product(n, vocab, 4) >= 0, kOp, "size overflows");
  NM_REQUIRE(grad_scale - grad_scale == 0.0f, kOp, "grad_scale must be finite");
  if (n == 0) return NM_OK;
  NM_REQUIRE(vocab >= 1, kOp, "vocab must be >= 1");
  NM_REQUIRE(losses != nullptr && logits != nullptr && targets != nullptr, kOp, "null pointer");
  float* l = static_cast<float*>(losses);
  float* z = static_cast<float*>(logits);
  const int32_t* t = static_cast<const int32_t*>(targets);
  be->queue.enqueue([=] { cross_entropy(l, z, t, n, vocab, grad_scale); });
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
    embedding_forward_op,
    embedding_backward_op,
    rmsnorm_forward_op,
    rmsnorm_backward_op,
    gelu_forward_op,
    gelu_backward_op,
    rotary_op,
    attention_forward_op,
    attention_backward_op,
    cross_entropy_op,
};

}  // namespace
}  // namespace nm::cpu

extern "C" const nm_backend_ops* nm_cpu_backend_ops(void) { return &nm::cpu::kCpuOps; }

extern "C" nm_status nm_cpu_enqueue_task(void* queue, void (*task)(void* arg), void* arg) {
  if (queue == nullptr || task == nullptr) return NM_ERR_INVALID;
  static_cast<nm_backend*>(queue)->queue.enqueue([task, arg] { task(arg); });
  return NM_OK;
}
