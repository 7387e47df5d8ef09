// Bindings for the optimizer ops (newton_schulz, cholesky_inverse, momentum/apply/adamw
// updates). Same contract as op_bindings.cc: byte offsets, bounds-checked ranges, one device.
#include "optim_bindings.h"

#include <string>

#include "args.h"
#include "buffer_handle.h"

namespace nm::napi {
namespace {

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
  Operand out = operand_arg(info, 0, n * 4, "newtonSchulz: out");
  Operand x = operand_arg(info, 2, n * 4, "newtonSchulz: x");
  DeviceSlot& device = common_device(info.Env(), op, {out, x});
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
  Operand kinv = operand_arg(info, 0, batch * d * d * 4, "choleskyInverse: kinv");
  Operand k = operand_arg(info, 2, batch * d * d * 4, "choleskyInverse: k");
  Operand flags = operand_arg(info, 4, batch * 4, "choleskyInverse: info");
  DeviceSlot& device = common_device(info.Env(), op, {kinv, k, flags});
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
  Operand buf = operand_arg(info, 0, n * 4, "momentumUpdate: buf");
  Operand u = operand_arg(info, 2, n * 4, "momentumUpdate: u");
  Operand g = operand_arg(info, 4, n * 4, "momentumUpdate: g");
  DeviceSlot& device = common_device(info.Env(), op, {buf, u, g});
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
  Operand w = operand_arg(info, 0, n * 4, "applyUpdate: w");
  Operand u = operand_arg(info, 2, n * 4, "applyUpdate: u");
  DeviceSlot& device = common_device(info.Env(), op, {w, u});
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
  Operand w = operand_arg(info, 0, n * 4, "adamwUpdate: w");
  Operand g = operand_arg(info, 2, n * 4, "adamwUpdate: g");
  Operand m = operand_arg(info, 4, n * 4, "adamwUpdate: m");
  Operand v = operand_arg(info, 6, n * 4, "adamwUpdate: v");
  DeviceSlot& device = common_device(info.Env(), op, {w, g, m, v});
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
