// GoogleTest printers for model values, so that failures show addresses and
// names instead of byte dumps. Found by ADL, hence in the model namespace.
#pragma once

#include <ostream>

#include "model/ip.h"
#include "model/service_ports.h"

namespace svcproxy::model {

inline void PrintTo(const IPAddress& ip, std::ostream* os) { *os << ip.str(); }
inline void PrintTo(const CIDR& cidr, std::ostream* os) { *os << cidr.str(); }
inline void PrintTo(const EndpointAddress& endpoint, std::ostream* os) { *os << endpoint.str(); }
inline void PrintTo(const ServicePortName& name, std::ostream* os) {
  *os << name.str() << (name.family == IPFamily::V4 ? " (IPv4)" : " (IPv6)");
}

inline void PrintTo(const ServicePortState& state, std::ostream* os) {
  auto list = [os](const char* label, const auto& values) {
    *os << " " << label << "=[";
    const char* sep = "";
    for (const auto& value : values) {
      *os << sep;
      PrintTo(value, os);
      sep = ",";
    }
    *os << "]";
  };
  *os << "{";
  PrintTo(state.name, os);
  *os << " port=" << state.port << " clusterIP=" << state.cluster_ip.str() << " nodePort=" << state.node_port;
  list("externalIPs", state.external_ips);
  list("lbIPs", state.load_balancer_ips);
  list("sourceRanges", state.load_balancer_source_ranges);
  *os << " eTP=" << (state.external_traffic_policy == TrafficPolicy::Local ? "Local" : "Cluster")
      << " iTP=" << (state.internal_traffic_policy == TrafficPolicy::Local ? "Local" : "Cluster");
  if (state.affinity_timeout_seconds) *os << " affinity=" << *state.affinity_timeout_seconds;
  *os << " hcNodePort=" << state.health_check_node_port;
  list("cluster", state.cluster_endpoints);
  list("local", state.local_endpoints);
  *os << " localReady=" << state.local_ready_count << "}";
}

}  // namespace svcproxy::model
