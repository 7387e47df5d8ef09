#ifndef NM_CPU_CPU_BACKEND_H
#define NM_CPU_CPU_BACKEND_H

#include "../core/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// The CPU backend's op table (always available; compiled into the addon).
const nm_backend_ops* nm_cpu_backend_ops(void);

// Runs task(arg) on the CPU backend's stream (its work queue thread) after everything enqueued
// before: how a collectives engine that lives outside the addon (Gloo, csrc/core/comm.h's
// nm_stream_hooks) keeps its ops in stream order. queue is the CPU backend's nm_backend*.
nm_status nm_cpu_enqueue_task(void* queue, void (*task)(void* arg), void* arg);

#ifdef __cplusplus
}
#endif

#endif  // NM_CPU_CPU_BACKEND_H
