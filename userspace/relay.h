// Moves a TCP connection's bytes both ways between two connected sockets.
// Each direction is a Pump: splice(2) socket -> pipe -> socket (the payload
// never enters userspace), or read/write through a buffer when a pipe cannot
// be had (descriptors exhausted) or the kernel refuses to splice. A pump
// holds at most `buffer_bytes` in flight and reads nothing more until that
// is written: a slow receiver slows the sender (backpressure). EOF is passed
// on as a half-close (shutdown SHUT_WR); an error resets both sides.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <cstddef>
#include <memory>

namespace svcproxy::userspace {

// What owns the relay: kept alive by every pending operation.
class RelayOwner {
 public:
  virtual ~RelayOwner() = default;
  virtual std::shared_ptr<void> keep_alive() = 0;
};

class Relay {
 public:
  using Socket = boost::asio::ip::tcp::socket;
  Relay(RelayOwner& owner, Socket& client, Socket& upstream, size_t buffer_bytes, bool use_splice);
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  void start();
  bool spliced() const;  // both directions use splice

 private:
  class Pump;
  void pump_finished();
  void abort();

  RelayOwner& owner_;
  Socket& client_;
  Socket& upstream_;
  std::unique_ptr<Pump> up_;    // client -> upstream
  std::unique_ptr<Pump> down_;  // upstream -> client
  int finished_ = 0;
  bool aborted_ = false;
};

}  // namespace svcproxy::userspace
