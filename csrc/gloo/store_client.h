// Gloo's rendezvous over the package's key-value store (lib/dist/store.ts), which rank 0 serves
// on MASTER_ADDR:MASTER_PORT. Debian's libgloo ships only a FileStore (needs a shared file
// system), an in-process HashStore and a RedisStore (needs a Redis server); this client lets
// connectFullMesh exchange the ranks' TCP addresses through the store the launcher environment
// already names, so multi-node runs need neither.
//
// Wire format (shared with lib/dist/store.ts; every integer little-endian):
//   request  = u32 length | u8 command | u32 key length | key | u32 value length | value |
//              u32 timeout ms
//   response = u32 length | u8 status | u32 value length | value
// length counts the bytes after it. This client uses two commands: SET (1) stores value under
// key; GET (2) answers with the value once the key exists, TIMEOUT (status 1) after timeout ms,
// or ERROR (status 2, value = message) when the group already failed.
#ifndef NM_GLOO_STORE_CLIENT_H
#define NM_GLOO_STORE_CLIENT_H

#include <gloo/common/error.h>
#include <gloo/rendezvous/store.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace nm_gloo {

class RendezvousStore : public gloo::rendezvous::Store {
 public:
  // Connects to host:port, retrying refused connections until timeout; keys get `prefix`.
  // Throws std::runtime_error naming the address on failure.
  RendezvousStore(const std::string& host, int port, const std::string& prefix,
                  std::chrono::milliseconds timeout);
  ~RendezvousStore() override;
  RendezvousStore(const RendezvousStore&) = delete;
  RendezvousStore& operator=(const RendezvousStore&) = delete;

  void set(const std::string& key, const std::vector<char>& data) override;
  std::vector<char> get(const std::string& key) override;
  void wait(const std::vector<std::string>& keys) override;
  void wait(const std::vector<std::string>& keys, const std::chrono::milliseconds& timeout) override;

 private:
  // One request/response round trip; returns the response value, throws on TIMEOUT / ERROR.
  std::vector<char> request(uint8_t command, const std::string& key, const std::vector<char>& value,
                            std::chrono::milliseconds timeout);
  void send_all(const char* data, size_t bytes);
  void recv_all(char* data, size_t bytes);

  int fd_ = -1;
  std::string where_;  // "host:port", for messages
  std::string prefix_;
  std::chrono::milliseconds timeout_;
};

}  // namespace nm_gloo

#endif  // NM_GLOO_STORE_CLIENT_H
