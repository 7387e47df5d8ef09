// Bindings for the optimizer ops (newton_schulz, cholesky_inverse, momentum/apply/adamw
// updates). Same contract as op_bindings.cc: byte offsets, bounds-checked ranges, one device.
#include "optim_bindings.h"

#include <string>

#include "args.h"
#include "buffer_handle.h"

namespace nm::napi {
namespace {

// A bounds-checked f32/i32 range of n elements at (buffer, byteOffset) given as args i, i+1.
struct Operand {
  BufferHandle* buffer;
  void* ptr;
};

Operand operand(const Napi::CallbackInfo& info, size_t i, int64_t elements, const char* what) {
  BufferHandle& b = buffer_arg(info[i], what);
  return {&b, buffer_range(b, int_arg(info, i + 1, what, "byteOffset"), elements * 4, what)};
}

DeviceSlot& one_device(Napi::Env env, const char* op, std::initializer_list<Operand> operands) {
  DeviceSlot* device = operands.begin()->buffer->device;
  for (const Operand& o : operands) {
    if (o.buffer->device != device) {
      throw Napi::Error::New(env, std::string(op) + ": operands are on different devices");
    }
  }
  return *device;
}

float float_arg(const Napi::CallbackInfo& info, size_t i, const char* op, const char* name) {
  return static_cast<float>(number_arg(info, i, op, name));
}

// newtonSchulz(out, outOff, x, xOff, batch, rows, cols, steps, a, b, c, eps)
Napi::Value NewtonSchulz(const Napi::CallbackInfo& info) {
  const char* op = "newtonSchulz";
  const int64_t batch = int_arg(info, 4, op, "batch");
  const int64_t rows = int_arg(info, 5, op, "rows");
  const int64_t cols = int_arg(info, 6, op, "cols");
  const int64_t n = batch * rows * cols;
  Operand out = operand(info, 0, n, "newtonSchulz: out");
  Operand x = operand(info, 2, n, "newtonSchulz: x");
  DeviceSlot& device = one_device(info.Env(), op, {out, x});
  check_status(info.Env(), device,
               device.ops->newton_schulz(device.backend, out.ptr, x.ptr, batch, rows, cols,
                                         static_cast<int32_t>(int_arg(info, 7, op, "steps")),
                                         float_arg(info, 8, op, "a"), float_arg(info, 9, op, "b"),
                                         float_arg(info, 10, op, "c"), float_arg(info, 11, op, "eps")));
  return info.Env().Undefined();
}

// choleskyInverse(kinv, kinvOff, k, kOff, info, infoOff, batch, d, ridgeMult, ridgeEps)
Napi::Value CholeskyInverse(const Napi::CallbackInfo& info) {
  const char* op = "choleskyInverse";
  const int64_t batch = int_arg(info, 6, op, "batch");
  const int64_t d = int_arg(info, 7, op, "d");
  Operand kinv = operand(info, 0, batch * d * d, "choleskyInverse: kinv");
  Operand k = operand(info, 2, batch * d * d, "choleskyInverse: k");
  Operand flags = operand(info, 4, batch, "choleskyInverse: info");
  DeviceSlot& device = one_device(info.Env(), op, {kinv, k, flags});
  check_status(info.Env(), device,
               device.ops->cholesky_inverse(device.backend, kinv.ptr, k.ptr, flags.ptr, batch, d,
                                            float_arg(info, 8, op, "ridgeMult"),
                                            float_arg(info, 9, op, "ridgeEps")));
  return info.Env().Undefined();
}

// momentumUpdate(buf, bufOff, u, uOff, g, gOff, n, momentum, nesterov)
Napi::Value MomentumUpdate(const Napi::CallbackInfo& info) {
  const char* op = "momentumUpdate";
  const int64_t n = int_arg(info, 6, op, "n");
  Operand buf = operand(info, 0, n, "momentumUpdate: buf");
  Operand u = operand(info, 2, n, "momentumUpdate: u");
  Operand g = operand(info, 4, n, "momentumUpdate: g");
  DeviceSlot& device = one_device(info.Env(), op, {buf, u, g});
  check_status(info.Env(), device,
               device.ops->momentum_update(device.backend, buf.ptr, u.ptr, g.ptr, n,
                                           float_arg(info, 7, op, "momentum"),
                                           info[8].ToBoolean().Value() ? 1 : 0));
  return info.Env().Undefined();
}

// applyUpdate(w, wOff, u, uOff, n, decay, step)
Napi::Value ApplyUpdate(const Napi::CallbackInfo& info) {
  const char* op = "applyUpdate";
  const int64_t n = int_arg(info, 4, op, "n");
  Operand w = operand(info, 0, n, "applyUpdate: w");
  Operand u = operand(info, 2, n, "applyUpdate: u");
  DeviceSlot& device = one_device(info.Env(), op, {w, u});
  check_status(info.Env(), device,
               device.ops->apply_update(device.backend, w.ptr, u.ptr, n, float_arg(info, 5, op, "decay"),
                                        float_arg(info, 6, op, "step")));
  return info.Env().Undefined();
}

// adamwUpdate(w, wOff, g, gOff, m, mOff, v, vOff, n, keep, beta1, oneMinusBeta1, beta2,
//             oneMinusBeta2, stepSize, sqrtBias2, eps)
Napi::Value AdamwUpdate(const Napi::CallbackInfo& info) {
  const char* op = "adamwUpdate";
  const int64_t n = int_arg(info, 8, op, "n");
  Operand w = operand(info, 0, n, "adamwUpdate: w");
  Operand g = operand(info, 2, n, "adamwUpdate: g");
  Operand m = operand(info, 4, n, "adamwUpdate: m");
  Operand v = operand(info, 6, n, "adamwUpdate: v");
  DeviceSlot& device = one_device(info.Env(), op, {w, g, m, v});
  nm_adamw_scalars s{};
  s.keep = float_arg(info, 9, op, "keep");
  s.beta1 = float_arg(info, 10, op, "beta1");
  s.one_minus_beta1 = float_arg(info, 11, op, "oneMinusBeta1");
  s.beta2 = float_arg(info, 12, op, "beta2");
  s.one_minus_beta2 = float_arg(info, 13, op, "oneMinusBeta2");
  s.step_size = float_arg(info, 14, op, "stepSize");
  s.sqrt_bias2 = float_arg(info, 15, op, "sqrtBias2");
  s.eps = float_arg(info, 16, op, "eps");
  check_status(info.Env(), device, device.ops->adamw_update(device.backend, w.ptr, g.ptr, m.ptr, v.ptr, n, &s));
  return info.Env().Undefined();
}

}  // namespace

void register_optim_bindings(Napi::Env env, Napi::Object exports) {
  exports.Set("newtonSchulz", Napi::Function::New(env, NewtonSchulz, "newtonSchulz"));
  exports.Set("choleskyInverse", Napi::Function::New(env, CholeskyInverse, "choleskyInverse"));
  exports.Set("momentumUpdate", Napi::Function::New(env, MomentumUpdate, "momentumUpdate"));
  exports.Set("applyUpdate", Napi::Function::New(env, ApplyUpdate, "applyUpdate"));
  exports.Set("adamwUpdate", Napi::Function::New(env, AdamwUpdate, "adamwUpdate"));
}

}  // namespace nm::napi
