// The 'gloo' engine of csrc/core/comm.h: a Gloo context over the TCP transport, joined through
// the package's rendezvous store, whose collectives run in stream order on the CPU backend's work
// queue (the stream hooks the addon passes in). One function per table slot; entry.cc fills the
// table.
#ifndef NM_GLOO_GLOO_COMM_H
#define NM_GLOO_GLOO_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "../core/comm.h"

namespace nm_gloo {

const char* last_error();
nm_status describe(char* buf, size_t buf_len);
nm_status unique_id(void* out, size_t out_len, size_t* written);
nm_status create(const nm_comm_config* config, nm_comm** out);
void destroy(nm_comm* comm);
void abort(nm_comm* comm, const char* reason);
nm_status status(nm_comm* comm, char* err, size_t err_len);
nm_status all_reduce(nm_comm* comm, void* out, const void* in, int64_t n, nm_dtype dtype,
                     nm_reduce_op op);
nm_status reduce_scatter(nm_comm* comm, void* out, const void* in, int64_t n, nm_dtype dtype,
                         nm_reduce_op op);
nm_status all_gather(nm_comm* comm, void* out, const void* in, int64_t n, nm_dtype dtype);
nm_status broadcast(nm_comm* comm, void* buf, int64_t n, nm_dtype dtype, int32_t root);
nm_status barrier(nm_comm* comm);

}  // namespace nm_gloo

#endif  // NM_GLOO_GLOO_COMM_H
