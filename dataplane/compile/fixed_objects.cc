#include "dataplane/compile/fixed_objects.h"

#include <set>

namespace svcproxy::dataplane::detail {
namespace {

using ir::KeyField;

constexpr int kPriorityDstNat = -100;
constexpr int kPrioritySrcNat = 100;

const std::vector<KeyField> kAddrFields{KeyField::DstAddr, KeyField::L4Proto, KeyField::DstPort};
const std::vector<KeyField> kPortFields{KeyField::L4Proto, KeyField::DstPort};
// In counter name order.
constexpr model::Protocol kLocalhostRejectedProtocols[] = {model::Protocol::SCTP, model::Protocol::UDP};

std::string localhost_rejected_counter(model::Protocol protocol) {
  return names::kLocalhostNodePortRejectedPrefix + std::string(model::to_lower(protocol));
}

template <typename Values>
ir::Set addr_set(const char* name, bool interval, const Values& values) {
  ir::Set s;
  s.name = name;
  s.key = {ir::KeyType::Addr};
  s.interval = interval;
  for (const auto& v : values) s.elements.push_back(ir::Element{{v}, std::nullopt, {}});
  sort_elements(s.elements);
  return s;
}

// The addresses NodePorts answer on, when listed (not "every local
// address" mode).
std::set<IPAddress> nodeport_ips(const TableConfig& config) {
  std::set<IPAddress> ips;
  for (const auto& ip : config.node.nodeport_ips)
    if (ip.family == config.family && !ip.is_loopback()) ips.insert(ip);
  return ips;
}

ir::Rule to_class(const std::vector<KeyField>& fields, const char* set, const char* chain) {
  return rule({ir::SetMatch{fields, set}}, {goto_chain(chain)});
}

// `counter name <key> map @map`, alone in its rule: a key the map lacks
// only skips the count, never the rules after it.
ir::Rule count(const std::vector<KeyField>& fields, const char* map) {
  return rule({}, {ir::CounterMapStmt{fields, map}});
}

// Prepends `counted` to `rules` when the table counts.
std::vector<ir::Rule> with_count(const TableConfig& config, ir::Rule counted, std::vector<ir::Rule> rules) {
  if (config.node.counters) rules.insert(rules.begin(), std::move(counted));
  return rules;
}

// Classification: one set lookup per class, then a shared chain. Only
// service ports that need chains of their own (session affinity, source
// ranges) go through the verdict maps.
std::vector<ir::Rule> services_rules(const TableConfig& config, bool have_nodeport_ips) {
  std::vector<ir::Rule> services;
  services.push_back(to_class(kAddrFields, cls::kClusterIP, cls::kClusterIP));
  services.push_back(to_class(kAddrFields, cls::kExternal, cls::kExternal));
  services.push_back(to_class(kAddrFields, cls::kExternalLocal, cls::kExternalLocal));
  services.push_back(to_class(kAddrFields, cls::kReject, cls::kReject));
  if (config.node.counters) {
    services.push_back(to_class(kAddrFields, cls::kDrop, cls::kDrop));
  } else {
    services.push_back(rule({ir::SetMatch{kAddrFields, cls::kDrop}}, {ir::Verdict{ir::VerdictKind::Drop, {}}}));
  }
  services.push_back(rule({}, {ir::VmapStmt{kAddrFields, names::kServiceIPs, 0}}));
  if (config.localhost_range) {
    // UDP and SCTP NodePorts on loopback: refused and counted, as kube-proxy
    // (its relay, like ours, is TCP only); the packets would otherwise meet
    // whatever host process happens to listen there.
    for (auto protocol : kLocalhostRejectedProtocols) {
      services.push_back(rule({ir::AddrMatch{KeyField::DstAddr, false, *config.localhost_range, {}},
                               ir::ProtoMatch{protocol}, ir::SetMatch{kPortFields, names::kLocalhostNodePortRejects}},
                              {ir::CounterStmt{localhost_rejected_counter(protocol)}, ir::RejectStmt{false}}));
    }
  }
  const auto& node = config.node;
  const bool all_local = config.family == IPFamily::V4 ? node.nodeport_all_local_v4 : node.nodeport_all_local_v6;
  if (all_local) {
    // Loopback is not a NodePort address (kube-proxy's noLocalhost): a
    // connection from 127.0.0.1 DNATed to a pod would leave with a loopback
    // source, which the kernel drops. Localhost NodePorts are the relay's.
    const ir::AddrMatch not_loopback{
        KeyField::DstAddr, true, *model::CIDR::parse(config.family == IPFamily::V4 ? "127.0.0.0/8" : "::1/128"), {}};
    services.push_back(rule({ir::FibLocalMatch{KeyField::DstAddr}, not_loopback}, {jump_chain(cls::kNodePorts)}));
  } else if (have_nodeport_ips) {
    services.push_back(rule({ir::AddrMatch{KeyField::DstAddr, false, std::nullopt, names::kNodePortIPs}},
                            {jump_chain(cls::kNodePorts)}));
  }
  // Still addressed to a ClusterIP: no such port on that service.
  const ir::AddrMatch to_cluster_ip{KeyField::DstAddr, false, std::nullopt, names::kClusterIPs};
  services.push_back(rule({to_cluster_ip, ir::ProtoMatch{model::Protocol::TCP}}, {ir::RejectStmt{true}}));
  services.push_back(rule({to_cluster_ip}, {ir::RejectStmt{false}}));
  if (!config.service_cidrs.empty()) {
    // Inside the service range but no service: nothing will ever answer.
    services.push_back(rule({ir::AddrMatch{KeyField::DstAddr, false, std::nullopt, names::kServiceCIDRs}},
                            {ir::Verdict{ir::VerdictKind::Drop, {}}}));
  }
  return services;
}

std::vector<ir::Rule> nodeports_rules(const TableConfig& config) {
  return with_count(
      config, count(kPortFields, names::kCountNodePorts),
      {to_class(kPortFields, cls::kNodePortExternal, cls::kNodePortExternal),
       to_class(kPortFields, cls::kNodePortExternalLocal, cls::kNodePortExternalLocal),
       to_class(kPortFields, cls::kNodePortReject, config.node.counters ? cls::kNodePortReject : cls::kReject),
       rule({}, {ir::VmapStmt{kPortFields, names::kServiceNodePorts, 0}})});
}

// ClusterIP: off-cluster clients are masqueraded so the reply returns
// through this node (all clients with --masquerade-all).
std::vector<ir::Rule> cluster_ip_rules(const TableConfig& config) {
  std::vector<ir::Rule> rules;
  if (config.node.masquerade_all) {
    rules.push_back(mark_for_masquerade());
  } else if (auto not_local = config.local_match(true)) {
    rules.push_back(mark_for_masquerade({std::move(*not_local)}));
  }
  rules.push_back(rule({}, {goto_chain(cascade_chain_name(KeyKind::Address, Flavour::Main))}));
  return rules;
}

// eTP=Cluster: external traffic may land on any node's pod: masquerade so
// replies come back through this node.
std::vector<ir::Rule> external_rules(KeyKind kind) {
  return {mark_for_masquerade(), rule({}, {goto_chain(cascade_chain_name(kind, Flavour::Main))})};
}

// eTP=Local: pods and the node itself short-circuit to every endpoint (the
// node's own traffic is masqueraded: its source would not route back);
// others go to the local endpoints (the main maps), or are dropped when
// there is none (no element: the cascade falls through).
std::vector<ir::Rule> external_local_rules(const TableConfig& config, KeyKind kind) {
  const std::string shortcut = cascade_chain_name(kind, Flavour::Shortcut);
  std::vector<ir::Rule> rules;
  if (auto local = config.local_match(false)) rules.push_back(rule({std::move(*local)}, {goto_chain(shortcut)}));
  rules.push_back(mark_for_masquerade({ir::FibLocalMatch{KeyField::SrcAddr}}));
  rules.push_back(rule({ir::FibLocalMatch{KeyField::SrcAddr}}, {goto_chain(shortcut)}));
  rules.push_back(rule({}, {jump_chain(cascade_chain_name(kind, Flavour::Main))}));
  if (config.node.counters) {
    rules.push_back(count(kind == KeyKind::NodePort ? kPortFields : kAddrFields,
                          kind == KeyKind::NodePort ? names::kCountNodePortDropped : names::kCountDropped));
  }
  rules.push_back(rule({}, {ir::Verdict{ir::VerdictKind::Drop, {}}}));
  return rules;
}

// No endpoints: a TCP reset for TCP (not rate-limited like ICMP errors),
// ICMP port unreachable otherwise.
std::vector<ir::Rule> reject_rules() {
  return {rule({ir::ProtoMatch{model::Protocol::TCP}}, {ir::RejectStmt{true}}), rule({}, {ir::RejectStmt{false}})};
}

std::vector<ir::Rule> masquerading_rules(uint32_t masq_bits) {
  return {
      // Hairpin: a pod whose connection to a service landed on itself.
      rule({ir::CtDnatMatch{}, ir::SetMatch{{KeyField::SrcAddr, KeyField::DstAddr}, names::kHairpin}},
           {ir::MasqueradeStmt{}}),
      rule({ir::MarkMatch{masq_bits, true}}, {ir::Verdict{ir::VerdictKind::Return, {}}}),
      // Clear the bit so a re-routed packet is not masqueraded twice.
      rule({}, {ir::MarkStmt{masq_bits, true}}),
      rule({}, {ir::MasqueradeStmt{}}),
  };
}

}  // namespace

FixedObjects::FixedObjects(const TableConfig& config) {
  // Kept in the interface modes too, filled from --cluster-cidr as always
  // (then no rule looks it up): kube-proxy also still takes --cluster-cidr
  // there and only stops using it for detection, and a fixed set that never
  // changes shape with the mode keeps a mode switch to rule changes only.
  sets_.push_back(addr_set(names::kClusterCIDRs, true, config.cluster_cidrs));
  sets_.push_back(addr_set(names::kServiceCIDRs, true, config.service_cidrs));
  const auto nodeports = nodeport_ips(config);
  sets_.push_back(addr_set(names::kNodePortIPs, false, nodeports));
  if (config.localhost_range)
    for (auto protocol : kLocalhostRejectedProtocols) counters_.push_back({localhost_rejected_counter(protocol)});

  auto add = [&](const char* name, std::vector<ir::Rule> rules, std::optional<ir::BaseChainSpec> base = {}) {
    chains_.push_back(ir::Chain{name, base, std::move(rules)});
  };
  add(cls::kClusterIP, cluster_ip_rules(config));
  add(cls::kExternal, external_rules(KeyKind::Address));
  add(cls::kExternalLocal, external_local_rules(config, KeyKind::Address));
  add(cls::kReject, with_count(config, count(kAddrFields, names::kCountRejected), reject_rules()));
  if (config.node.counters) {
    add(cls::kNodePortReject, with_count(config, count(kPortFields, names::kCountNodePortRejected), reject_rules()));
    add(cls::kDrop, {count(kAddrFields, names::kCountDropped), rule({}, {ir::Verdict{ir::VerdictKind::Drop, {}}})});
  }
  add(cls::kNodePorts, nodeports_rules(config));
  add(cls::kNodePortExternal, external_rules(KeyKind::NodePort));
  add(cls::kNodePortExternalLocal, external_local_rules(config, KeyKind::NodePort));
  add(names::kServices,
      with_count(config, count(kAddrFields, names::kCountServices), services_rules(config, !nodeports.empty())));
  add(names::kMarkForMasquerade, {rule({}, {ir::MarkStmt{config.masq_bits, false}})});
  add(names::kMasquerading, masquerading_rules(config.masq_bits));
  add("nat-prerouting", {rule({}, {jump_chain(names::kServices)})},
      ir::BaseChainSpec{ir::Hook::Prerouting, kPriorityDstNat});
  add("nat-output", {rule({}, {jump_chain(names::kServices)})}, ir::BaseChainSpec{ir::Hook::Output, kPriorityDstNat});
  // Endpoints count a connection's first packet after its DNAT: in
  // postrouting, or input when the endpoint is this node (host network).
  const ir::Rule count_endpoint = rule({ir::CtDnatMatch{}}, {ir::CounterMapStmt{kAddrFields, names::kCountEndpoints}});
  add("nat-postrouting", with_count(config, count_endpoint, {rule({}, {jump_chain(names::kMasquerading)})}),
      ir::BaseChainSpec{ir::Hook::Postrouting, kPrioritySrcNat});
  if (config.node.counters) add("nat-input", {count_endpoint}, ir::BaseChainSpec{ir::Hook::Input, kPrioritySrcNat});
}

}  // namespace svcproxy::dataplane::detail
