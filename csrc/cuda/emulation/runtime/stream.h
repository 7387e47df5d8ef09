// Emulated streams: each is a FIFO of work run in order by its own worker thread, asynchronously
// to the host thread that enqueued it. By default a stream is lazy: its work starts only when
// something waits for it (cudaStreamSynchronize, cudaEventSynchronize, a synchronous copy, a wait
// from another stream), when more than kMaxPending items are queued, or when it has been polled
// (cudaStreamQuery / cudaEventQuery answered "not ready") kMaxPolls times in a row. So a host
// read without the synchronization before it sees memory the work has not written yet, every
// time, not only when a race is lost. NM_CUDA_EMU_EAGER=1 makes streams start work at once.
//
// The legacy default stream (handle 0) synchronizes with the blocking streams (made without
// cudaStreamNonBlocking) as in CUDA: its work waits for everything queued before it on them, and
// their work waits for everything queued before it on the default stream.
#ifndef NM_EMU_STREAM_H
#define NM_EMU_STREAM_H

#include <stdint.h>

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

#include "runtime.h"

namespace nm_emu {
namespace rt {

class Stream {
 public:
  static constexpr uint64_t kMaxPending = 4096;
  static constexpr int kMaxPolls = 64;

  Stream(bool non_blocking, bool legacy_default);

  // Appends work (it must not throw); returns its sequence number (1, 2, ... per stream).
  uint64_t enqueue(std::function<void()> work);
  uint64_t last_enqueued();
  // Has everything up to seq run? A "no" counts as a poll (see above).
  bool poll(uint64_t seq);
  // Releases everything up to seq and blocks until it has run.
  void wait(uint64_t seq);
  // Releases everything queued so far without waiting.
  void release_all();
  bool non_blocking() const { return non_blocking_; }

 private:
  struct Item {
    uint64_t seq;
    std::function<void()> work;
  };
  void worker();

  const bool non_blocking_, legacy_default_;
  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_;
  std::deque<Item> queue_;
  uint64_t enqueued_ = 0, released_ = 0, executed_ = 0;
  int polls_ = 0;
};

// The stream a handle names: 0 / cudaStreamLegacy / cudaStreamPerThread are the default stream;
// anything else must be a live stream made by cudaStreamCreate*. NULL for an invalid handle.
Stream* resolve_stream(cudaStream_t handle);
cudaStream_t create_stream(bool non_blocking);
bool destroy_stream(cudaStream_t handle);
// Waits for all work in every stream (cudaDeviceSynchronize, and the implicit synchronization of
// cudaFree / cudaFreeHost).
void synchronize_all();

}  // namespace rt
}  // namespace nm_emu

#endif  // NM_EMU_STREAM_H
