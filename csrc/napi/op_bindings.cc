// Bindings for the synchronous-to-enqueue ops: each reads its arguments, bounds-checks every
// buffer range, then makes one backend call. All operands must live on one device.
#include "op_bindings.h"

#include <string>

#include "args.h"
#include "buffer_handle.h"

namespace nm::napi {
namespace {

// The device every operand shares; a mix is a caller error caught here as a last resort.
DeviceSlot& same_device(Napi::Env env, const char* op, std::initializer_list<BufferHandle*> bufs) {
  DeviceSlot* device = (*bufs.begin())->device;
  for (BufferHandle* b : bufs) {
    if (b->device != device) {
      throw Napi::Error::New(env, std::string(op) + ": operands are on different devices (" +
                                      device->name + " and " + b->device->name + ")");
    }
  }
  return *device;
}

Napi::Value Alloc(const Napi::CallbackInfo& info) {
  DeviceSlot& device = device_arg(info, 0, "alloc");
  return make_buffer(info.Env(), device, int_arg(info, 1, "alloc", "bytes"));
}

Napi::Value Free(const Napi::CallbackInfo& info) {
  release_buffer(buffer_arg(info[0], "free"));
  return info.Env().Undefined();
}

Napi::Value Upload(const Napi::CallbackInfo& info) {
  BufferHandle& dst = buffer_arg(info[0], "upload: dst");
  const int64_t offset = int_arg(info, 1, "upload", "byteOffset");
  if (!info[2].IsTypedArray()) throw Napi::TypeError::New(info.Env(), "upload: data must be a typed array");
  auto data = info[2].As<Napi::TypedArray>();
  const int64_t bytes = static_cast<int64_t>(data.ByteLength());
  void* d = buffer_range(dst, offset, bytes, "upload");
  const char* src = static_cast<const char*>(data.ArrayBuffer().Data()) + data.ByteOffset();
  check_status(info.Env(), *dst.device, dst.device->ops->upload(dst.device->backend, d, src, bytes));
  return info.Env().Undefined();
}

Napi::Value Copy(const Napi::CallbackInfo& info) {
  BufferHandle& dst = buffer_arg(info[0], "copy: dst");
  BufferHandle& src = buffer_arg(info[2], "copy: src");
  const int64_t bytes = int_arg(info, 4, "copy", "bytes");
  DeviceSlot& device = same_device(info.Env(), "copy", {&dst, &src});
  void* d = buffer_range(dst, int_arg(info, 1, "copy", "dstOffset"), bytes, "copy: dst");
  void* s = buffer_range(src, int_arg(info, 3, "copy", "srcOffset"), bytes, "copy: src");
  check_status(info.Env(), device, device.ops->copy(device.backend, d, s, bytes));
  return info.Env().Undefined();
}

// copyRows(dst, dstOffset, dstStride, src, srcOffset, srcStride, rows, rowBytes)
Napi::Value CopyRows(const Napi::CallbackInfo& info) {
  const char* op = "copyRows";
  BufferHandle& dst = buffer_arg(info[0], "copyRows: dst");
  BufferHandle& src = buffer_arg(info[3], "copyRows: src");
  DeviceSlot& device = same_device(info.Env(), op, {&dst, &src});
  const int64_t dst_stride = int_arg(info, 2, op, "dstStride");
  const int64_t src_stride = int_arg(info, 5, op, "srcStride");
  const int64_t rows = int_arg(info, 6, op, "rows");
  const int64_t row_bytes = int_arg(info, 7, op, "rowBytes");
  if (rows < 0 || row_bytes < 0 || dst_stride < row_bytes || src_stride < row_bytes) {
    throw Napi::RangeError::New(info.Env(), "copyRows: need rows >= 0 and strides >= rowBytes >= 0");
  }
  const int64_t dst_extent = rows == 0 ? 0 : (rows - 1) * dst_stride + row_bytes;
  const int64_t src_extent = rows == 0 ? 0 : (rows - 1) * src_stride + row_bytes;
  void* d = buffer_range(dst, int_arg(info, 1, op, "dstOffset"), dst_extent, "copyRows: dst");
  void* s = buffer_range(src, int_arg(info, 4, op, "srcOffset"), src_extent, "copyRows: src");
  check_status(info.Env(), device,
               device.ops->copy_rows(device.backend, d, dst_stride, s, src_stride, rows, row_bytes));
  return info.Env().Undefined();
}

// fill(dst, offset, dtype, n, value)
Napi::Value Fill(const Napi::CallbackInfo& info) {
  BufferHandle& dst = buffer_arg(info[0], "fill: dst");
  const nm_dtype dtype = dtype_arg(info, 2, "fill");
  const int64_t n = int_arg(info, 3, "fill", "n");
  void* d = buffer_range(dst, int_arg(info, 1, "fill", "offset"), n * nm_dtype_size(dtype), "fill");
  check_status(info.Env(), *dst.device,
               dst.device->ops->fill(dst.device->backend, d, dtype, n, number_arg(info, 4, "fill", "value")));
  return info.Env().Undefined();
}

// cast(dst, dstOffset, dstDtype, src, srcOffset, srcDtype, n)
Napi::Value Cast(const Napi::CallbackInfo& info) {
  BufferHandle& dst = buffer_arg(info[0], "cast: dst");
  BufferHandle& src = buffer_arg(info[3], "cast: src");
  DeviceSlot& device = same_device(info.Env(), "cast", {&dst, &src});
  const nm_dtype dst_dtype = dtype_arg(info, 2, "cast");
  const nm_dtype src_dtype = dtype_arg(info, 5, "cast");
  const int64_t n = int_arg(info, 6, "cast", "n");
  void* d = buffer_range(dst, int_arg(info, 1, "cast", "dstOffset"), n * nm_dtype_size(dst_dtype), "cast: dst");
  void* s = buffer_range(src, int_arg(info, 4, "cast", "srcOffset"), n * nm_dtype_size(src_dtype), "cast: src");
  check_status(info.Env(), device, device.ops->cast(device.backend, d, dst_dtype, s, src_dtype, n));
  return info.Env().Undefined();
}

// binary(op, out, outOffset, a, aOffset, b, bOffset, dtype, n)
Napi::Value Binary(const Napi::CallbackInfo& info) {
  const int64_t op_code = int_arg(info, 0, "binary", "op");
  if (op_code < NM_ADD || op_code > NM_MUL) throw Napi::TypeError::New(info.Env(), "binary: unknown op");
  BufferHandle& out = buffer_arg(info[1], "binary: out");
  BufferHandle& a = buffer_arg(info[3], "binary: a");
  BufferHandle& b = buffer_arg(info[5], "binary: b");
  DeviceSlot& device = same_device(info.Env(), "binary", {&out, &a, &b});
  const nm_dtype dtype = dtype_arg(info, 7, "binary");
  const int64_t n = int_arg(info, 8, "binary", "n");
  const int64_t bytes = n * nm_dtype_size(dtype);
  void* o = buffer_range(out, int_arg(info, 2, "binary", "outOffset"), bytes, "binary: out");
  void* pa = buffer_range(a, int_arg(info, 4, "binary", "aOffset"), bytes, "binary: a");
  void* pb = buffer_range(b, int_arg(info, 6, "binary", "bOffset"), bytes, "binary: b");
  check_status(info.Env(), device,
               device.ops->binary(device.backend, static_cast<nm_binary_op>(op_code), o, pa, pb, dtype, n));
  return info.Env().Undefined();
}

// scale(out, outOffset, x, xOffset, alpha, dtype, n) and axpy(y, yOffset, x, xOffset, alpha, dtype, n)
Napi::Value ScaleOrAxpy(const Napi::CallbackInfo& info, bool is_axpy) {
  const char* op = is_axpy ? "axpy" : "scale";
  BufferHandle& y = buffer_arg(info[0], op);
  BufferHandle& x = buffer_arg(info[2], op);
  DeviceSlot& device = same_device(info.Env(), op, {&y, &x});
  const float alpha = static_cast<float>(number_arg(info, 4, op, "alpha"));
  const nm_dtype dtype = dtype_arg(info, 5, op);
  const int64_t n = int_arg(info, 6, op, "n");
  const int64_t bytes = n * nm_dtype_size(dtype);
  void* py = buffer_range(y, int_arg(info, 1, op, "outOffset"), bytes, op);
  void* px = buffer_range(x, int_arg(info, 3, op, "xOffset"), bytes, op);
  check_status(info.Env(), device,
               is_axpy ? device.ops->axpy(device.backend, py, px, alpha, dtype, n)
                       : device.ops->scale(device.backend, py, px, alpha, dtype, n));
  return info.Env().Undefined();
}

Napi::Value Scale(const Napi::CallbackInfo& info) { return ScaleOrAxpy(info, false); }
Napi::Value Axpy(const Napi::CallbackInfo& info) { return ScaleOrAxpy(info, true); }

// reduce(out, outOffset, x, xOffset, dtype, n, squares)
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  const char* op = "reduce";
  BufferHandle& out = buffer_arg(info[0], "reduce: out");
  BufferHandle& x = buffer_arg(info[2], "reduce: x");
  DeviceSlot& device = same_device(info.Env(), op, {&out, &x});
  const nm_dtype dtype = dtype_arg(info, 4, op);
  const int64_t n = int_arg(info, 5, op, "n");
  const bool squares = info[6].ToBoolean().Value();
  void* po = buffer_range(out, int_arg(info, 1, op, "outOffset"), 4, "reduce: out");
  void* px = buffer_range(x, int_arg(info, 3, op, "xOffset"), n * nm_dtype_size(dtype), "reduce: x");
  check_status(info.Env(), device,
               squares ? device.ops->sum_squares(device.backend, po, px, dtype, n)
                       : device.ops->sum(device.backend, po, px, dtype, n));
  return info.Env().Undefined();
}

int64_t field_int(const Napi::Object& o, const char* name) {
  const Napi::Value v = o.Get(name);
  if (!v.IsNumber()) throw Napi::TypeError::New(o.Env(), std::string("gemm: ") + name + " must be a number");
  return v.As<Napi::Number>().Int64Value();
}

// Bytes spanned by `batch` row-major matrices of rows x cols with leading dim ld and stride.
int64_t matrix_extent(int64_t rows, int64_t cols, int64_t ld, int64_t stride, int64_t batch, size_t elem) {
  if (rows == 0 || cols == 0) return 0;
  return ((batch - 1) * stride + (rows - 1) * ld + cols) * static_cast<int64_t>(elem);
}

// gemm({a, aOffset, b, bOffset, c, cOffset, transA, transB, m, n, k, alpha, beta, lda, ldb, ldc,
//       strideA, strideB, strideC, batch, abDtype, cDtype}); offsets in bytes.
Napi::Value Gemm(const Napi::CallbackInfo& info) {
  if (!info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "gemm: expected an argument object");
  const Napi::Object o = info[0].As<Napi::Object>();
  BufferHandle& a = buffer_arg(o.Get("a"), "gemm: a");
  BufferHandle& b = buffer_arg(o.Get("b"), "gemm: b");
  BufferHandle& c = buffer_arg(o.Get("c"), "gemm: c");
  DeviceSlot& device = same_device(info.Env(), "gemm", {&a, &b, &c});
  nm_gemm_args g{};
  g.trans_a = o.Get("transA").ToBoolean().Value() ? 1 : 0;
  g.trans_b = o.Get("transB").ToBoolean().Value() ? 1 : 0;
  g.m = field_int(o, "m");
  g.n = field_int(o, "n");
  g.k = field_int(o, "k");
  g.alpha = o.Get("alpha").ToNumber().FloatValue();
  g.beta = o.Get("beta").ToNumber().FloatValue();
  g.lda = field_int(o, "lda");
  g.ldb = field_int(o, "ldb");
  g.ldc = field_int(o, "ldc");
  g.stride_a = field_int(o, "strideA");
  g.stride_b = field_int(o, "strideB");
  g.stride_c = field_int(o, "strideC");
  g.batch = field_int(o, "batch");
  const int64_t ab = field_int(o, "abDtype");
  const int64_t cd = field_int(o, "cDtype");
  if ((ab != NM_F32 && ab != NM_BF16) || (cd != NM_F32 && cd != NM_BF16)) {
    throw Napi::TypeError::New(info.Env(), "gemm: dtypes must be f32 or bf16");
  }
  g.ab_dtype = static_cast<nm_dtype>(ab);
  g.c_dtype = static_cast<nm_dtype>(cd);
  if (g.m < 0 || g.n < 0 || g.k < 0 || g.batch < 1) {
    throw Napi::RangeError::New(info.Env(), "gemm: need m, n, k >= 0 and batch >= 1");
  }
  const size_t ab_size = nm_dtype_size(g.ab_dtype);
  const int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
  const int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
  g.a = buffer_range(a, field_int(o, "aOffset"), matrix_extent(a_rows, a_cols, g.lda, g.stride_a, g.batch, ab_size), "gemm: a");
  g.b = buffer_range(b, field_int(o, "bOffset"), matrix_extent(b_rows, b_cols, g.ldb, g.stride_b, g.batch, ab_size), "gemm: b");
  g.c = buffer_range(c, field_int(o, "cOffset"),
                     matrix_extent(g.m, g.n, g.ldc, g.stride_c, g.batch, nm_dtype_size(g.c_dtype)), "gemm: c");
  check_status(info.Env(), device, device.ops->gemm(device.backend, &g));
  return info.Env().Undefined();
}

}  // namespace

void register_op_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("alloc", Napi::Function::New(env, Alloc, "alloc"));
  exports.Set("free", Napi::Function::New(env, Free, "free"));
  exports.Set("upload", Napi::Function::New(env, Upload, "upload"));
  exports.Set("copy", Napi::Function::New(env, Copy, "copy"));
  exports.Set("copyRows", Napi::Function::New(env, CopyRows, "copyRows"));
  exports.Set("fill", Napi::Function::New(env, Fill, "fill"));
  exports.Set("cast", Napi::Function::New(env, Cast, "cast"));
  exports.Set("binary", Napi::Function::New(env, Binary, "binary"));
  exports.Set("scale", Napi::Function::New(env, Scale, "scale"));
  exports.Set("axpy", Napi::Function::New(env, Axpy, "axpy"));
  exports.Set("reduce", Napi::Function::New(env, Reduce, "reduce"));
  exports.Set("gemm", Napi::Function::New(env, Gemm, "gemm"));
}

}  // namespace nm::napi
