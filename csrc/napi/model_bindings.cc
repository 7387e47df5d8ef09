// Bindings for the GPT-2 model ops (embedding, RMSNorm, GELU, rotary, attention, cross-entropy).
// Same contract as op_bindings.cc: byte offsets, bounds-checked ranges, one device per call.
#include "model_bindings.h"

#include <string>

#include "args.h"
#include "buffer_handle.h"

namespace nm::napi {
namespace {

nm_dtype float_dtype_arg(const Napi::CallbackInfo& info, size_t i, const char* op) {
  const nm_dtype d = dtype_arg(info, i, op);
  if (d != NM_F32 && d != NM_BF16) throw Napi::TypeError::New(info.Env(), std::string(op) + ": out dtype must be f32 or bf16");
  return d;
}

std::string name(const char* op, const char* arg) { return std::string(op) + ": " + arg; }

// embeddingForward(out, outOff, wte, wteOff, ids, idsOff, n, c, vocab)
Napi::Value EmbeddingForward(const Napi::CallbackInfo& info) {
  const char* op = "embeddingForward";
  const int64_t n = int_arg(info, 6, op, "n"), c = int_arg(info, 7, op, "c"), vocab = int_arg(info, 8, op, "vocab");
  Operand out = operand_arg(info, 0, n * c * 4, name(op, "out"));
  Operand wte = operand_arg(info, 2, vocab * c * 4, name(op, "wte"));
  Operand ids = operand_arg(info, 4, n * 4, name(op, "ids"));
  DeviceSlot& d = common_device(info.Env(), op, {out, wte, ids});
  check_status(info.Env(), d, d.ops->embedding_forward(d.backend, out.ptr, wte.ptr, ids.ptr, n, c));
  return info.Env().Undefined();
}

// embeddingBackward(dwte, dwteOff, dout, doutOff, ids, idsOff, n, c, vocab)
Napi::Value EmbeddingBackward(const Napi::CallbackInfo& info) {
  const char* op = "embeddingBackward";
  const int64_t n = int_arg(info, 6, op, "n"), c = int_arg(info, 7, op, "c"), vocab = int_arg(info, 8, op, "vocab");
  Operand dwte = operand_arg(info, 0, vocab * c * 4, name(op, "dwte"));
  Operand dout = operand_arg(info, 2, n * c * 4, name(op, "dout"));
  Operand ids = operand_arg(info, 4, n * 4, name(op, "ids"));
  DeviceSlot& d = common_device(info.Env(), op, {dwte, dout, ids});
  check_status(info.Env(), d, d.ops->embedding_backward(d.backend, dwte.ptr, dout.ptr, ids.ptr, n, c, vocab));
  return info.Env().Undefined();
}

// rmsnormForward(out, outOff, outDtype, rstd, rstdOff, x, xOff, n, c, eps)
Napi::Value RmsnormForward(const Napi::CallbackInfo& info) {
  const char* op = "rmsnormForward";
  const nm_dtype out_dtype = float_dtype_arg(info, 2, op);
  const int64_t n = int_arg(info, 7, op, "n"), c = int_arg(info, 8, op, "c");
  Operand out = operand_arg(info, 0, n * c * nm_dtype_size(out_dtype), name(op, "out"));
  Operand rstd = operand_arg(info, 3, n * 4, name(op, "rstd"));
  Operand x = operand_arg(info, 5, n * c * 4, name(op, "x"));
  DeviceSlot& d = common_device(info.Env(), op, {out, rstd, x});
  check_status(info.Env(), d, d.ops->rmsnorm_forward(d.backend, out.ptr, out_dtype, rstd.ptr, x.ptr, n, c,
                                                     static_cast<float>(number_arg(info, 9, op, "eps"))));
  return info.Env().Undefined();
}

// rmsnormBackward(dx, dxOff, dout, doutOff, x, xOff, rstd, rstdOff, n, c, accumulate)
Napi::Value RmsnormBackward(const Napi::CallbackInfo& info) {
  const char* op = "rmsnormBackward";
  const int64_t n = int_arg(info, 8, op, "n"), c = int_arg(info, 9, op, "c");
  Operand dx = operand_arg(info, 0, n * c * 4, name(op, "dx"));
  Operand dout = operand_arg(info, 2, n * c * 4, name(op, "dout"));
  Operand x = operand_arg(info, 4, n * c * 4, name(op, "x"));
  Operand rstd = operand_arg(info, 6, n * 4, name(op, "rstd"));
  DeviceSlot& d = common_device(info.Env(), op, {dx, dout, x, rstd});
  check_status(info.Env(), d, d.ops->rmsnorm_backward(d.backend, dx.ptr, dout.ptr, x.ptr, rstd.ptr, n, c,
                                                      info[10].ToBoolean().Value() ? 1 : 0));
  return info.Env().Undefined();
}

// geluForward(out, outOff, outDtype, x, xOff, n)
Napi::Value GeluForward(const Napi::CallbackInfo& info) {
  const char* op = "geluForward";
  const nm_dtype out_dtype = float_dtype_arg(info, 2, op);
  const int64_t n = int_arg(info, 5, op, "n");
  Operand out = operand_arg(info, 0, n * nm_dtype_size(out_dtype), name(op, "out"));
  Operand x = operand_arg(info, 3, n * 4, name(op, "x"));
  DeviceSlot& d = common_device(info.Env(), op, {out, x});
  check_status(info.Env(), d, d.ops->gelu_forward(d.backend, out.ptr, out_dtype, x.ptr, n));
  return info.Env().Undefined();
}

// geluBackward(dx, dxOff, dout, doutOff, x, xOff, n)
Napi::Value GeluBackward(const Napi::CallbackInfo& info) {
  const char* op = "geluBackward";
  const int64_t n = int_arg(info, 6, op, "n");
  Operand dx = operand_arg(info, 0, n * 4, name(op, "dx"));
  Operand dout = operand_arg(info, 2, n * 4, name(op, "dout"));
  Operand x = operand_arg(info, 4, n * 4, name(op, "x"));
  DeviceSlot& d = common_device(info.Env(), op, {dx, dout, x});
  check_status(info.Env(), d, d.ops->gelu_backward(d.backend, dx.ptr, dout.ptr, x.ptr, n));
  return info.Env().Undefined();
}

// rotary(qkv, qkvOff, b, t, heads, headDim, base, inverse)
Napi::Value Rotary(const Napi::CallbackInfo& info) {
  const char* op = "rotary";
  const int64_t b = int_arg(info, 2, op, "b"), t = int_arg(info, 3, op, "t");
  const int64_t h = int_arg(info, 4, op, "heads"), hd = int_arg(info, 5, op, "headDim");
  Operand qkv = operand_arg(info, 0, b * t * 3 * h * hd * 4, name(op, "qkv"));
  DeviceSlot& d = *qkv.buffer->device;
  check_status(info.Env(), d, d.ops->rotary(d.backend, qkv.ptr, b, t, h, hd,
                                            static_cast<float>(number_arg(info, 6, op, "base")),
                                            info[7].ToBoolean().Value() ? 1 : 0));
  return info.Env().Undefined();
}

// attentionForward(out, outOff, lse, lseOff, qkv, qkvOff, b, t, heads, headDim, scale, algo)
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  const char* op = "attentionForward";
  const int64_t b = int_arg(info, 6, op, "b"), t = int_arg(info, 7, op, "t");
  const int64_t h = int_arg(info, 8, op, "heads"), hd = int_arg(info, 9, op, "headDim");
  Operand out = operand_arg(info, 0, b * t * h * hd * 4, name(op, "out"));
  Operand lse = operand_arg(info, 2, b * h * t * 4, name(op, "lse"));
  Operand qkv = operand_arg(info, 4, b * t * 3 * h * hd * 4, name(op, "qkv"));
  DeviceSlot& d = common_device(info.Env(), op, {out, lse, qkv});
  check_status(info.Env(), d, d.ops->attention_forward(d.backend, out.ptr, lse.ptr, qkv.ptr, b, t, h, hd,
                                                       static_cast<float>(number_arg(info, 10, op, "scale")),
                                                       static_cast<int32_t>(int_arg(info, 11, op, "algo"))));
  return info.Env().Undefined();
}

// attentionBackward(dqkv, dqkvOff, dout, doutOff, qkv, qkvOff, out, outOff, lse, lseOff,
//                   b, t, heads, headDim, scale, algo)
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  const char* op = "attentionBackward";
  const int64_t b = int_arg(info, 10, op, "b"), t = int_arg(info, 11, op, "t");
  const int64_t h = int_arg(info, 12, op, "heads"), hd = int_arg(info, 13, op, "headDim");
  const int64_t qkv_bytes = b * t * 3 * h * hd * 4, out_bytes = b * t * h * hd * 4;
  Operand dqkv = operand_arg(info, 0, qkv_bytes, name(op, "dqkv"));
  Operand dout = operand_arg(info, 2, out_bytes, name(op, "dout"));
  Operand qkv = operand_arg(info, 4, qkv_bytes, name(op, "qkv"));
  Operand out = operand_arg(info, 6, out_bytes, name(op, "out"));
  Operand lse = operand_arg(info, 8, b * h * t * 4, name(op, "lse"));
  DeviceSlot& d = common_device(info.Env(), op, {dqkv, dout, qkv, out, lse});
  check_status(info.Env(), d, d.ops->attention_backward(d.backend, dqkv.ptr, dout.ptr, qkv.ptr, out.ptr, lse.ptr, b, t, h, hd,
                                                        static_cast<float>(number_arg(info, 14, op, "scale")),
                                                        static_cast<int32_t>(int_arg(info, 15, op, "algo"))));
  return info.Env().Undefined();
}

