// The userspace L4 proxy (kube-proxy's old userspace mode, rebuilt): one
// Boost.Asio io_context per worker thread, every worker accepting from one
// shared TCP listening socket per (address, port) and reading its own
// SO_REUSEPORT UDP socket, and a connection or UDP flow living on the
// worker that accepted it for its whole life.
//
// update() publishes a new immutable Routes snapshot (atomic shared_ptr),
// opens/closes listeners for the difference (a port listens only while it
// has endpoints: without, the kernel refuses its clients), and returns only
// after every worker has passed a barrier: from then on no new connection
// or flow is sent to an endpoint the update removed, and a listener the
// update closed is closed on every worker. Established TCP connections to a
// removed endpoint are left to finish, or, with a drain timeout, reset that
// long after the update unless the endpoint came back meanwhile.
//
// The client's address is not preserved: upstream sees the node's address
// (this is a proxy, not NAT). Listeners bind with IP_FREEBIND so the order
// of "address on svcproxy0" vs "listen" does not matter.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "model/service_ports.h"
#include "userspace/endpoint_table.h"

namespace svcproxy::userspace {

struct ProxierOptions {
  unsigned workers = 0;  // 0: one per CPU
  NodePortAddresses nodeports;
  size_t max_connections = 0;  // TCP connections at once; 0: unlimited
  std::chrono::milliseconds udp_timeout{250};
  // An endpoint that refused (or timed out) is skipped this long.
  std::chrono::milliseconds ejection_backoff{5000};
  // Connect attempts per client connection, the first timing out after
  // connect_timeout, each next one after twice the previous.
  unsigned connect_attempts = 4;
  std::chrono::milliseconds connect_timeout{250};
  // Bytes buffered per direction (a pipe's capacity with splice, a buffer
  // with copy); a full buffer stops reading from the sender.
  size_t buffer_bytes = 256 * 1024;
  bool use_splice = true;
  // After one direction of a TCP connection ended (FIN), the other must end
  // within this, else both sides are reset.
  std::chrono::milliseconds half_close_timeout{5000};
  // accept() failing with EMFILE/ENFILE/ENOBUFS/ENOMEM pauses that
  // listener this long; existing connections keep being served.
  std::chrono::milliseconds accept_backoff{100};
  // TCP connections to an endpoint an update removed (or made unusable:
  // unready, its service port gone) are reset this long after that update
  // if the endpoint is still not usable then. 0: left to finish.
  std::chrono::milliseconds drain_timeout{0};
  // Called (from a worker thread) once per event worth a log line: an
  // endpoint entering back-off, a listener pausing accept(). key=value text.
  std::function<void(const std::string&)> on_event;
};

struct ProxierStats {
  uint64_t accepted = 0;               // TCP connections accepted
  uint64_t proxied = 0;                // ... connected to an endpoint
  uint64_t active = 0;                 // ... open now
  uint64_t rejected_no_endpoints = 0;  // reset: every attempt failed, or the last
                                       // endpoint left between accept and connect
                                       // (no endpoints: no listener, the kernel
                                       // refuses the SYN)
  uint64_t rejected_source_range = 0;  // reset: loadBalancerSourceRanges
  uint64_t rejected_limit = 0;         // reset: --userspace-max-connections
  uint64_t connect_failures = 0;       // attempts that failed (refused/timeout)
  uint64_t retries = 0;                // attempts after the first
  uint64_t ejections = 0;              // endpoints put in back-off
  uint64_t accept_backoffs = 0;        // accept() paused on fd exhaustion
  uint64_t drained = 0;                // reset: endpoint removed drain_timeout ago
  uint64_t spliced_connections = 0;    // bulk (>= 64 KiB one way) relayed with splice(2)
  uint64_t copied_connections = 0;     // bulk relayed by copy (splice off or no pipe)
  uint64_t udp_flows = 0;              // UDP flows created
  uint64_t udp_active_flows = 0;
  uint64_t udp_datagrams_in = 0;       // client -> endpoint
  uint64_t udp_datagrams_out = 0;      // endpoint -> client
  uint64_t udp_dropped = 0;            // source range, or no socket / send failed
                                       // (no endpoints: no listener, the kernel
                                       // answers ICMP port unreachable)
  uint64_t listeners = 0;              // listeners (per worker: TCP ones share a socket)
  uint64_t listen_errors = 0;          // listeners that could not be opened
  uint64_t updates = 0;
  std::chrono::microseconds last_update_duration{0};
};

class UserspaceProxier {
 public:
  explicit UserspaceProxier(ProxierOptions options);
  ~UserspaceProxier();  // stop()
  UserspaceProxier(const UserspaceProxier&) = delete;
  UserspaceProxier& operator=(const UserspaceProxier&) = delete;

  // Applies the service ports (the whole set). Returns warnings (listeners
  // that could not be opened, conflicting claims). Not thread-safe against
  // itself: call from one control thread.
  std::vector<std::string> update(const std::vector<model::ServicePortState>& ports);
  // Closes every listener and connection and joins the workers. Idempotent.
  void stop();
  ProxierStats stats() const;
  unsigned workers() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace svcproxy::userspace
