#include "store_client.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>
#include <thread>

namespace nm_gloo {
namespace {

constexpr uint8_t kSet = 1;
constexpr uint8_t kGet = 2;
constexpr uint8_t kStatusOk = 0;
constexpr uint8_t kStatusTimeout = 1;

// Extra time a read waits beyond the server-side timeout of a GET, so a slow answer is not
// mistaken for a dead server.
constexpr std::chrono::milliseconds kReadSlack{5000};

void put_u32(std::vector<char>* out, uint32_t v) {
  for (int i = 0; i < 4; i++) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

uint32_t get_u32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= static_cast<uint32_t>(static_cast<unsigned char>(p[i])) << (8 * i);
  return v;
}

std::string errno_text(int err) { return std::strerror(err); }

// A connected TCP socket to host:port, or -1 with the reason in *why.
int connect_once(const std::string& host, int port, std::string* why) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
  if (rc != 0) {
    *why = std::string("cannot resolve ") + host + ": " + ::gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      *why = errno_text(errno);
      continue;
    }
    if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) break;
    *why = errno_text(errno);
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(found);
  if (fd >= 0) {
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  return fd;
}

void set_read_timeout(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

}  // namespace

RendezvousStore::RendezvousStore(const std::string& host, int port, const std::string& prefix,
                                 std::chrono::milliseconds timeout)
    : where_(host + ":" + std::to_string(port)), prefix_(prefix), timeout_(timeout) {
  // Rank 0 starts serving before it joins, and every rank reached it already from JS; a refused
  // connection is still retried until the timeout (a restarted server, a slow accept backlog).
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string why;
  for (;;) {
    fd_ = connect_once(host, port, &why);
    if (fd_ >= 0) break;
    if (std::chrono::steady_clock::now() >= deadline) {
      throw std::runtime_error("cannot reach the rendezvous store at " + where_ + " within " +
                               std::to_string(timeout.count()) + " ms: " + why);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

RendezvousStore::~RendezvousStore() {
  if (fd_ >= 0) ::close(fd_);
}

void RendezvousStore::send_all(const char* data, size_t bytes) {
  while (bytes > 0) {
    ssize_t n = ::send(fd_, data, bytes, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      throw gloo::IoException("the rendezvous store at " + where_ + " is unreachable: " +
                              errno_text(errno));
    }
    data += n;
    bytes -= static_cast<size_t>(n);
  }
}

void RendezvousStore::recv_all(char* data, size_t bytes) {
  while (bytes > 0) {
    ssize_t n = ::recv(fd_, data, bytes, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      throw gloo::IoException("the rendezvous store at " + where_ +
                              " closed the connection (rank 0 exited?)");
    }
    if (n < 0) {
      throw gloo::IoException("no answer from the rendezvous store at " + where_ + ": " +
                              errno_text(errno));
    }
    data += n;
    bytes -= static_cast<size_t>(n);
  }
}

std::vector<char> RendezvousStore::request(uint8_t command, const std::string& key,
                                           const std::vector<char>& value,
                                           std::chrono::milliseconds timeout) {
  const std::string full_key = prefix_ + key;
  std::vector<char> body;
  body.push_back(static_cast<char>(command));
  put_u32(&body, static_cast<uint32_t>(full_key.size()));
  body.insert(body.end(), full_key.begin(), full_key.end());
  put_u32(&body, static_cast<uint32_t>(value.size()));
  body.insert(body.end(), value.begin(), value.end());
  put_u32(&body, static_cast<uint32_t>(timeout.count()));
  std::vector<char> frame;
  put_u32(&frame, static_cast<uint32_t>(body.size()));
  frame.insert(frame.end(), body.begin(), body.end());

  set_read_timeout(fd_, timeout + kReadSlack);
  send_all(frame.data(), frame.size());
  char header[4];
  recv_all(header, 4);
  const uint32_t length = get_u32(header);
  if (length < 5) throw gloo::IoException("malformed answer from the rendezvous store at " + where_);
  std::vector<char> reply(length);
  recv_all(reply.data(), length);
  const uint8_t status = static_cast<uint8_t>(reply[0]);
  const uint32_t value_len = get_u32(&reply[1]);
  if (value_len != length - 5) throw gloo::IoException("malformed answer from the rendezvous store at " + where_);
  std::vector<char> out(reply.begin() + 5, reply.end());
  if (status == kStatusOk) return out;
  if (status == kStatusTimeout) {
    throw gloo::IoException("key '" + full_key + "' did not appear in the rendezvous store at " +
                            where_ + " within " + std::to_string(timeout.count()) +
                            " ms (a rank never joined)");
  }
  throw gloo::IoException(std::string(out.begin(), out.end()));
}

void RendezvousStore::set(const std::string& key, const std::vector<char>& data) {
  request(kSet, key, data, timeout_);
}

std::vector<char> RendezvousStore::get(const std::string& key) {
  return request(kGet, key, {}, timeout_);
}

void RendezvousStore::wait(const std::vector<std::string>& keys) { wait(keys, timeout_); }

void RendezvousStore::wait(const std::vector<std::string>& keys,
                           const std::chrono::milliseconds& timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (const std::string& key : keys) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() < 1) left = std::chrono::milliseconds(1);
    request(kGet, key, {}, left);
  }
}

}  // namespace nm_gloo