// crossEntropy(losses, lossesOff, logits, logitsOff, targets, targetsOff, n, vocab, gradScale)
Napi::Value CrossEntropy(const Napi::CallbackInfo& info) {
  const char* op = "crossEntropy";
  const int64_t n = int_arg(info, 6, op, "n"), vocab = int_arg(info, 7, op, "vocab");
  Operand losses = operand_arg(info, 0, n * 4, name(op, "losses"));
  Operand logits = operand_arg(info, 2, n * vocab * 4, name(op, "logits"));
  Operand targets = operand_arg(info, 4, n * 4, name(op, "targets"));
  DeviceSlot& d = common_device(info.Env(), op, {losses, logits, targets});
  check_status(info.Env(), d, d.ops->cross_entropy(d.backend, losses.ptr, logits.ptr, targets.ptr, n, vocab,
                                                   static_cast<float>(number_arg(info, 8, op, "gradScale"))));
  return info.Env().Undefined();
}

}  // namespace

void register_model_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("embeddingForward", Napi::Function::New(env, EmbeddingForward, "embeddingForward"));
  exports.Set("embeddingBackward", Napi::Function::New(env, EmbeddingBackward, "embeddingBackward"));
  exports.Set("rmsnormForward", Napi::Function::New(env, RmsnormForward, "rmsnormForward"));
  exports.Set("rmsnormBackward", Napi::Function::New(env, RmsnormBackward, "rmsnormBackward"));
  exports.Set("geluForward", Napi::Function::New(env, GeluForward, "geluForward"));
  exports.Set("geluBackward", Napi::Function::New(env, GeluBackward, "geluBackward"));
  exports.Set("rotary", Napi::Function::New(env, Rotary, "rotary"));
  exports.Set("attentionForward", Napi::Function::New(env, AttentionForward, "attentionForward"));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward, "attentionBackward"));
  exports.Set("crossEntropy", Napi::Function::New(env, CrossEntropy, "crossEntropy"));
}

}  // namespace nm::napi
