// What this node is and how it proxies: the node flags shared by every
// command that compiles. Filled in and validated by proxy/ at startup.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/ip.h"

namespace svcproxy::model {

struct NodeConfig {
  std::string node_name;
  std::string zone;                  // topology hints; empty: none
  std::vector<IPAddress> node_ips;   // primary IPs, at most one per family
  // Addresses NodePorts answer on, already resolved from --nodeport-addresses
  // (default: node_ips). Loopback addresses are never included.
  std::vector<IPAddress> nodeport_ips;
  // --nodeport-addresses included 0.0.0.0/0 (or ::/0) for a family: NodePorts
  // answer on every local address of that family ("fib daddr type local").
  bool nodeport_all_local_v4 = false;
  bool nodeport_all_local_v6 = false;
  std::vector<CIDR> cluster_cidrs;   // pod CIDRs
  std::vector<CIDR> service_cidrs;   // flags plus ServiceCIDR objects
  bool masquerade_all = false;
  uint8_t masquerade_bit = 14;

  auto operator<=>(const NodeConfig&) const = default;
};

}  // namespace svcproxy::model
