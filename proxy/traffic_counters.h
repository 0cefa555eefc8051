// Per-service traffic counters, as the daemon reports them. The nftables
// backend reads its named counters in one netlink dump per read; /metrics,
// the /debug page and `svcproxy status` consume the snapshot. A backend
// without counters (userspace mode, --no-counters) has no TrafficCounters.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"

namespace svcproxy::proxy {

struct PacketCount {
  std::uint64_t packets = 0;
  std::uint64_t bytes = 0;
};

struct EndpointTraffic {
  std::string endpoint;  // "IP:port", an IPv6 address in brackets
  PacketCount count;     // connections/datagrams sent to this endpoint
};

struct ServicePortTraffic {
  std::string ns;
  std::string service;
  std::string port;      // the Service port's name, or its number when unnamed
  std::string protocol;  // "TCP", "UDP" or "SCTP"
  PacketCount accepted;  // sent on to an endpoint
  PacketCount rejected;  // refused because the port has no endpoints
  PacketCount dropped;   // dropped (Local policy without local endpoints)
  std::vector<EndpointTraffic> endpoints;
};

struct TrafficSnapshot {
  std::vector<ServicePortTraffic> ports;  // sorted by ns, service, port
};

class TrafficCounters {
 public:
  virtual ~TrafficCounters() = default;
  // One read of every counter; an error names what could not be read.
  virtual base::Result<TrafficSnapshot> read() = 0;
};

}  // namespace svcproxy::proxy
