// `loadtest --attribute conntrack`: which endpoint a connection reached, read
// from this network namespace's conntrack entry of the connection (its reply
// source is the DNAT target), so the backend need not say who it is. Works
// where the command runs on the node that does the DNAT.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/conntrack.h"
#include "loadtest/engine.h"

namespace svcproxy::proxy {

class ConntrackAttributor final : public loadtest::EndpointAttributor {
 public:
  // Opens one netlink socket now, so that a missing permission or module
  // fails at start (throws dataplane::ConntrackError), not per request.
  // `give_up_after` (--attribute auto): after that many lookups in a row
  // found no DNATed entry and none ever did, this namespace does not do the
  // DNAT (the client is not on the node): later calls answer nullopt
  // without a round trip, which cost a quarter of connect mode's rate.
  // 0: never give up (--attribute conntrack).
  explicit ConntrackAttributor(uint64_t give_up_after = 0);

  // Thread-safe: each call borrows a socket of its own from a small pool
  // (a lookup is one netlink round trip; the workers never wait on each
  // other's), grown to the number of threads calling at once.
  std::optional<std::string> endpoint_of(const sockaddr_storage& local, const sockaddr_storage& remote,
                                         int protocol) override;

 private:
  std::unique_ptr<dataplane::ConntrackLookup> borrow();
  void give_back(std::unique_ptr<dataplane::ConntrackLookup> lookup);

  void note_miss();

  std::mutex mutex_;
  std::vector<std::unique_ptr<dataplane::ConntrackLookup>> idle_;
  const uint64_t give_up_after_;
  std::atomic<uint64_t> misses_{0};
  std::atomic<bool> hit_{false};
  std::atomic<bool> gave_up_{false};
};

// The address and port of a socket address (IPv4 or IPv6; an IPv4-mapped
// IPv6 address is taken as the IPv4 address it maps).
std::optional<model::EndpointAddress> endpoint_of_sockaddr(const sockaddr_storage& address);

}  // namespace svcproxy::proxy
