#ifndef NM_NAPI_OPTIM_BINDINGS_H
#define NM_NAPI_OPTIM_BINDINGS_H
#include <napi.h>
namespace nm::napi {
void register_optim_bindings(Napi::Env env, Napi::Object exports);
}
#endif
