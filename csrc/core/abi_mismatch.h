// What a module's entry point (nm_cuda_backend_ops, nm_cuda_comm_ops, nm_gloo_comm_ops) writes
// when the addon asks for a table version it does not implement: one wording for every module,
// so the addon can show it as the reason the module is unavailable.
#ifndef NM_CORE_ABI_MISMATCH_H
#define NM_CORE_ABI_MISMATCH_H

#include <stddef.h>
#include <stdio.h>

// "<module> implements <table> ABI version <have> but the addon expects <want>; <remedy>".
// err may be NULL or err_len 0 (nothing is written).
static inline void nm_report_abi_mismatch(char* err, size_t err_len, const char* module,
                                          const char* table, unsigned have, unsigned want,
                                          const char* remedy) {
  if (err == NULL || err_len == 0) return;
  snprintf(err, err_len, "%s implements %s ABI version %u but the addon expects %u; %s", module,
           table, have, want, remedy);
}

#endif  // NM_CORE_ABI_MISMATCH_H
