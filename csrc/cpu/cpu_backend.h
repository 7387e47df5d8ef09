#ifndef NM_CPU_CPU_BACKEND_H
#define NM_CPU_CPU_BACKEND_H

#include "../core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// The CPU backend's op table (always available; compiled into the addon).
const nm_backend_ops* nm_cpu_backend_ops(void);

#ifdef __cplusplus
}
#endif

#endif  // NM_CPU_CPU_BACKEND_H
