#include "dataplane/compile/table_state.h"

namespace svcproxy::dataplane::detail {

void TableState::build_fixed() {
  using ir::KeyField;
  using ir::KeyType;
  auto addr_set = [&](const char* name, bool interval, const auto& values) {
    ir::Set s;
    s.name = name;
    s.key = {KeyType::Addr};
    s.interval = interval;
    for (const auto& v : values) s.elements.push_back(ir::Element{{v}, std::nullopt, {}});
    sort_elements(s.elements);
    fixed_sets_.push_back(std::move(s));
  };
  // Kept in the interface modes too, filled from --cluster-cidr as always
  // (then no rule looks it up): kube-proxy also still takes --cluster-cidr
  // there and only stops using it for detection, and a fixed set that never
  // changes shape with the mode keeps a mode switch to rule changes only.
  addr_set(names::kClusterCIDRs, true, cluster_cidrs_);
  addr_set(names::kServiceCIDRs, true, service_cidrs_);
  std::set<IPAddress> nodeport_ips;
  for (const auto& ip : node_.nodeport_ips)
    if (ip.family == family_ && !ip.is_loopback()) nodeport_ips.insert(ip);
  addr_set(names::kNodePortIPs, false, nodeport_ips);

  // Shared sets whose elements come from service ports.
  ir::Set cluster_ips;
  cluster_ips.name = names::kClusterIPs;
  cluster_ips.key = {KeyType::Addr};
  set_id(cluster_ips.name, &cluster_ips);
  ir::Set hairpin;
  hairpin.name = names::kHairpin;
  hairpin.key = {KeyType::Addr, KeyType::Addr};
  set_id(hairpin.name, &hairpin);
  ir::Set service_ips;
  service_ips.name = names::kServiceIPs;
  service_ips.key = {KeyType::Addr, KeyType::Proto, KeyType::Port};
  service_ips.is_verdict_map = true;
  set_id(service_ips.name, &service_ips);
  ir::Set nodeports;
  nodeports.name = names::kServiceNodePorts;
  nodeports.key = {KeyType::Proto, KeyType::Port};
  nodeports.is_verdict_map = true;
  set_id(nodeports.name, &nodeports);

  // Class sets: keys of service ports, by what their packets need.
  const std::vector<KeyType> addr_key{KeyType::Addr, KeyType::Proto, KeyType::Port};
  const std::vector<KeyType> port_key{KeyType::Proto, KeyType::Port};
  for (const char* name : {cls::kClusterIP, cls::kExternal, cls::kExternalLocal, cls::kReject, cls::kDrop}) {
    ir::Set set;
    set.name = name;
    set.key = addr_key;
    set_id(set.name, &set);
  }
  for (const char* name : {cls::kNodePortExternal, cls::kNodePortExternalLocal, cls::kNodePortReject}) {
    ir::Set set;
    set.name = name;
    set.key = port_key;
    set_id(set.name, &set);
  }

  // Classification: one set lookup per class, then a shared chain. Only
  // service ports that need chains of their own (session affinity, source
  // ranges) go through the verdict maps.
  const std::vector<KeyField> addr_fields{KeyField::DstAddr, KeyField::L4Proto, KeyField::DstPort};
  const std::vector<KeyField> port_fields{KeyField::L4Proto, KeyField::DstPort};
  auto to_class = [&](const std::vector<KeyField>& fields, const char* set, const char* chain) {
    return rule({ir::SetMatch{fields, set}}, {goto_chain(chain)});
  };
  std::vector<ir::Rule> services;
  services.push_back(to_class(addr_fields, cls::kClusterIP, cls::kClusterIP));
  services.push_back(to_class(addr_fields, cls::kExternal, cls::kExternal));
  services.push_back(to_class(addr_fields, cls::kExternalLocal, cls::kExternalLocal));
  services.push_back(to_class(addr_fields, cls::kReject, cls::kReject));
  services.push_back(rule({ir::SetMatch{addr_fields, cls::kDrop}}, {ir::Verdict{ir::VerdictKind::Drop, {}}}));
  services.push_back(rule({}, {ir::VmapStmt{addr_fields, names::kServiceIPs, 0}}));
  const bool all_local = family_ == IPFamily::V4 ? node_.nodeport_all_local_v4 : node_.nodeport_all_local_v6;
  if (all_local) {
    services.push_back(rule({ir::FibLocalMatch{KeyField::DstAddr}}, {jump_chain(cls::kNodePorts)}));
  } else if (!nodeport_ips.empty()) {
    services.push_back(rule({ir::AddrMatch{KeyField::DstAddr, false, std::nullopt, names::kNodePortIPs}},
                            {jump_chain(cls::kNodePorts)}));
  }
  std::vector<ir::Rule> nodeport_rules;
  nodeport_rules.push_back(to_class(port_fields, cls::kNodePortExternal, cls::kNodePortExternal));
  nodeport_rules.push_back(to_class(port_fields, cls::kNodePortExternalLocal, cls::kNodePortExternalLocal));
  nodeport_rules.push_back(to_class(port_fields, cls::kNodePortReject, cls::kReject));
  nodeport_rules.push_back(rule({}, {ir::VmapStmt{port_fields, names::kServiceNodePorts, 0}}));

  // The class chains. ClusterIP: off-cluster clients are masqueraded so the
  // reply returns through this node (all clients with --masquerade-all).
  std::vector<ir::Rule> cluster_ip;
  if (node_.masquerade_all) {
    cluster_ip.push_back(mark_for_masquerade());
  } else if (auto not_local = local_match(true)) {
    cluster_ip.push_back(mark_for_masquerade({std::move(*not_local)}));
  }
  cluster_ip.push_back(rule({}, {goto_chain(cascade_chain_name(KeyKind::Address, Flavour::Main))}));
  // eTP=Cluster: external traffic may land on any node's pod: masquerade so
  // replies come back through this node.
  auto external = [&](KeyKind kind) {
    return std::vector<ir::Rule>{mark_for_masquerade(),
                                 rule({}, {goto_chain(cascade_chain_name(kind, Flavour::Main))})};
  };
  // eTP=Local: pods and the node itself short-circuit to every endpoint (the
  // node's own traffic is masqueraded: its source would not route back);
  // others go to the local endpoints (the main maps), or are dropped when
  // there is none (no element: the cascade falls through).
  auto external_local = [&](KeyKind kind) {
    const std::string shortcut = cascade_chain_name(kind, Flavour::Shortcut);
    std::vector<ir::Rule> rules;
    if (auto local = local_match(false)) rules.push_back(rule({std::move(*local)}, {goto_chain(shortcut)}));
    rules.push_back(mark_for_masquerade({ir::FibLocalMatch{KeyField::SrcAddr}}));
    rules.push_back(rule({ir::FibLocalMatch{KeyField::SrcAddr}}, {goto_chain(shortcut)}));
    rules.push_back(rule({}, {jump_chain(cascade_chain_name(kind, Flavour::Main))}));
    rules.push_back(rule({}, {ir::Verdict{ir::VerdictKind::Drop, {}}}));
    return rules;
  };
  // No endpoints: a TCP reset for TCP (not rate-limited like ICMP errors),
  // ICMP port unreachable otherwise.
  std::vector<ir::Rule> reject{rule({ir::ProtoMatch{model::Protocol::TCP}}, {ir::RejectStmt{true}}),
                               rule({}, {ir::RejectStmt{false}})};
  fixed_chains_.push_back(ir::Chain{cls::kClusterIP, std::nullopt, std::move(cluster_ip)});
  fixed_chains_.push_back(ir::Chain{cls::kExternal, std::nullopt, external(KeyKind::Address)});
  fixed_chains_.push_back(ir::Chain{cls::kExternalLocal, std::nullopt, external_local(KeyKind::Address)});
  fixed_chains_.push_back(ir::Chain{cls::kReject, std::nullopt, std::move(reject)});
  fixed_chains_.push_back(ir::Chain{cls::kNodePorts, std::nullopt, std::move(nodeport_rules)});
  fixed_chains_.push_back(ir::Chain{cls::kNodePortExternal, std::nullopt, external(KeyKind::NodePort)});
  fixed_chains_.push_back(ir::Chain{cls::kNodePortExternalLocal, std::nullopt, external_local(KeyKind::NodePort)});
  // Still addressed to a ClusterIP: no such port on that service.
  const ir::AddrMatch to_cluster_ip{KeyField::DstAddr, false, std::nullopt, names::kClusterIPs};
  services.push_back(rule({to_cluster_ip, ir::ProtoMatch{model::Protocol::TCP}}, {ir::RejectStmt{true}}));
  services.push_back(rule({to_cluster_ip}, {ir::RejectStmt{false}}));
  if (!service_cidrs_.empty()) {
    // Inside the service range but no service: nothing will ever answer.
    services.push_back(rule({ir::AddrMatch{KeyField::DstAddr, false, std::nullopt, names::kServiceCIDRs}},
                            {ir::Verdict{ir::VerdictKind::Drop, {}}}));
  }
  auto add = [&](const char* name, std::vector<ir::Rule> rules, std::optional<ir::BaseChainSpec> base = {}) {
    fixed_chains_.push_back(ir::Chain{name, base, std::move(rules)});
  };
  add(names::kServices, std::move(services));
  add(names::kMarkForMasquerade, {rule({}, {ir::MarkStmt{masq_bits_, false}})});
  add(names::kMasquerading,
      {
          // Hairpin: a pod whose connection to a service landed on itself.
          rule({ir::CtDnatMatch{}, ir::SetMatch{{KeyField::SrcAddr, KeyField::DstAddr}, names::kHairpin}},
               {ir::MasqueradeStmt{}}),
          rule({ir::MarkMatch{masq_bits_, true}}, {ir::Verdict{ir::VerdictKind::Return, {}}}),
          // Clear the bit so a re-routed packet is not masqueraded twice.
          rule({}, {ir::MarkStmt{masq_bits_, true}}),
          rule({}, {ir::MasqueradeStmt{}}),
      });
  add("nat-prerouting", {rule({}, {jump_chain(names::kServices)})},
      ir::BaseChainSpec{ir::Hook::Prerouting, kPriorityDstNat});
  add("nat-output", {rule({}, {jump_chain(names::kServices)})}, ir::BaseChainSpec{ir::Hook::Output, kPriorityDstNat});
  add("nat-postrouting", {rule({}, {jump_chain(names::kMasquerading)})},
      ir::BaseChainSpec{ir::Hook::Postrouting, kPrioritySrcNat});
}

}  // namespace svcproxy::dataplane::detail
