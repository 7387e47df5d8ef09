// Process-group collectives (csrc/core/comm.h) as lib/dist sees them: engines and why they are
// unavailable, joining a group off the event loop, stream-ordered collectives on tensors,
// the sticky error, abort and destroy.
#ifndef NM_NAPI_COMM_BINDINGS_H
#define NM_NAPI_COMM_BINDINGS_H

#include <napi.h>

namespace nm::napi {
void register_comm_bindings(Napi::Env env, Napi::Object exports);
}

#endif  // NM_NAPI_COMM_BINDINGS_H
