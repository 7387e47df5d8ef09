// Streams, events and host functions of the emulated runtime (streams themselves: stream.h).
// An event is the position of its latest record in one stream: complete once that stream has run
// everything up to there. Destroying an event (or a stream) with work pending is fine, as in CUDA.
#include <chrono>
#include <memory>
#include <mutex>

#include "handle_registry.h"
#include "runtime.h"
#include "stream.h"

struct CUevent_st {
  struct State {
    std::mutex mu;
    nm_emu::rt::Stream* stream = nullptr;  // of the latest record (null: never recorded)
    uint64_t seq = 0;
    double time_ms = 0.0;  // when the record ran (timing events)
  };
  std::shared_ptr<State> state = std::make_shared<State>();
  unsigned flags = 0;
};

namespace nm_emu {
namespace rt {
namespace {

HandleRegistry<cudaEvent_t>& events() { return registry_of<cudaEvent_t>(); }
bool event_is_live(cudaEvent_t event) { return events().contains(event); }

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

cudaError_t create_event(cudaEvent_t* event, unsigned flags) {
  if (event == nullptr) return note(cudaErrorInvalidValue);
  if ((flags & ~(unsigned)(cudaEventBlockingSync | cudaEventDisableTiming)) != 0) return note(cudaErrorInvalidValue);
  if (check_context() != cudaSuccess) return sticky_error();
  cudaEvent_t e = new CUevent_st();
  e->flags = flags;
  events().add(e);
  *event = e;
  return cudaSuccess;
}

}  // namespace
}  // namespace rt
}  // namespace nm_emu

using namespace nm_emu::rt;

extern "C" {

cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  NM_EMU_RUNTIME_ENTRY("cudaStreamCreate");
  if (stream == nullptr) return note(cudaErrorInvalidValue);
  if (check_context() != cudaSuccess) return sticky_error();
  *stream = create_stream(false);
  return cudaSuccess;
}

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  NM_EMU_RUNTIME_ENTRY("cudaStreamCreateWithFlags");
  if (stream == nullptr || (flags & ~(unsigned)cudaStreamNonBlocking) != 0) return note(cudaErrorInvalidValue);
  if (check_context() != cudaSuccess) return sticky_error();
  *stream = create_stream((flags & cudaStreamNonBlocking) != 0);
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  NM_EMU_RUNTIME_ENTRY("cudaStreamDestroy");
  if (!destroy_stream(stream)) return note(cudaErrorInvalidResourceHandle);
  return check_context();
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  NM_EMU_RUNTIME_ENTRY("cudaStreamSynchronize");
  Stream* s = resolve_stream(stream);
  if (s == nullptr) return note(cudaErrorInvalidResourceHandle);
  s->wait(s->last_enqueued());
  return check_context();
}

cudaError_t cudaStreamQuery(cudaStream_t stream) {
  NM_EMU_RUNTIME_ENTRY("cudaStreamQuery");
  Stream* s = resolve_stream(stream);
  if (s == nullptr) return note(cudaErrorInvalidResourceHandle);
  if (check_context() != cudaSuccess) return sticky_error();
  // cudaErrorNotReady is an answer, not an error: it is not recorded as the last error.
  return s->poll(s->last_enqueued()) ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int flags) {
  NM_EMU_RUNTIME_ENTRY("cudaStreamWaitEvent");
  Stream* s = resolve_stream(stream);
  if (s == nullptr || !event_is_live(event)) return note(cudaErrorInvalidResourceHandle);
  if (flags != 0) return note(cudaErrorInvalidValue);
  if (check_context() != cudaSuccess) return sticky_error();
  Stream* other;
  uint64_t seq;
  {
    std::lock_guard<std::mutex> lock(event->state->mu);
    other = event->state->stream;
    seq = event->state->seq;
  }
  // Waiting on an event never recorded, or on earlier work of the same stream, is a no-op.
  if (other != nullptr && other != s) s->enqueue([other, seq] { other->wait(seq); });
  return cudaSuccess;
}

cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* userData) {
  NM_EMU_RUNTIME_ENTRY("cudaLaunchHostFunc");
  Stream* s = resolve_stream(stream);
  if (s == nullptr) return note(cudaErrorInvalidResourceHandle);
  if (fn == nullptr) return note(cudaErrorInvalidValue);
  if (check_context() != cudaSuccess) return sticky_error();
  s->enqueue([fn, userData] { fn(userData); });
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  NM_EMU_RUNTIME_ENTRY("cudaEventCreate");
  return create_event(event, cudaEventDefault);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  NM_EMU_RUNTIME_ENTRY("cudaEventCreateWithFlags");
  return create_event(event, flags);
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  NM_EMU_RUNTIME_ENTRY("cudaEventDestroy");
  if (!events().remove(event)) return note(cudaErrorInvalidResourceHandle);
  delete event;  // a pending record keeps its state alive (shared_ptr)
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  NM_EMU_RUNTIME_ENTRY("cudaEventRecord");
  Stream* s = resolve_stream(stream);
  if (s == nullptr || !event_is_live(event)) return note(cudaErrorInvalidResourceHandle);
  if (check_context() != cudaSuccess) return sticky_error();
  std::shared_ptr<CUevent_st::State> state = event->state;
  std::lock_guard<std::mutex> lock(state->mu);
  const bool timing = (event->flags & cudaEventDisableTiming) == 0;
  state->stream = s;
  state->seq = s->enqueue([state, timing] {
    if (!timing) return;
    std::lock_guard<std::mutex> lock(state->mu);
    state->time_ms = now_ms();
  });
  return cudaSuccess;
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  NM_EMU_RUNTIME_ENTRY("cudaEventQuery");
  if (!event_is_live(event)) return note(cudaErrorInvalidResourceHandle);
  if (check_context() != cudaSuccess) return sticky_error();
  Stream* s;
  uint64_t seq;
  {
    std::lock_guard<std::mutex> lock(event->state->mu);
    s = event->state->stream;
    seq = event->state->seq;
  }
  if (s == nullptr) return cudaSuccess;  // never recorded
  return s->poll(seq) ? cudaSuccess : cudaErrorNotReady;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  NM_EMU_RUNTIME_ENTRY("cudaEventSynchronize");
  if (!event_is_live(event)) return note(cudaErrorInvalidResourceHandle);
  Stream* s;
  uint64_t seq;
  {
    std::lock_guard<std::mutex> lock(event->state->mu);
    s = event->state->stream;
    seq = event->state->seq;
  }
  if (s != nullptr) s->wait(seq);
  return check_context();
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  NM_EMU_RUNTIME_ENTRY("cudaEventElapsedTime");
  if (ms == nullptr) return note(cudaErrorInvalidValue);
  if (!event_is_live(start) || !event_is_live(end)) return note(cudaErrorInvalidResourceHandle);
  if (((start->flags | end->flags) & cudaEventDisableTiming) != 0) return note(cudaErrorInvalidResourceHandle);
  if (check_context() != cudaSuccess) return sticky_error();
  for (cudaEvent_t e : {start, end}) {
    std::lock_guard<std::mutex> lock(e->state->mu);
    if (e->state->stream == nullptr) return note(cudaErrorInvalidResourceHandle);
    if (!e->state->stream->poll(e->state->seq)) return cudaErrorNotReady;
  }
  *ms = (float)(end->state->time_ms - start->state->time_ms);
  return cudaSuccess;
}

}  // extern "C"
