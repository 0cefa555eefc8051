#include "dataplane/compile.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

namespace svcproxy::dataplane {
namespace {

using model::EndpointAddress;
using model::IPAddress;
using model::IPFamily;
using model::ServicePortState;
using model::TrafficPolicy;

constexpr int kPriorityDstNat = -100;
constexpr int kPrioritySrcNat = 100;

// How a DNAT map finds the service port from the packet: by destination
// address (ClusterIP, external IP, LB IP) or, for NodePorts, by port alone.
enum class KeyKind { Address, NodePort };
// Which endpoint list a map holds for a key. Only eTP=Local services need a
// second list for the same key: pod- and node-originated traffic to their
// external addresses short-circuits to all cluster endpoints.
enum class Flavour { Main, Shortcut };

std::string dnat_chain_name(KeyKind kind, Flavour flavour, size_t n) {
  std::string name = "dnat-";
  if (kind == KeyKind::NodePort) name += "nodeport-";
  if (flavour == Flavour::Shortcut) name += "shortcut-";
  return name + std::to_string(n);
}

// nft identifiers allow letters, digits and / - _ . ; IPv6 colons are not.
std::string sanitize(std::string text) {
  for (char& c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '/' || c == '-' || c == '_' || c == '.';
    if (!ok) c = '.';
  }
  return text;
}

std::string endpoint_suffix(const EndpointAddress& ep) {
  return sanitize(ep.ip.str()) + "/" + std::to_string(ep.port);
}

ir::Rule rule(std::vector<ir::Match> matches, std::vector<ir::Statement> statements) {
  return ir::Rule{std::move(matches), std::move(statements), {}};
}

// Reject for one service port: a TCP reset for TCP (not rate-limited like
// ICMP errors), ICMP port unreachable otherwise.
ir::Rule reject_rule(model::Protocol protocol) {
  if (protocol == model::Protocol::TCP) return rule({ir::ProtoMatch{protocol}}, {ir::RejectStmt{true}});
  return rule({}, {ir::RejectStmt{false}});
}

ir::Verdict goto_chain(std::string chain) { return {ir::VerdictKind::Goto, std::move(chain)}; }
ir::Verdict jump_chain(std::string chain) { return {ir::VerdictKind::Jump, std::move(chain)}; }

// Sorts through an index, then applies the permutation in place: elements
// are large and a ruleset has 100k+, so each moves at most once and no second
// array is allocated.
void sort_elements(std::vector<ir::Element>& elements) {
  if (std::is_sorted(elements.begin(), elements.end())) return;
  std::vector<uint32_t> order(elements.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return elements[a] < elements[b]; });
  // order[i] is the index of the element that belongs at i; follow cycles.
  for (uint32_t start = 0; start < order.size(); ++start) {
    if (order[start] == start) continue;
    ir::Element held = std::move(elements[start]);
    uint32_t i = start;
    while (order[i] != start) {
      const uint32_t next = order[i];
      elements[i] = std::move(elements[next]);
      order[i] = i;
      i = next;
    }
    elements[i] = std::move(held);
    order[i] = i;
  }
}

// Builds one family's table. Objects are collected in ordered maps keyed by
// name so the output is sorted without a separate pass.
class TableBuilder {
 public:
  TableBuilder(IPFamily family, const model::NodeConfig& node, std::vector<std::string>& warnings)
      : family_(family), node_(node), warnings_(warnings) {
    for (const auto& cidr : node.cluster_cidrs)
      if (cidr.family() == family) cluster_cidrs_.push_back(cidr);
    for (const auto& cidr : node.service_cidrs)
      if (cidr.family() == family) service_cidrs_.push_back(cidr);
    masq_bits_ = uint32_t{1} << node.masquerade_bit;
  }

  // Reserves DNAT map storage for these ports up front: the maps hold most of
  // a ruleset's elements, and growing them by doubling touches (and page-
  // faults) three times the memory. An upper bound is fine.
  void reserve(const std::vector<ServicePortState>& ports);
  void add(const ServicePortState& sp);
  ir::Table finish();

