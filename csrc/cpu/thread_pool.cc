#include "thread_pool.h"

#include <algorithm>
#include <cstdlib>

namespace nm::cpu {

ThreadPool::ThreadPool(int threads) {
  const int extra = std::max(threads, 1) - 1;
  workers_.reserve(extra);
  for (int i = 0; i < extra; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  for (auto& worker : workers_) worker.join();
}

void ThreadPool::run_items() {
  // Claim items one by one; the lock is held only to take an index, never while computing.
  for (;;) {
    int64_t item;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (next_item_ >= job_size_) return;
      item = next_item_++;
    }
    (*job_)(item);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (++items_done_ == job_size_) done_.notify_all();
    }
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
      if (stopping_) return;
      seen = generation_;
      ++busy_workers_;
    }
    run_items();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_workers_ == 0) done_.notify_all();
    }
  }
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t)>& fn) {
  if (n <= 0) return;
  if (n == 1 || workers_.empty()) {
    for (int64_t i = 0; i < n; ++i) fn(i);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    job_ = &fn;
    job_size_ = n;
    next_item_ = 0;
    items_done_ = 0;
    ++generation_;
  }
  wake_.notify_all();
  run_items();
  std::unique_lock<std::mutex> lock(mutex_);
  // Wait for every item and for every worker to have left run_items (so job_ can be reset).
  done_.wait(lock, [&] { return items_done_ == job_size_ && busy_workers_ == 0; });
  job_ = nullptr;
  job_size_ = 0;
}

ThreadPool& compute_pool() {
  static ThreadPool pool([] {
    if (const char* env = std::getenv("NM_NUM_THREADS")) {
      const int requested = std::atoi(env);
      if (requested > 0) return requested;
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return hw == 0 ? 1 : static_cast<int>(hw);
  }());
  return pool;
}

}  // namespace nm::cpu
