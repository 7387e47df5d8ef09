#ifndef NM_NAPI_ASYNC_BINDINGS_H
#define NM_NAPI_ASYNC_BINDINGS_H
#include <napi.h>
namespace nm::napi {
void register_async_bindings(Napi::Env env, Napi::Object exports);
}
#endif