 private:
  bool claim_address(const IPAddress& ip, const ServicePortState& sp);
  bool claim_node_port(const ServicePortState& sp);
  // Returns the chain that picks one endpoint of `list` for this key.
  std::string picker(const ServicePortState& sp, const std::string& id,
                     const std::vector<EndpointAddress>& list, KeyKind kind, Flavour flavour,
                     const ir::ValueList& key, bool local);
  ir::Rule mark_for_masquerade(std::vector<ir::Match> matches = {}) {
    return rule(std::move(matches), {jump_chain(names::kMarkForMasquerade)});
  }
  void add_chain(std::string name, std::vector<ir::Rule> rules) {
    chains_[name] = ir::Chain{name, std::nullopt, std::move(rules)};
  }
  std::vector<ir::Rule> external_rules(const ServicePortState& sp, const std::string& id, KeyKind kind,
                                       const ir::ValueList& key);

  IPFamily family_;
  const model::NodeConfig& node_;
  std::vector<std::string>& warnings_;
  std::vector<model::CIDR> cluster_cidrs_;
  std::vector<model::CIDR> service_cidrs_;
  uint32_t masq_bits_ = 0;

  std::map<std::string, ir::Chain> chains_;
  std::map<std::string, ir::Set> sets_;
  // DNAT maps by (kind, flavour, N) -> elements.
  std::map<std::tuple<KeyKind, Flavour, size_t>, std::vector<ir::Element>> dnat_maps_;
  std::vector<ir::Element> service_ip_elements_;
  std::vector<ir::Element> nodeport_elements_;
  std::set<IPAddress> cluster_ips_;
  std::vector<IPAddress> hairpin_;  // sorted and deduplicated in finish()
  // Conflict detection: who owns an address:proto:port or a NodePort.
  std::map<std::tuple<IPAddress, model::Protocol, uint16_t>, std::string> address_owner_;
  std::map<std::pair<model::Protocol, uint16_t>, std::string> nodeport_owner_;
};

void TableBuilder::reserve(const std::vector<ServicePortState>& ports) {
  std::map<std::tuple<KeyKind, Flavour, size_t>, size_t> counts;
  for (const auto& sp : ports) {
    if (sp.name.family != family_ || sp.affinity_timeout_seconds || sp.cluster_endpoints.empty()) continue;
    const size_t nc = sp.cluster_endpoints.size(), nl = sp.local_endpoints.size();
    const size_t ni = sp.internal_endpoints().size();
    if (ni) counts[{KeyKind::Address, Flavour::Main, ni}] += ni;
    const size_t external = sp.external_ips.size() + sp.load_balancer_ips.size();
    for (auto [kind, addresses] : {std::pair{KeyKind::Address, external},
                                   std::pair{KeyKind::NodePort, size_t{sp.node_port != 0}}}) {
      if (!addresses) continue;
      if (sp.external_traffic_policy == TrafficPolicy::Cluster) {
        counts[{kind, Flavour::Main, nc}] += addresses * nc;
      } else {
        counts[{kind, Flavour::Shortcut, nc}] += addresses * nc;
        if (nl) counts[{kind, Flavour::Main, nl}] += addresses * nl;
      }
    }
  }
  for (const auto& [spec, count] : counts) dnat_maps_[spec].reserve(count);
  service_ip_elements_.reserve(ports.size());
}

bool TableBuilder::claim_address(const IPAddress& ip, const ServicePortState& sp) {
  auto [it, inserted] =
      address_owner_.try_emplace({ip, sp.name.protocol, sp.port}, sp.name.str());
  if (!inserted && it->second != sp.name.str()) {
    warnings_.push_back("service port " + sp.name.str() + ": " + model::format_endpoint(ip, sp.port) + "/" +
                        std::string(model::to_lower(sp.name.protocol)) + " is already served by " +
                        it->second + "; address skipped");
    return false;
  }
  return inserted;
}

bool TableBuilder::claim_node_port(const ServicePortState& sp) {
  auto [it, inserted] = nodeport_owner_.try_emplace({sp.name.protocol, sp.node_port}, sp.name.str());
  if (!inserted) {
    warnings_.push_back("service port " + sp.name.str() + ": nodePort " + std::to_string(sp.node_port) + "/" +
                        std::string(model::to_lower(sp.name.protocol)) + " is already used by " +
                        it->second + "; nodePort skipped");
  }
  return inserted;
}

std::string TableBuilder::picker(const ServicePortState& sp, const std::string& id,
                                 const std::vector<EndpointAddress>& list, KeyKind kind, Flavour flavour,
                                 const ir::ValueList& key, bool local) {
  if (sp.affinity_timeout_seconds) {
    // ClientIP affinity: a dynamic set per endpoint remembers its clients
    // (kube-proxy's shape). Costs kernel objects per endpoint, so only
    // affinity services pay it.
    const std::string chain = std::string(local ? "affinity-local-" : "affinity-cluster-") + id;
    if (!chains_.contains(chain)) {
      std::vector<ir::Rule> rules;
      std::vector<std::string> targets;
      for (const auto& ep : list) {
        const std::string suffix = id + "__" + endpoint_suffix(ep);
        const std::string set = "affinity-" + suffix;
        const std::string ep_chain = "endpoint-" + suffix;
        targets.push_back(ep_chain);
        rules.push_back(rule({ir::AddrMatch{ir::KeyField::SrcAddr, false, std::nullopt, set}},
                             {goto_chain(ep_chain)}));
        if (!sets_.contains(set)) {
          ir::Set s;
          s.name = set;
          s.key = {ir::KeyType::Addr};
          s.dynamic = true;
          s.timeout_seconds = *sp.affinity_timeout_seconds;
          sets_[set] = std::move(s);
          add_chain(ep_chain, {rule({}, {ir::SetUpdateStmt{set}}),
                               rule({ir::ProtoMatch{sp.name.protocol}}, {ir::DnatStmt{ep.ip, ep.port}})});
        }
      }
      rules.push_back(rule({}, {ir::NumgenVmapStmt{targets}}));
      add_chain(chain, std::move(rules));
    }
    return chain;
  }
  const size_t n = list.size();
  auto& elements = dnat_maps_[{kind, flavour, n}];
  for (size_t slot = 0; slot < n; ++slot) {
    ir::Element element;
    element.key = key;
    element.key.emplace_back(static_cast<uint32_t>(slot));
    element.data = {list[slot].ip, list[slot].port};
    elements.push_back(std::move(element));
  }
  return dnat_chain_name(kind, flavour, n);
}

std::vector<ir::Rule> TableBuilder::external_rules(const ServicePortState& sp, const std::string& id,
                                                   KeyKind kind, const ir::ValueList& key) {
  std::vector<ir::Rule> rules;
  const auto& cluster = sp.cluster_endpoints;
  if (cluster.empty()) {
    rules.push_back(reject_rule(sp.name.protocol));
    return rules;
  }
  if (sp.external_traffic_policy == TrafficPolicy::Cluster) {
    // External traffic may land on any node's pod: masquerade so replies
    // come back through this node.
    rules.push_back(mark_for_masquerade());
    rules.push_back(rule({}, {goto_chain(picker(sp, id, cluster, kind, Flavour::Main, key, false))}));
    return rules;
  }
  // eTP=Local: pods and the node itself short-circuit to every endpoint;
  // the node's own traffic is masqueraded (its source would not route back).
  const std::string shortcut = picker(sp, id, cluster, kind, Flavour::Shortcut, key, false);
  if (!cluster_cidrs_.empty()) {
    rules.push_back(rule({ir::AddrMatch{ir::KeyField::SrcAddr, false, std::nullopt, names::kClusterCIDRs}},
                         {goto_chain(shortcut)}));
  }
  rules.push_back(mark_for_masquerade({ir::FibLocalMatch{ir::KeyField::SrcAddr}}));
  rules.push_back(rule({ir::FibLocalMatch{ir::KeyField::SrcAddr}}, {goto_chain(shortcut)}));
  if (sp.local_endpoints.empty()) {
    rules.push_back(rule({}, {ir::Verdict{ir::VerdictKind::Drop, {}}}));
  } else {
    rules.push_back(
        rule({}, {goto_chain(picker(sp, id, sp.local_endpoints, kind, Flavour::Main, key, true))}));
  }
  return rules;
}

void TableBuilder::add(const ServicePortState& sp) {
  const std::string id = service_port_id(sp.name);
  const auto proto = sp.name.protocol;
  // Only a pod on this node can reach its own service through this node and
  // land on itself, and every usable endpoint on this node is in the local
  // list: the hairpin set needs no remote endpoints (on a 100-node cluster
  // that is ~1% of them).
  for (const auto& ep : sp.local_endpoints) hairpin_.push_back(ep.ip);

  // ---- ClusterIP --------------------------------------------------------
  cluster_ips_.insert(sp.cluster_ip);
  if (claim_address(sp.cluster_ip, sp)) {
    std::vector<ir::Rule> rules;
    if (node_.masquerade_all) {
      rules.push_back(mark_for_masquerade());
    } else if (!cluster_cidrs_.empty()) {
      // Off-cluster clients reaching a ClusterIP are masqueraded so the
      // reply returns through this node.
      rules.push_back(mark_for_masquerade(
          {ir::AddrMatch{ir::KeyField::SrcAddr, true, std::nullopt, names::kClusterCIDRs}}));
    }
    const auto& internal = sp.internal_endpoints();
    if (sp.cluster_endpoints.empty()) {
      rules.push_back(reject_rule(proto));
    } else if (internal.empty()) {
      // internalTrafficPolicy=Local with endpoints only on other nodes.
      rules.push_back(rule({}, {ir::Verdict{ir::VerdictKind::Drop, {}}}));
    } else {
      const ir::ValueList key{sp.cluster_ip, proto, sp.port};
      const bool local = sp.internal_traffic_policy == TrafficPolicy::Local;
      rules.push_back(rule({}, {goto_chain(picker(sp, id, internal, KeyKind::Address, Flavour::Main, key, local))}));
    }
    const std::string chain = "svc-" + id;
    add_chain(chain, std::move(rules));
    service_ip_elements_.push_back(ir::Element{{sp.cluster_ip, proto, sp.port}, goto_chain(chain), {}});
  }

  // ---- externalIPs and load-balancer IPs ---------------------------------
  const std::string ext_chain = "ext-" + id;
  const std::string fw_chain = "fw-" + id;
  bool have_ext_chain = false;
  std::vector<ir::Rule> ext_rules;
  auto add_external = [&](const IPAddress& ip, bool firewalled) {
    if (!claim_address(ip, sp)) return;
    // Every address gets its own DNAT map entries, keyed by the address.
    auto rules = external_rules(sp, id, KeyKind::Address, {ip, proto, sp.port});
    if (!have_ext_chain) {
      ext_rules = std::move(rules);
      have_ext_chain = true;
    }
    service_ip_elements_.push_back(
        ir::Element{{ip, proto, sp.port}, goto_chain(firewalled ? fw_chain : ext_chain), {}});
  };
  for (const auto& ip : sp.external_ips) add_external(ip, false);
  const bool firewalled = !sp.load_balancer_source_ranges.empty();
  for (const auto& ip : sp.load_balancer_ips) add_external(ip, firewalled);
  if (have_ext_chain) add_chain(ext_chain, std::move(ext_rules));
  if (firewalled && have_ext_chain) {
    std::vector<ir::Rule> rules;
    bool covers_node = false;
    for (const auto& range : sp.load_balancer_source_ranges) {
      rules.push_back(rule({ir::AddrMatch{ir::KeyField::SrcAddr, false, range, {}}}, {goto_chain(ext_chain)}));
      for (const auto& node_ip : node_.node_ips) covers_node = covers_node || range.contains(node_ip);
    }
    // A range that contains a node IP admits the node itself (kube-proxy).
    if (covers_node) rules.push_back(rule({ir::FibLocalMatch{ir::KeyField::SrcAddr}}, {goto_chain(ext_chain)}));
    rules.push_back(rule({}, {ir::Verdict{ir::VerdictKind::Drop, {}}}));
    add_chain(fw_chain, std::move(rules));
  }

  // ---- NodePort -----------------------------------------------------------
  if (sp.node_port != 0 && claim_node_port(sp)) {
    const std::string chain = "nodeport-" + id;
    add_chain(chain, external_rules(sp, id, KeyKind::NodePort, {proto, sp.node_port}));
    nodeport_elements_.push_back(ir::Element{{proto, sp.node_port}, goto_chain(chain), {}});
  }
}

ir::Table TableBuilder::finish() {
  using ir::KeyField;
  using ir::KeyType;
  auto add_set = [&](ir::Set s) { sets_[s.name] = std::move(s); };
  auto addr_set = [&](const char* name, bool interval, const auto& values) {
    ir::Set s;
    s.name = name;
    s.key = {KeyType::Addr};
    s.interval = interval;
    for (const auto& v : values) s.elements.push_back(ir::Element{{v}, std::nullopt, {}});
    add_set(std::move(s));
  };
  addr_set(names::kClusterCIDRs, true, cluster_cidrs_);
  addr_set(names::kServiceCIDRs, true, service_cidrs_);
  addr_set(names::kClusterIPs, false, cluster_ips_);
  std::set<IPAddress> nodeport_ips;
  for (const auto& ip : node_.nodeport_ips)
    if (ip.family == family_ && !ip.is_loopback()) nodeport_ips.insert(ip);
  addr_set(names::kNodePortIPs, false, nodeport_ips);

  ir::Set hairpin;
  hairpin.name = names::kHairpin;
  hairpin.key = {KeyType::Addr, KeyType::Addr};
  std::sort(hairpin_.begin(), hairpin_.end());
  hairpin_.erase(std::unique(hairpin_.begin(), hairpin_.end()), hairpin_.end());
  hairpin.elements.reserve(hairpin_.size());
  for (const auto& ip : hairpin_) hairpin.elements.push_back(ir::Element{{ip, ip}, std::nullopt, {}});
  add_set(std::move(hairpin));

  ir::Set service_ips;
  service_ips.name = names::kServiceIPs;
  service_ips.key = {KeyType::Addr, KeyType::Proto, KeyType::Port};
  service_ips.is_verdict_map = true;
  service_ips.elements = std::move(service_ip_elements_);
  add_set(std::move(service_ips));

  ir::Set nodeports;
  nodeports.name = names::kServiceNodePorts;
  nodeports.key = {KeyType::Proto, KeyType::Port};
  nodeports.is_verdict_map = true;
  nodeports.elements = std::move(nodeport_elements_);
  add_set(std::move(nodeports));

  // One DNAT chain and map per (key kind, flavour, endpoint count): the
  // kernel binds each map from exactly one rule, whatever the service count.
  for (auto& [spec, elements] : dnat_maps_) {
    const auto [kind, flavour, n] = spec;
    const std::string name = dnat_chain_name(kind, flavour, n);
    ir::Set m;
    m.name = name;
    std::vector<KeyField> key;
    if (kind == KeyKind::Address) {
      m.key = {KeyType::Addr, KeyType::Proto, KeyType::Port, KeyType::Slot};
      key = {KeyField::DstAddr, KeyField::L4Proto, KeyField::DstPort, KeyField::Numgen};
    } else {
      m.key = {KeyType::Proto, KeyType::Port, KeyType::Slot};
      key = {KeyField::L4Proto, KeyField::DstPort, KeyField::Numgen};
    }
    m.data = {KeyType::Addr, KeyType::Port};
    m.elements = std::move(elements);
    add_set(std::move(m));
    add_chain(name, {rule({}, {ir::DnatMapStmt{key, name, static_cast<uint32_t>(n)}})});
  }

  // ---- fixed chains --------------------------------------------------------
  std::vector<ir::Rule> services;
  services.push_back(rule({}, {ir::VmapStmt{{KeyField::DstAddr, KeyField::L4Proto, KeyField::DstPort},
                                            names::kServiceIPs, 0}}));
  const bool all_local = family_ == IPFamily::V4 ? node_.nodeport_all_local_v4 : node_.nodeport_all_local_v6;
  const ir::VmapStmt nodeport_vmap{{KeyField::L4Proto, KeyField::DstPort}, names::kServiceNodePorts, 0};
  if (all_local) {
    services.push_back(rule({ir::FibLocalMatch{KeyField::DstAddr}}, {nodeport_vmap}));
  } else if (!nodeport_ips.empty()) {
    services.push_back(
        rule({ir::AddrMatch{KeyField::DstAddr, false, std::nullopt, names::kNodePortIPs}}, {nodeport_vmap}));
  }
  // Still addressed to a ClusterIP: no such port on that service.
  const ir::AddrMatch to_cluster_ip{KeyField::DstAddr, false, std::nullopt, names::kClusterIPs};
  services.push_back(rule({to_cluster_ip, ir::ProtoMatch{model::Protocol::TCP}}, {ir::RejectStmt{true}}));
  services.push_back(rule({to_cluster_ip}, {ir::RejectStmt{false}}));
  if (!service_cidrs_.empty()) {
    // Inside the service range but no service: nothing will ever answer.
    services.push_back(rule({ir::AddrMatch{KeyField::DstAddr, false, std::nullopt, names::kServiceCIDRs}},
                            {ir::Verdict{ir::VerdictKind::Drop, {}}}));
  }
  add_chain(names::kServices, std::move(services));

  add_chain(names::kMarkForMasquerade, {rule({}, {ir::MarkStmt{masq_bits_, false}})});
  add_chain(names::kMasquerading,
            {
                // Hairpin: a pod whose connection to a service landed on itself.
                rule({ir::CtDnatMatch{}, ir::SetMatch{{KeyField::SrcAddr, KeyField::DstAddr}, names::kHairpin}},
                     {ir::MasqueradeStmt{}}),
                rule({ir::MarkMatch{masq_bits_, true}}, {ir::Verdict{ir::VerdictKind::Return, {}}}),
                // Clear the bit so a re-routed packet is not masqueraded twice.
                rule({}, {ir::MarkStmt{masq_bits_, true}}),
                rule({}, {ir::MasqueradeStmt{}}),
            });
  auto base = [&](const char* name, ir::Hook hook, int priority, const char* target) {
    chains_[name] = ir::Chain{name, ir::BaseChainSpec{hook, priority}, {rule({}, {jump_chain(target)})}};
  };
  base("nat-prerouting", ir::Hook::Prerouting, kPriorityDstNat, names::kServices);
  base("nat-output", ir::Hook::Output, kPriorityDstNat, names::kServices);
  base("nat-postrouting", ir::Hook::Postrouting, kPrioritySrcNat, names::kMasquerading);

  ir::Table table;
  table.family = family_;
  table.name = names::kTable;
  for (auto& [name, s] : sets_) {
    sort_elements(s.elements);
    table.sets.push_back(std::move(s));
  }
  for (auto& [name, c] : chains_) table.chains.push_back(std::move(c));
  return table;
}

}  // namespace

std::string service_port_id(const model::ServicePortName& name) {
  // FNV-1a 64 over the full name (family included), base32: short, stable,
  // and unique enough to keep readable names apart after truncation.
  const std::string key = name.str() + "/" + std::string(model::to_string(name.family));
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string hash;
  for (int i = 0; i < 8; ++i) {
    hash.push_back(kAlphabet[h & 31]);
    h >>= 5;
  }
  std::string readable = sanitize(name.str());
  // Keep chain names well under the kernel's 256-byte limit even with an
  // endpoint suffix appended.
  if (readable.size() > 160) readable.resize(160);
  return hash + "-" + readable;
}

CompileResult compile(const std::vector<model::ServicePortState>& ports, const model::NodeConfig& node) {
  CompileResult result;
  for (IPFamily family : {IPFamily::V4, IPFamily::V6}) {
    TableBuilder builder(family, node, result.warnings);
    builder.reserve(ports);
    for (const auto& sp : ports)
      if (sp.name.family == family) builder.add(sp);
    result.ruleset.tables.push_back(builder.finish());
  }
  return result;
}

}  // namespace svcproxy::dataplane
