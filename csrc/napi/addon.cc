// Entry point of newton_muon.node: the N-API surface declared in lib/native.ts.
#include <napi.h>

#include "async_bindings.h"
#include "comm_bindings.h"
#include "device_bindings.h"
#include "op_bindings.h"
#include "model_bindings.h"
#include "optim_bindings.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  nm::napi::register_device_bindings(env, exports);
  nm::napi::register_op_bindings(env, exports);
  nm::napi::register_async_bindings(env, exports);
  nm::napi::register_optim_bindings(env, exports);
  nm::napi::register_model_bindings(env, exports);
  nm::napi::register_comm_bindings(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(newton_muon, Init)
