#ifndef NM_NAPI_MODEL_BINDINGS_H
#define NM_NAPI_MODEL_BINDINGS_H
#include <napi.h>
namespace nm::napi {
void register_model_bindings(Napi::Env env, Napi::Object exports);
}
#endif
