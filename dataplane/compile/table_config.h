// The node config as one family's table sees it: that family's pod and
// service CIDRs, the masquerade mark, and how "from this node's pods" is
// recognised. Both the fixed objects and every port's fragment are built
// from it; it never changes for the life of a compiler (a new node config
// is a new compiler).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "dataplane/compile/parts.h"
#include "model/node_config.h"

namespace svcproxy::dataplane::detail {

struct TableConfig {
  TableConfig(IPFamily table_family, const model::NodeConfig& node_config)
      : family(table_family), node(node_config), masq_bits(uint32_t{1} << node_config.masquerade_bit) {
    for (const auto& cidr : node.cluster_cidrs)
      if (cidr.family() == family) cluster_cidrs.push_back(cidr);
    for (const auto& cidr : node.service_cidrs)
      if (cidr.family() == family) service_cidrs.push_back(cidr);
    for (const auto& cidr : node.localhost_nodeport_ranges)
      if (cidr.family() == family) localhost_range = cidr;
  }

  // The match for "from this node's pods" (negate: "not from them"), by
  // --detect-local-mode; none when nothing can be recognised (no pod CIDR
  // of this family). kube-proxy's LocalTrafficDetector.
  std::optional<ir::Match> local_match(bool negate) const {
    switch (node.local_detect) {
      case model::LocalDetect::CIDRs:
        if (cluster_cidrs.empty()) return std::nullopt;
        return ir::AddrMatch{ir::KeyField::SrcAddr, negate, std::nullopt, names::kClusterCIDRs};
      case model::LocalDetect::BridgeInterface:
        return ir::IifnameMatch{node.local_interface, false, negate};
      case model::LocalDetect::InterfaceNamePrefix:
        return ir::IifnameMatch{node.local_interface, true, negate};
    }
    return std::nullopt;
  }

  IPFamily family;
  const model::NodeConfig& node;  // owned by the compiler, which outlives its tables
  uint32_t masq_bits;
  std::vector<model::CIDR> cluster_cidrs;
  std::vector<model::CIDR> service_cidrs;
  // Localhost NodePorts on in this family: the loopback range their UDP and
  // SCTP NodePorts are refused on (TCP is the userspace relay's).
  std::optional<model::CIDR> localhost_range;
};

}  // namespace svcproxy::dataplane::detail
