// What this node is and how it proxies: the node flags shared by every
// command that compiles. Filled in and validated by proxy/ at startup.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/ip.h"

namespace svcproxy::model {

// How traffic from this node's pods is recognised (kube-proxy's
// --detect-local-mode). ClusterCIDR and NodeCIDR both come down to source
// prefixes (`cluster_cidrs`); the interface modes match the input interface.
enum class LocalDetect : uint8_t {
  CIDRs,                // ip saddr @cluster-cidrs (ClusterCIDR, NodeCIDR)
  BridgeInterface,      // iifname "<local_interface>"
  InterfaceNamePrefix,  // iifname "<local_interface>*"
};

struct NodeConfig {
  std::string node_name;
  std::string zone;                  // topology hints; empty: no zone label
  std::vector<IPAddress> node_ips;   // primary IPs, at most one per family
  // Addresses NodePorts answer on, already resolved from --nodeport-addresses
  // (default: node_ips). Loopback addresses are never included (see
  // localhost_nodeport_ranges).
  std::vector<IPAddress> nodeport_ips;
  // --nodeport-addresses included 0.0.0.0/0 (or ::/0) for a family: NodePorts
  // answer on every local address of that family ("fib daddr type local").
  bool nodeport_all_local_v4 = false;
  bool nodeport_all_local_v6 = false;
  // Localhost NodePorts (kube-proxy's KEP-6032): the loopback ranges
  // --nodeport-addresses named (`localhost`: 127.0.0.0/8 and ::1/128), each
  // covering its family's relay address (127.0.0.1, ::1), sorted. TCP
  // NodePorts answer on the relay address through a userspace relay; UDP and
  // SCTP NodePorts are rejected (and counted) on the whole range.
  std::vector<CIDR> localhost_nodeport_ranges;
  std::vector<CIDR> cluster_cidrs;   // pod CIDRs
  LocalDetect local_detect = LocalDetect::CIDRs;
  // The bridge's name, or the prefix of the pods' interface names (without
  // the '*'); validated by proxy/ (1..15 bytes, no '*'). Empty with CIDRs.
  std::string local_interface;
  std::vector<CIDR> service_cidrs;   // flags plus ServiceCIDR objects
  bool masquerade_all = false;
  // Per-service traffic counters in the ruleset (--no-counters: off).
  bool counters = true;
  uint8_t masquerade_bit = 14;

  auto operator<=>(const NodeConfig&) const = default;
};

}  // namespace svcproxy::model
