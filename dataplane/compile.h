// The compiler: a pure function from kube-proxy's per-port view of the
// cluster (model::ServicePortState) and this node's config to the nftables IR.
// No kernel, no I/O; deterministic byte for byte. See dataplane/README.md for
// the ruleset's shape and why it is shaped that way.
#pragma once

#include <string>
#include <vector>

#include "dataplane/ir.h"
#include "model/node_config.h"
#include "model/service_ports.h"

namespace svcproxy::dataplane {

struct CompileResult {
  ir::Ruleset ruleset;
  // Service ports (or addresses of them) left out because they conflict with
  // another service: one line each, naming both.
  std::vector<std::string> warnings;
};

CompileResult compile(const std::vector<model::ServicePortState>& ports, const model::NodeConfig& node);

// Names of the objects every ruleset has; trace and tests refer to them.
namespace names {
inline constexpr const char* kTable = "svcproxy";
inline constexpr const char* kServices = "services";
inline constexpr const char* kServiceIPs = "service-ips";
inline constexpr const char* kServiceNodePorts = "service-nodeports";
inline constexpr const char* kClusterIPs = "cluster-ips";
inline constexpr const char* kClusterCIDRs = "cluster-cidrs";
inline constexpr const char* kServiceCIDRs = "service-cidrs";
inline constexpr const char* kNodePortIPs = "nodeport-ips";
inline constexpr const char* kHairpin = "hairpin";
inline constexpr const char* kMarkForMasquerade = "mark-for-masquerade";
inline constexpr const char* kMasquerading = "masquerading";
}  // namespace names

// Stable per-service-port chain suffix: "<HASH8>-ns/name/proto/port".
std::string service_port_id(const model::ServicePortName& name);

}  // namespace svcproxy::dataplane
