// The live handles of one kind (streams, events, memory pools, library handles, communicators):
// every stand-in checks a handle against its registry before using it, as the real libraries
// refuse a handle that was destroyed or never made. Registries are made once and never destroyed
// (worker threads may still look at them while the process exits).
#ifndef NM_EMU_HANDLE_REGISTRY_H
#define NM_EMU_HANDLE_REGISTRY_H

#include <mutex>
#include <set>
#include <vector>

namespace nm_emu {

template <typename Handle>
class HandleRegistry {
 public:
  void add(Handle h) {
    std::lock_guard<std::mutex> lock(mu_);
    live_.insert(h);
  }
  // False when h is not live.
  bool remove(Handle h) {
    std::lock_guard<std::mutex> lock(mu_);
    return live_.erase(h) != 0;
  }
  bool contains(Handle h) const {
    std::lock_guard<std::mutex> lock(mu_);
    return h != nullptr && live_.count(h) != 0;
  }
  std::vector<Handle> snapshot() const {
    std::lock_guard<std::mutex> lock(mu_);
    return std::vector<Handle>(live_.begin(), live_.end());
  }

 private:
  mutable std::mutex mu_;
  std::set<Handle> live_;
};

// The registry of one handle type (one per type in the process).
template <typename Handle>
HandleRegistry<Handle>& registry_of() {
  static auto* registry = new HandleRegistry<Handle>();
  return *registry;
}

}  // namespace nm_emu

#endif  // NM_EMU_HANDLE_REGISTRY_H
