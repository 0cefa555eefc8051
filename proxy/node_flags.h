// The node flags shared by every command that compiles (kube-proxy's names),
// their validation, and their resolution into a model::NodeConfig.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "model/node_config.h"
#include "model/objects.h"
#include "proxy/local_addresses.h"
#include "proxy/modes.h"

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
  bool no_counters = false;  // --no-counters: no per-service traffic counters
  std::string zone;
  // How traffic from this node's pods is told apart (kube-proxy's
  // --detect-local-mode): ClusterCIDR (from --cluster-cidr), NodeCIDR (this
  // Node's spec.podCIDRs), BridgeInterface (arrives on
  // --pod-bridge-interface) or InterfaceNamePrefix (arrives on an interface
  // whose name starts with --pod-interface-name-prefix).
  DetectLocalMode detect_local_mode = DetectLocalMode::ClusterCIDR;
  std::string bridge_interface;       // --pod-bridge-interface
  std::string interface_name_prefix;  // --pod-interface-name-prefix
};

void add_node_flags(CLI::App& app, NodeFlags& flags);

// A flag naming one of a mode enum's values (proxy/modes.h), parsed into
// `mode` as it is read; anything else is refused with CLI11's message
// listing the values ("--proxy-mode: bogus not in {nftables,userspace,auto}").
template <Mode M>
CLI::Option* add_mode_option(CLI::App& app, const std::string& name, M& mode, const std::string& help) {
  return app
      .add_option_function<std::string>(
          name, [&mode](const std::string& text) { mode = *parse_mode<M>(text); }, help)
      ->check(CLI::IsMember(mode_names<M>()));
}

// What is wrong with an interface name (prefix: a name prefix, to which nft
// adds the '*'), or "" when nothing is. Valid: what the kernel accepts
// (1..15 bytes, IFNAMSIZ - 1, a prefix 1..14 as nft's "<prefix>*" must fit
// 15; no '/', ':', whitespace or control
// characters; not "." or "..") and nft's text form keeps (no '*', '"', '\\').
std::string interface_name_problem(const std::string& name, bool prefix);

// Localhost NodePorts (KEP-6032) answer on one address per family, as
// kube-proxy's relay: 127.0.0.1 and ::1.
model::IPAddress localhost_relay_address(model::IPFamily family);
// The relay addresses `config` turns on (its localhost_nodeport_ranges'
// families), sorted.
std::vector<model::IPAddress> localhost_relay_addresses(const model::NodeConfig& config);

// The node's addresses as an offline command (rules, trace from manifests or
// a one-time list) takes them: --node-ip, else every InternalIP of this Node
// (named by --hostname-override), else none. The machine running the command
// is usually not the node, so its interfaces say nothing about the node.
// Invalid --node-ip values are left out here; resolve_node_config names them.
FixedAddresses offline_node_addresses(const NodeFlags& flags, const model::ClusterState& cluster);

// Validates the flags (throws FlagError naming the flag) and fills in
// defaults from the cluster (this Node's zone and InternalIPs, ServiceCIDR
// objects) and from `addresses`, the node's addresses: the node IPs' last
// fallback, and what --nodeport-addresses CIDRs select among. What still
// works but is likely a mistake (a CIDR that selects none of the addresses,
// `primary` without a node IP) is appended to *warnings, one line each.
model::NodeConfig resolve_node_config(const NodeFlags& flags, const model::ClusterState& cluster,
                                      const LocalAddresses& addresses, std::vector<std::string>* warnings);

}  // namespace svcproxy::proxy
