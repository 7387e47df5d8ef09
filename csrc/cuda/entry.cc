// The module's one exported symbol: nm_cuda_backend_ops() hands the addon the CUDA op table.
// Everything else in newton_muon_cuda.so is hidden (see CMakeLists.txt: hidden visibility and a
// linker version script), so the CUDA libraries' and our own symbols never clash with the host's.
#include <stdio.h>
#include <string.h>

#include "../core/abi_mismatch.h"
#include "../core/backend.h"
#include "ops.h"

namespace {

// Filled slot by slot (by name, not position) so a reordered header cannot silently swap two
// ops of the same signature.
nm_backend_ops make_ops() {
  nm_backend_ops ops;
  memset(&ops, 0, sizeof ops);
  ops.abi_version = NM_BACKEND_ABI_VERSION;
  ops.name = "cuda";
  ops.create = nm_cuda::create;
  ops.destroy = nm_cuda::destroy;
  ops.last_error = nm_cuda::last_error_message;
  ops.describe = nm_cuda::describe;
  ops.alloc = nm_cuda::alloc;
  ops.free = nm_cuda::free_memory;
  ops.host_alloc = nm_cuda::host_alloc;
  ops.host_free = nm_cuda::host_free;
  ops.upload = nm_cuda::upload;
  ops.download = nm_cuda::download;
  ops.copy = nm_cuda::copy;
  ops.copy_rows = nm_cuda::copy_rows;
  ops.fill = nm_cuda::fill;
  ops.cast = nm_cuda::cast;
  ops.binary = nm_cuda::binary;
  ops.scale = nm_cuda::scale;
  ops.axpy = nm_cuda::axpy;
  ops.sum = nm_cuda::sum;
  ops.sum_squares = nm_cuda::sum_squares;
  ops.gemm = nm_cuda::gemm;
  ops.fence_create = nm_cuda::fence_create;
  ops.fence_wait = nm_cuda::fence_wait;
  ops.fence_destroy = nm_cuda::fence_destroy;
  ops.newton_schulz = nm_cuda::newton_schulz;
  ops.cholesky_inverse = nm_cuda::cholesky_inverse;
  ops.momentum_update = nm_cuda::momentum_update;
  ops.apply_update = nm_cuda::apply_update;
  ops.adamw_update = nm_cuda::adamw_update;
  ops.embedding_forward = nm_cuda::embedding_forward;
  ops.embedding_backward = nm_cuda::embedding_backward;
  ops.rmsnorm_forward = nm_cuda::rmsnorm_forward;
  ops.rmsnorm_backward = nm_cuda::rmsnorm_backward;
  ops.gelu_forward = nm_cuda::gelu_forward;
  ops.gelu_backward = nm_cuda::gelu_backward;
  ops.rotary = nm_cuda::rotary;
  ops.attention_forward = nm_cuda::attention_forward;
  ops.attention_backward = nm_cuda::attention_backward;
  ops.cross_entropy = nm_cuda::cross_entropy;
  return ops;
}

const nm_backend_ops g_ops = make_ops();

}  // namespace

extern "C" __attribute__((visibility("default"))) const nm_backend_ops* nm_cuda_backend_ops(
    uint32_t abi_version, char* err, size_t err_len) {
  if (abi_version != NM_BACKEND_ABI_VERSION) {
    nm_report_abi_mismatch(err, err_len, "newton_muon_cuda.so", "backend", NM_BACKEND_ABI_VERSION,
                           abi_version, "rebuild the CUDA module from the same source as the addon");
    return nullptr;
  }
  return &g_ops;
}

// The entry point must have exactly the type the addon casts dlsym's result to: this line stops
// compiling if the two ever differ.
[[maybe_unused]] static constexpr nm_backend_entry_fn kEntryTypeCheck = &nm_cuda_backend_ops;
