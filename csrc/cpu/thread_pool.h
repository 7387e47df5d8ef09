// A small fixed thread pool for data-parallel CPU kernels.
//
// The CPU backend runs ops one at a time on its stream thread (see work_queue.h); an op that
// wants all cores calls parallel_for, which splits the range across the pool's workers and the
// calling thread and returns when every chunk is done. Kernels never create threads themselves.
#ifndef NM_CPU_THREAD_POOL_H
#define NM_CPU_THREAD_POOL_H

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace nm::cpu {

class ThreadPool {
 public:
  // threads = total parallelism including the calling thread (>= 1).
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(i) for every i in [0, n) exactly once, spread over the pool and the caller.
  // Items are handed out one at a time from a shared counter, so uneven items balance.
  // Not reentrant: fn must not call parallel_for.
  void parallel_for(int64_t n, const std::function<void(int64_t)>& fn);

 private:
  void worker_loop();
  void run_items();

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(int64_t)>* job_ = nullptr;
  int64_t job_size_ = 0;
  int64_t next_item_ = 0;
  int64_t items_done_ = 0;
  uint64_t generation_ = 0;
  int busy_workers_ = 0;
  bool stopping_ = false;
};

// The process-wide compute pool (one thread per hardware thread, or NM_NUM_THREADS).
ThreadPool& compute_pool();

}  // namespace nm::cpu

#endif  // NM_CPU_THREAD_POOL_H
