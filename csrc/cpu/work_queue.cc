#include "work_queue.h"

namespace nm::cpu {

WorkQueue::WorkQueue() : thread_([this] { run(); }) {}

WorkQueue::~WorkQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  has_work_.notify_all();
  thread_.join();
}

uint64_t WorkQueue::enqueue(std::function<void()> task) {
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    tasks_.push_back(std::move(task));
    ticket = ++enqueued_;
  }
  has_work_.notify_one();
  return ticket;
}

uint64_t WorkQueue::last_ticket() {
  std::lock_guard<std::mutex> lock(mutex_);
  return enqueued_;
}

void WorkQueue::wait_for(uint64_t ticket) {
  std::unique_lock<std::mutex> lock(mutex_);
  progressed_.wait(lock, [&] { return completed_ >= ticket; });
}

void WorkQueue::run() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      has_work_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping and drained
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ++completed_;
    }
    progressed_.notify_all();
  }
}

}  // namespace nm::cpu
