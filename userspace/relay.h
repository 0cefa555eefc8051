// Moves a TCP connection's bytes both ways between two connected sockets.
// Each direction is a Pump: copied through a small buffer at first (short
// exchanges never pay for a pipe), then, once it has moved 64 KiB,
// splice(2) socket -> pipe -> socket (the payload never enters userspace),
// or read/write through a full-size buffer when a pipe cannot be had
// (descriptors exhausted) or the kernel refuses to splice. A pump
// holds at most `buffer_bytes` in flight and reads nothing more until that
// is written: a slow receiver slows the sender (backpressure). EOF is passed
// on as a half-close (shutdown SHUT_WR); an error resets both sides. Once
// one direction has ended, the other gets `half_close_timeout` to end too,
// then both are reset: a peer that never closes its half (many servers wait
// for a full close that a FIN cannot tell from a half-close) must not pin
// the connection's descriptors forever.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace svcproxy::userspace {

// What owns the relay: kept alive by every pending operation.
class RelayOwner {
 public:
  virtual ~RelayOwner() = default;
  virtual std::shared_ptr<void> keep_alive() = 0;
};

// Counted once per relay whose traffic became bulk (see Pump): spliced, or
// copied because splicing was off or no pipe could be had.
struct BulkCounters {
  std::atomic<uint64_t>* spliced = nullptr;
  std::atomic<uint64_t>* copied = nullptr;
};

class Relay {
 public:
  using Socket = boost::asio::ip::tcp::socket;
  Relay(RelayOwner& owner, Socket& client, Socket& upstream, size_t buffer_bytes, bool use_splice,
        std::chrono::milliseconds half_close_timeout, BulkCounters counters = {});
  ~Relay();
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // `first` holds client bytes already read (the connection's first
  // chunk), of which [sent, first.size()) are still to be sent upstream.
  void start(std::vector<char> first = {}, size_t sent = 0);
  // Resets both sides (SO_LINGER 0) and stops relaying. Idempotent.
  void abort();

 private:
  class Pump;
  void pump_finished();
  void note_bulk(bool spliced);

  RelayOwner& owner_;
  BulkCounters counters_;
  bool counted_bulk_ = false;
  Socket& client_;
  Socket& upstream_;
  std::unique_ptr<Pump> up_;    // client -> upstream
  std::unique_ptr<Pump> down_;  // upstream -> client
  boost::asio::steady_timer half_close_timer_;
  std::chrono::milliseconds half_close_timeout_;
  int finished_ = 0;
  bool aborted_ = false;
};

}  // namespace svcproxy::userspace
