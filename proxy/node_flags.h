// The node flags shared by every command that compiles (kube-proxy's names),
// their validation, and their resolution into a model::NodeConfig.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "model/node_config.h"
#include "model/objects.h"

namespace svcproxy::proxy {

// A bad flag value: the message names the flag. Commands exit 2 on it.
struct FlagError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct NodeFlags {
  std::string hostname_override;
  std::vector<std::string> node_ips;
  std::vector<std::string> nodeport_addresses;
  std::vector<std::string> cluster_cidrs;
  std::vector<std::string> service_cidrs;
  bool masquerade_all = false;
  int masquerade_bit = 14;
  std::string zone;
  // How traffic from this node's pods is told apart (kube-proxy's
  // --detect-local-mode): ClusterCIDR (from --cluster-cidr), NodeCIDR (this
  // Node's spec.podCIDRs), BridgeInterface (arrives on
  // --pod-bridge-interface) or InterfaceNamePrefix (arrives on an interface
  // whose name starts with --pod-interface-name-prefix).
  std::string detect_local_mode = "ClusterCIDR";
  std::string bridge_interface;       // --pod-bridge-interface
  std::string interface_name_prefix;  // --pod-interface-name-prefix
};

void add_node_flags(CLI::App& app, NodeFlags& flags);

// What is wrong with an interface name (prefix: a name prefix, to which nft
// adds the '*'), or "" when nothing is. Valid: what the kernel accepts
// (1..15 bytes, IFNAMSIZ - 1, a prefix 1..14 as nft's "<prefix>*" must fit
// 15; no '/', ':', whitespace or control
// characters; not "." or "..") and nft's text form keeps (no '*', '"', '\\').
std::string interface_name_problem(const std::string& name, bool prefix);

// This machine's (this network namespace's) interface addresses.
std::vector<model::IPAddress> interface_addresses();

// Validates the flags (throws FlagError naming the flag) and fills in
// defaults from the cluster (this Node's zone and InternalIPs, ServiceCIDR
// objects) and from `local_addresses` (detection and --nodeport-addresses).
model::NodeConfig resolve_node_config(const NodeFlags& flags, const model::ClusterState& cluster,
                                      const std::vector<model::IPAddress>& local_addresses);

}  // namespace svcproxy::proxy
