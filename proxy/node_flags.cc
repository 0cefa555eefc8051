#include "proxy/node_flags.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>

namespace svcproxy::proxy {

using model::CIDR;
using model::IPAddress;
using model::IPFamily;

void add_node_flags(CLI::App& app, NodeFlags& flags) {
  app.add_option("--hostname-override", flags.hostname_override,
                 "Name of this node (EndpointSlice nodeName); default: the hostname");
  app.add_option("--node-ip", flags.node_ips,
                 "This node's primary IPs, at most one per family (comma-separated); default: the Node object's "
                 "InternalIPs, else (run) the first address per family of this network namespace's interfaces; "
                 "rules/trace from manifests never use this machine's interfaces")
      ->delimiter(',');
  app.add_option("--nodeport-addresses", flags.nodeport_addresses,
                 "CIDRs selecting the node's addresses that accept NodePorts, and keywords: 'primary' (the node IPs, "
                 "the default), 'all' (0.0.0.0/0 and ::/0: every local address but loopback), 'localhost' "
                 "(127.0.0.0/8 and ::1/128). The node's addresses: for run, this network namespace's interfaces; for "
                 "rules/trace from manifests, --node-ip, else the Node's InternalIPs. A CIDR selecting none of them "
                 "is warned about. Loopback (e.g. primary,localhost): TCP NodePorts answer on 127.0.0.1 and ::1 "
                 "through a userspace relay (kube-proxy's KEP-6032); UDP and SCTP NodePorts there are rejected and "
                 "counted")
      ->delimiter(',');
  app.add_option("--cluster-cidr", flags.cluster_cidrs,
                 "Pod CIDRs (comma-separated): ClusterIP traffic from outside them is masqueraded")
      ->delimiter(',');
  app.add_option("--service-cidr", flags.service_cidrs,
                 "Service CIDRs (comma-separated; ServiceCIDR objects add to them): unallocated IPs are dropped")
      ->delimiter(',');
  app.add_flag("--masquerade-all", flags.masquerade_all, "Masquerade all traffic sent to service IPs");
  app.add_option("--masquerade-bit", flags.masquerade_bit, "fwmark bit marking packets to masquerade (0-31)")
      ->default_val(14);
  app.add_flag("--no-counters", flags.no_counters,
               "No per-service traffic counters in the nftables ruleset (svcproxy_service_packets_total and the "
               "others are then absent); they cost a hash lookup or two per new connection");
  add_mode_option(app, "--detect-local-mode", flags.detect_local_mode,
                  "How pod traffic is recognised: ClusterCIDR (--cluster-cidr, default), NodeCIDR (this Node's "
                  "spec.podCIDRs), BridgeInterface (--pod-bridge-interface) or InterfaceNamePrefix "
                  "(--pod-interface-name-prefix)");
  app.add_option("--pod-bridge-interface", flags.bridge_interface,
                 "--detect-local-mode BridgeInterface: the bridge the node's pods are attached to (e.g. cbr0)");
  app.add_option("--pod-interface-name-prefix", flags.interface_name_prefix,
                 "--detect-local-mode InterfaceNamePrefix: the prefix of the node's pod interfaces' names (e.g. veth)");
  app.add_option("--zone", flags.zone,
                 "This node's zone for topology hints; default: the Node's topology.kubernetes.io/zone label");
}

namespace {

std::vector<CIDR> parse_cidrs(const char* flag, const std::vector<std::string>& values) {
  std::vector<CIDR> out;
  for (const auto& v : values) {
    if (v.empty()) continue;
    auto cidr = CIDR::parse(v);
    if (!cidr) throw FlagError(std::string(flag) + ": invalid CIDR \"" + v + "\"");
    out.push_back(*cidr);
  }
  return out;
}

// --hostname-override, else the hostname; lower-cased as kube-proxy does.
std::string this_node_name(const NodeFlags& flags) {
  std::string name = flags.hostname_override;
  if (name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    name = host;
  }
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return name;
}

std::string join_addresses(const std::vector<IPAddress>& ips) {
  std::string out;
  for (const auto& ip : ips) out += (out.empty() ? "" : ", ") + ip.str();
  return out;
}

// --nodeport-addresses' keywords, as kube-proxy 1.37 spells them: `all`
// (every local address) and `localhost` (the loopback ranges) expand to
// CIDRs; `primary` stays a keyword.
std::vector<std::string> expand_nodeport_keywords(const std::vector<std::string>& values) {
  std::vector<std::string> out;
  for (const auto& v : values) {
    if (v == "all") {
      out.insert(out.end(), {"0.0.0.0/0", "::/0"});
    } else if (v == "localhost") {
      out.insert(out.end(), {"127.0.0.0/8", "::1/128"});
    } else if (!v.empty()) {
      out.push_back(v);
    }
  }
  return out;
}

// A CIDR that names loopback explicitly (not /0: `all` never does, as in
// kube-proxy) and covers its family's relay address turns localhost
// NodePorts on: returns the loopback range it selects.
std::optional<CIDR> localhost_range(const CIDR& cidr) {
  if (cidr.prefix == 0) return std::nullopt;
  const auto relay = localhost_relay_address(cidr.family());
  if (!cidr.contains(relay)) return std::nullopt;
  const CIDR loopback = *CIDR::parse(cidr.family() == IPFamily::V4 ? "127.0.0.0/8" : "::1/128");
  return cidr.prefix >= loopback.prefix ? cidr : loopback;
}

// --nodeport-addresses: `primary` (the default) takes the node IPs; a CIDR
// takes the node's addresses it contains (kube-proxy's
// NodePortAddresses.GetNodeIPs), except /0, which means every local address
// of its family ("fib daddr type local", loopback excluded). A CIDR covering
// 127.0.0.1 or ::1 turns localhost NodePorts on (KEP-6032); other loopback
// addresses never answer. A CIDR that selects no usable address is a warning
// naming it: its NodePorts would silently answer nowhere.
void resolve_nodeport_addresses(const NodeFlags& flags, const LocalAddresses& addresses, model::NodeConfig& config,
                                std::vector<std::string>& warnings) {
  const auto values = expand_nodeport_keywords(flags.nodeport_addresses);
  bool primary = values.empty();
  std::vector<CIDR> cidrs;
  for (const auto& v : values) {
    if (v == "primary") {
      primary = true;
      continue;
    }
    auto cidr = CIDR::parse(v);
    if (!cidr)
      throw FlagError("--nodeport-addresses: invalid CIDR \"" + v + "\" (want CIDRs, 'primary', 'localhost' or 'all')");
    if (std::find(cidrs.begin(), cidrs.end(), *cidr) == cidrs.end()) cidrs.push_back(*cidr);
  }
  if (primary) {
    config.nodeport_ips = config.node_ips;
    if (config.node_ips.empty())
      warnings.push_back("--nodeport-addresses primary: this node has no node IP (" + addresses.origin() +
                         "), so no NodePort answers on a primary IP");
  }
  const auto candidates = addresses.list();
  for (const auto& cidr : cidrs) {
    if (cidr.prefix == 0) {
      (cidr.family() == IPFamily::V4 ? config.nodeport_all_local_v4 : config.nodeport_all_local_v6) = true;
      continue;
    }
    const auto localhost = localhost_range(cidr);
    if (localhost) config.localhost_nodeport_ranges.push_back(*localhost);
    bool selected = false, loopback = false;
    for (const auto& ip : candidates) {
      if (!cidr.contains(ip)) continue;
      (ip.is_loopback() ? loopback : selected) = true;
      if (!ip.is_loopback()) config.nodeport_ips.push_back(ip);
    }
    if (selected || localhost) continue;
    warnings.push_back(loopback ? "--nodeport-addresses " + cidr.str() +
                                      ": selects only loopback addresses other than 127.0.0.1 and ::1, where "
                                      "NodePorts are not served"
                                : "--nodeport-addresses " + cidr.str() + ": selects none of the node's addresses (" +
                                      addresses.origin() + "), so no NodePort answers on an address from it");
  }
  std::erase_if(config.nodeport_ips, [](const IPAddress& ip) { return ip.is_loopback(); });
  std::sort(config.nodeport_ips.begin(), config.nodeport_ips.end());
  config.nodeport_ips.erase(std::unique(config.nodeport_ips.begin(), config.nodeport_ips.end()),
                            config.nodeport_ips.end());
  // One range per family: the widest (127.0.0.1/32 inside `localhost` adds
  // nothing).
  auto& ranges = config.localhost_nodeport_ranges;
  std::sort(ranges.begin(), ranges.end(), [](const CIDR& a, const CIDR& b) {
    return a.family() != b.family() ? a.family() < b.family() : a.prefix < b.prefix;
  });
  ranges.erase(
      std::unique(ranges.begin(), ranges.end(), [](const CIDR& a, const CIDR& b) { return a.family() == b.family(); }),
      ranges.end());
}

// --detect-local-mode: what in `config` tells this node's pods apart.
void apply_detect_local_mode(const NodeFlags& flags, const model::Node* node, model::NodeConfig& config) {
  switch (flags.detect_local_mode) {
    case DetectLocalMode::ClusterCIDR:
      break;
    case DetectLocalMode::NodeCIDR:
      // Only this node's pods count as local; until the Node has podCIDRs,
      // none do (kube-proxy waits for them; the next sync picks them up).
      config.cluster_cidrs = node ? node->pod_cidrs : std::vector<CIDR>{};
      break;
    case DetectLocalMode::BridgeInterface:
      if (flags.bridge_interface.empty())
        throw FlagError(
            "--detect-local-mode BridgeInterface: needs --pod-bridge-interface (the pods' bridge, e.g. cbr0)");
      if (auto problem = interface_name_problem(flags.bridge_interface, false); !problem.empty())
        throw FlagError("--pod-bridge-interface: " + problem);
      config.local_detect = model::LocalDetect::BridgeInterface;
      config.local_interface = flags.bridge_interface;
      break;
    case DetectLocalMode::InterfaceNamePrefix:
      if (flags.interface_name_prefix.empty())
        throw FlagError(
            "--detect-local-mode InterfaceNamePrefix: needs --pod-interface-name-prefix (the prefix of the pods' "
            "interface names, e.g. veth)");
      if (auto problem = interface_name_problem(flags.interface_name_prefix, true); !problem.empty())
        throw FlagError("--pod-interface-name-prefix: " + problem);
      config.local_detect = model::LocalDetect::InterfaceNamePrefix;
      config.local_interface = flags.interface_name_prefix;
      break;
  }
}

}  // namespace

IPAddress localhost_relay_address(IPFamily family) {
  return *IPAddress::parse(family == IPFamily::V4 ? "127.0.0.1" : "::1");
}

std::vector<IPAddress> localhost_relay_addresses(const model::NodeConfig& config) {
  std::vector<IPAddress> out;
  for (const auto& range : config.localhost_nodeport_ranges) out.push_back(localhost_relay_address(range.family()));
  return out;
}

FixedAddresses offline_node_addresses(const NodeFlags& flags, const model::ClusterState& cluster) {
  std::vector<IPAddress> ips;
  for (const auto& text : flags.node_ips)
    if (auto ip = IPAddress::parse(text)) ips.push_back(*ip);
  if (!ips.empty()) return FixedAddresses(ips, "--node-ip " + join_addresses(ips));
  const std::string name = this_node_name(flags);
  for (const auto& node : cluster.nodes)
    if (node.name == name && !node.internal_ips.empty())
      return FixedAddresses(node.internal_ips, "the InternalIPs of Node " + name + ": " +
                                                   join_addresses(node.internal_ips));
  return FixedAddresses({}, "no --node-ip, and no Node " + name + " with an InternalIP");
}

std::string interface_name_problem(const std::string& name, bool prefix) {
  const std::string what = prefix ? "interface name prefix" : "interface name";
  if (name.empty()) return "empty " + what;
  // IFNAMSIZ - 1 bytes; a prefix one less: nft's text form takes 15
  // characters with its '*'.
  const size_t max = prefix ? 14 : 15;
  if (name.size() > max)
    return what + " \"" + name + "\" is " + std::to_string(name.size()) + " bytes (at most " + std::to_string(max) +
           ")";
  if (!prefix && (name == "." || name == "..")) return "\"" + name + "\" is not an interface name";
  for (unsigned char c : name) {
    if (c < 0x20 || c == 0x7f) return what + " \"" + name + "\" contains a control character";
    if (c == '/' || c == ':' || c == '*' || c == '"' || c == '\\' || std::isspace(c))
      return what + " \"" + name + "\" contains '" + static_cast<char>(c) + "'";
  }
  return {};
}

model::NodeConfig resolve_node_config(const NodeFlags& flags, const model::ClusterState& cluster,
                                      const LocalAddresses& addresses, std::vector<std::string>* warnings) {
  model::NodeConfig config;
  config.node_name = this_node_name(flags);

  const model::Node* node = nullptr;
  for (const auto& n : cluster.nodes)
    if (n.name == config.node_name) node = &n;

  // Node IPs: flags, else the Node's InternalIPs, else the node's first
  // address per family.
  bool have[2] = {false, false};
  for (const auto& text : flags.node_ips) {
    if (text.empty()) continue;
    auto ip = IPAddress::parse(text);
    if (!ip) throw FlagError("--node-ip: invalid IP address \"" + text + "\"");
    auto& seen = have[ip->family == IPFamily::V4 ? 0 : 1];
    if (seen) throw FlagError("--node-ip: more than one " + std::string(model::to_string(ip->family)) + " address");
    seen = true;
    config.node_ips.push_back(*ip);
  }
  if (config.node_ips.empty() && node) {
    for (const auto& ip : node->internal_ips) {
      auto& seen = have[ip.family == IPFamily::V4 ? 0 : 1];
      if (!seen) config.node_ips.push_back(ip);
      seen = true;
    }
  }
  if (config.node_ips.empty()) {
    for (const auto& ip : addresses.list()) {
      if (ip.is_loopback() || ip.is_unspecified()) continue;
      auto& seen = have[ip.family == IPFamily::V4 ? 0 : 1];
      if (!seen) config.node_ips.push_back(ip);
      seen = true;
    }
  }
  std::sort(config.node_ips.begin(), config.node_ips.end());

  std::vector<std::string> ignored;
  resolve_nodeport_addresses(flags, addresses, config, warnings ? *warnings : ignored);

  config.cluster_cidrs = parse_cidrs("--cluster-cidr", flags.cluster_cidrs);
  apply_detect_local_mode(flags, node, config);
  config.service_cidrs = parse_cidrs("--service-cidr", flags.service_cidrs);
  for (const auto& sc : cluster.service_cidrs)
    for (const auto& cidr : sc.cidrs) config.service_cidrs.push_back(cidr);
  std::sort(config.service_cidrs.begin(), config.service_cidrs.end());
  config.service_cidrs.erase(std::unique(config.service_cidrs.begin(), config.service_cidrs.end()),
                             config.service_cidrs.end());

  config.masquerade_all = flags.masquerade_all;
  config.counters = !flags.no_counters;
  if (flags.masquerade_bit < 0 || flags.masquerade_bit > 31)
    throw FlagError("--masquerade-bit: must be between 0 and 31, got " + std::to_string(flags.masquerade_bit));
  config.masquerade_bit = static_cast<uint8_t>(flags.masquerade_bit);
  config.zone = !flags.zone.empty() ? flags.zone : (node ? node->zone : std::string());
  return config;
}

}  // namespace svcproxy::proxy
