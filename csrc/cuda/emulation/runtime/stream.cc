// Emulated streams (see stream.h).
#include "stream.h"

#include <set>
#include <vector>

namespace nm_emu {
namespace rt {
namespace {

struct Registry {
  std::mutex mu;
  std::set<Stream*> live;
  std::vector<Stream*> all;  // every stream ever made (never deleted: events may point at them)
  Stream* default_stream = nullptr;
};

Registry& registry() {
  static Registry* r = new Registry();
  return *r;
}

// The work items another stream's queued work must run after, for the default stream's
// implicit synchronization (see stream.h): (stream, sequence number) pairs.
std::vector<std::pair<Stream*, uint64_t>> legacy_dependencies(Stream* self, bool legacy_default) {
  std::vector<Stream*> others;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    if (legacy_default) {
      for (Stream* s : r.live) {
        if (!s->non_blocking()) others.push_back(s);
      }
    } else if (r.default_stream != nullptr) {
      others.push_back(r.default_stream);
    }
  }
  std::vector<std::pair<Stream*, uint64_t>> deps;
  for (Stream* s : others) {
    if (s == self) continue;
    const uint64_t last = s->last_enqueued();
    if (last > 0) deps.emplace_back(s, last);
  }
  return deps;
}

}  // namespace

Stream::Stream(bool non_blocking, bool legacy_default)
    : non_blocking_(non_blocking), legacy_default_(legacy_default) {
  // The worker lives as long as the process (a destroyed stream just has no more work).
  std::thread([this] { worker(); }).detach();
}

uint64_t Stream::enqueue(std::function<void()> work) {
  if (!non_blocking_) {
    auto deps = legacy_dependencies(this, legacy_default_);
    if (!deps.empty()) {
      work = [deps = std::move(deps), inner = std::move(work)] {
        for (const auto& d : deps) d.first->wait(d.second);
        inner();
      };
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t seq = ++enqueued_;
  queue_.push_back(Item{seq, std::move(work)});
  if (!config().lazy || enqueued_ - released_ > kMaxPending) released_ = enqueued_;
  if (released_ >= seq) work_cv_.notify_one();
  return seq;
}

uint64_t Stream::last_enqueued() {
  std::lock_guard<std::mutex> lock(mu_);
  return enqueued_;
}

bool Stream::poll(uint64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  if (executed_ >= seq) {
    polls_ = 0;
    return true;
  }
  if (++polls_ >= kMaxPolls) {
    // Something is spinning on this stream: let it make progress, as a GPU would.
    polls_ = 0;
    released_ = enqueued_;
    work_cv_.notify_one();
  }
  return false;
}

void Stream::wait(uint64_t seq) {
  std::unique_lock<std::mutex> lock(mu_);
  polls_ = 0;
  if (seq > released_) {
    released_ = seq;
    work_cv_.notify_one();
  }
  done_cv_.wait(lock, [&] { return executed_ >= seq; });
}

void Stream::release_all() {
  std::lock_guard<std::mutex> lock(mu_);
  released_ = enqueued_;
  work_cv_.notify_one();
}

void Stream::worker() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_cv_.wait(lock, [&] { return !queue_.empty() && queue_.front().seq <= released_; });
    Item item = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    // After a sticky error the context is dead: queued work is dropped, as on a GPU.
    if (sticky_error() == cudaSuccess) item.work();
    item.work = nullptr;  // its captures (kernel arguments, snapshots) go now
    lock.lock();
    executed_ = item.seq;
    done_cv_.notify_all();
  }
}

Stream* resolve_stream(cudaStream_t handle) {
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  if (handle == nullptr || handle == cudaStreamLegacy || handle == cudaStreamPerThread) {
    if (r.default_stream == nullptr) {
      r.default_stream = new Stream(false, true);
      r.all.push_back(r.default_stream);
    }
    return r.default_stream;
  }
  Stream* s = reinterpret_cast<Stream*>(handle);
  return r.live.count(s) ? s : nullptr;
}

cudaStream_t create_stream(bool non_blocking) {
  Stream* s = new Stream(non_blocking, false);
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  r.live.insert(s);
  r.all.push_back(s);
  return reinterpret_cast<cudaStream_t>(s);
}

bool destroy_stream(cudaStream_t handle) {
  Registry& r = registry();
  Stream* s = reinterpret_cast<Stream*>(handle);
  {
    std::lock_guard<std::mutex> lock(r.mu);
    if (r.live.erase(s) == 0) return false;
  }
  // CUDA finishes the work already queued on a destroyed stream.
  s->release_all();
  return true;
}

void synchronize_all() {
  std::vector<Stream*> streams;
  {
    Registry& r = registry();
    std::lock_guard<std::mutex> lock(r.mu);
    streams = r.all;
  }
  for (Stream* s : streams) s->wait(s->last_enqueued());
}

}  // namespace rt
}  // namespace nm_emu
