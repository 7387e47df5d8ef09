#ifndef NM_NAPI_OP_BINDINGS_H
#define NM_NAPI_OP_BINDINGS_H
#include <napi.h>
namespace nm::napi {
void register_op_bindings(Napi::Env env, Napi::Object exports);
}
#endif
