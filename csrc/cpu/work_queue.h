// The CPU backend's stream: a single thread that runs enqueued tasks in order.
//
// Why a queue and not direct calls: the package's contract is that ops are stream-ordered on
// every backend, so JS code written against the CPU behaves the same on CUDA (ops return at
// once; only reading data or a fence waits) and Node's event loop is never blocked by compute.
#ifndef NM_CPU_WORK_QUEUE_H
#define NM_CPU_WORK_QUEUE_H

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace nm::cpu {

class WorkQueue {
 public:
  WorkQueue();
  ~WorkQueue();  // runs everything still queued, then stops the thread
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // Appends a task; returns its ticket (1, 2, 3, ...).
  uint64_t enqueue(std::function<void()> task);
  // The ticket of the last task enqueued so far (0 when none): a fence.
  uint64_t last_ticket();
  // Blocks until every task up to and including ticket has run.
  void wait_for(uint64_t ticket);

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable has_work_;
  std::condition_variable progressed_;
  std::deque<std::function<void()>> tasks_;
  uint64_t enqueued_ = 0;
  uint64_t completed_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace nm::cpu

#endif  // NM_CPU_WORK_QUEUE_H
