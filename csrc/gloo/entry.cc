// The module's one exported symbol: nm_gloo_comm_ops() hands the addon the Gloo collectives
// table. Everything else in newton_muon_gloo.so is hidden (CMakeLists.txt: hidden visibility and
// a version script), so Gloo's and our symbols never clash with the host's.
#include <stdio.h>
#include <string.h>

#include "../core/abi_mismatch.h"
#include "../core/comm.h"
#include "gloo_comm.h"

namespace {

nm_comm_ops make_ops() {
  nm_comm_ops ops;
  memset(&ops, 0, sizeof ops);
  ops.abi_version = NM_COMM_ABI_VERSION;
  ops.name = "gloo";
  ops.last_error = nm_gloo::last_error;
  ops.describe = nm_gloo::describe;
  ops.unique_id = nm_gloo::unique_id;
  ops.create = nm_gloo::create;
  ops.destroy = nm_gloo::destroy;
  ops.abort = nm_gloo::abort;
  ops.status = nm_gloo::status;
  ops.all_reduce = nm_gloo::all_reduce;
  ops.reduce_scatter = nm_gloo::reduce_scatter;
  ops.all_gather = nm_gloo::all_gather;
  ops.broadcast = nm_gloo::broadcast;
  ops.barrier = nm_gloo::barrier;
  return ops;
}

const nm_comm_ops g_ops = make_ops();

}  // namespace

extern "C" __attribute__((visibility("default"))) const nm_comm_ops* nm_gloo_comm_ops(
    uint32_t abi_version, char* err, size_t err_len) {
  if (abi_version != NM_COMM_ABI_VERSION) {
    nm_report_abi_mismatch(err, err_len, "newton_muon_gloo.so", "collectives", NM_COMM_ABI_VERSION,
                           abi_version, "rebuild it (`npm run build:gloo`) from the same source as the addon");
    return nullptr;
  }
  return &g_ops;
}

[[maybe_unused]] static constexpr nm_comm_entry_fn kEntryTypeCheck = &nm_gloo_comm_ops;
