#ifndef NM_NAPI_DEVICE_BINDINGS_H
#define NM_NAPI_DEVICE_BINDINGS_H
#include <napi.h>
namespace nm::napi {
void register_device_bindings(Napi::Env env, Napi::Object exports);
}
#endif
