#include "dataplane/compile/table_state.h"

#include <algorithm>

namespace svcproxy::dataplane::detail {

std::string TableState::picker(const ServicePortState& sp, const std::string& id,
                               const std::vector<EndpointAddress>& list, KeyKind kind, Flavour flavour,
                               const ir::ValueList& key, bool local, Fragment& out) {
  if (sp.affinity_timeout_seconds) {
    // ClientIP affinity: a dynamic set per endpoint remembers its clients
    // (kube-proxy's shape). Costs kernel objects per endpoint, so only
    // affinity services pay it.
    const std::string chain = std::string(local ? "affinity-local-" : "affinity-cluster-") + id;
    const bool have = std::any_of(out.chains.begin(), out.chains.end(),
                                  [&](const ir::Chain& c) { return c.name == chain; });
    if (!have) {
      std::vector<ir::Rule> rules;
      std::vector<std::string> targets;
      for (const auto& ep : list) {
        const std::string suffix = id + "__" + endpoint_suffix(ep);
        const std::string set = "affinity-" + suffix;
        const std::string ep_chain = "endpoint-" + suffix;
        targets.push_back(ep_chain);
        rules.push_back(rule({ir::AddrMatch{ir::KeyField::SrcAddr, false, std::nullopt, set}},
                             {goto_chain(ep_chain)}));
        const bool have_set =
            std::any_of(out.sets.begin(), out.sets.end(), [&](const ir::Set& s) { return s.name == set; });
        if (!have_set) {
          ir::Set s;
          s.name = set;
          s.key = {ir::KeyType::Addr};
          s.dynamic = true;
          s.timeout_seconds = *sp.affinity_timeout_seconds;
          out.sets.push_back(std::move(s));
          out.chains.push_back(ir::Chain{
              ep_chain, std::nullopt,
              {rule({}, {ir::SetUpdateStmt{set}}),
               rule({ir::ProtoMatch{sp.name.protocol}}, {ir::DnatStmt{ep.ip, ep.port}})}});
        }
      }
      rules.push_back(rule({}, {ir::NumgenVmapStmt{targets}}));
      out.chains.push_back(ir::Chain{chain, std::nullopt, std::move(rules)});
    }
    return chain;
  }
  const size_t n = list.size();
  const uint32_t set = dnat_set(kind, flavour, n);
  for (size_t slot = 0; slot < n; ++slot) {
    Contribution c;
    c.set = set;
    c.element.key = key;
    c.element.key.emplace_back(static_cast<uint32_t>(slot));
    c.element.data = {list[slot].ip, list[slot].port};
    out.elements.push_back(std::move(c));
  }
  return cascade_chain_name(kind, flavour);
}

// Session affinity keeps the per-service shape (chains of the service's
// own, reached through the verdict maps): the endpoint is remembered per
// client. Only called with endpoints.
std::vector<ir::Rule> TableState::affinity_external_rules(const ServicePortState& sp, const std::string& id,
                                                          KeyKind kind, const ir::ValueList& key, Fragment& out) {
  std::vector<ir::Rule> rules;
  const auto& cluster = sp.cluster_endpoints;
  if (sp.external_traffic_policy == TrafficPolicy::Cluster) {
    rules.push_back(mark_for_masquerade());
    rules.push_back(rule({}, {goto_chain(picker(sp, id, cluster, kind, Flavour::Main, key, false, out))}));
    return rules;
  }
  const std::string shortcut = picker(sp, id, cluster, kind, Flavour::Shortcut, key, false, out);
  if (auto local = local_match(false)) rules.push_back(rule({std::move(*local)}, {goto_chain(shortcut)}));
  rules.push_back(mark_for_masquerade({ir::FibLocalMatch{ir::KeyField::SrcAddr}}));
  rules.push_back(rule({ir::FibLocalMatch{ir::KeyField::SrcAddr}}, {goto_chain(shortcut)}));
  if (sp.local_endpoints.empty()) {
    rules.push_back(rule({}, {ir::Verdict{ir::VerdictKind::Drop, {}}}));
  } else {
    rules.push_back(
        rule({}, {goto_chain(picker(sp, id, sp.local_endpoints, kind, Flavour::Main, key, true, out))}));
  }
  return rules;
}

// An external key (external IP, LB IP, NodePort) without affinity: adds its
// DNAT elements and returns its class set (for addresses, also the name of
// the shared chain its packets go to).
std::string TableState::external_class(const ServicePortState& sp, KeyKind kind, const ir::ValueList& key,
                                       Fragment& out) {
  const bool nodeport = kind == KeyKind::NodePort;
  if (sp.cluster_endpoints.empty()) return nodeport ? cls::kNodePortReject : cls::kReject;
  if (sp.external_traffic_policy == TrafficPolicy::Cluster) {
    picker(sp, {}, sp.cluster_endpoints, kind, Flavour::Main, key, false, out);
    return nodeport ? cls::kNodePortExternal : cls::kExternal;
  }
  picker(sp, {}, sp.cluster_endpoints, kind, Flavour::Shortcut, key, false, out);
  if (!sp.local_endpoints.empty()) picker(sp, {}, sp.local_endpoints, kind, Flavour::Main, key, true, out);
  return nodeport ? cls::kNodePortExternalLocal : cls::kExternalLocal;
}

Fragment TableState::compile_port(const ServicePortState& sp) {
  Fragment out;
  // Elements are large; size the vector once (an upper bound).
  const size_t addresses = 1 + sp.external_ips.size() + sp.load_balancer_ips.size() + (sp.node_port ? 1 : 0);
  out.elements.reserve(1 + addresses * (2 + sp.cluster_endpoints.size() + sp.local_endpoints.size()));
  const std::string id = service_port_id(sp.name);
  const auto proto = sp.name.protocol;
  const uint32_t cluster_ips = set_ids_.at(names::kClusterIPs);
  const uint32_t service_ips = set_ids_.at(names::kServiceIPs);
  const uint32_t nodeports = set_ids_.at(names::kServiceNodePorts);
  // Hairpin pairs are not part of the fragment: update() derives them from
  // the port's endpoints (hairpin_delta).
  out.elements.push_back({cluster_ips, {{sp.cluster_ip}, std::nullopt, {}}});
  std::set<ClaimKey> used;  // one port may list an address twice
  auto claim = [&](const ClaimKey& key) { return used.insert(key).second && wins(key, sp); };
  auto classify = [&](const std::string& set, const ir::ValueList& key) {
    out.elements.push_back({set_ids_.at(set), {key, std::nullopt, {}}});
  };
  // Affinity needs chains of the service's own; everything else is set
  // elements: class sets and DNAT maps.
  const bool affinity = sp.affinity_timeout_seconds && !sp.cluster_endpoints.empty();

  // ---- ClusterIP --------------------------------------------------------
  if (claim({false, sp.cluster_ip, proto, sp.port})) {
    const ir::ValueList key{sp.cluster_ip, proto, sp.port};
    const auto& internal = sp.internal_endpoints();
    const bool local = sp.internal_traffic_policy == TrafficPolicy::Local;
    if (sp.cluster_endpoints.empty()) {
      classify(cls::kReject, key);
    } else if (internal.empty()) {
      // internalTrafficPolicy=Local with endpoints only on other nodes.
      classify(cls::kDrop, key);
    } else if (!affinity) {
      picker(sp, id, internal, KeyKind::Address, Flavour::Main, key, local, out);
      classify(cls::kClusterIP, key);
    } else {
      std::vector<ir::Rule> rules;
      if (node_.masquerade_all) {
        rules.push_back(mark_for_masquerade());
      } else if (auto not_local = local_match(true)) {
        rules.push_back(mark_for_masquerade({std::move(*not_local)}));
      }
      rules.push_back(
          rule({}, {goto_chain(picker(sp, id, internal, KeyKind::Address, Flavour::Main, key, local, out))}));
      const std::string chain = "svc-" + id;
      out.chains.push_back(ir::Chain{chain, std::nullopt, std::move(rules)});
      out.elements.push_back({service_ips, {key, goto_chain(chain), {}}});
    }
  }

  // ---- externalIPs and load-balancer IPs ---------------------------------
  const std::string ext_chain = "ext-" + id;
  const std::string fw_chain = "fw-" + id;
  bool have_ext_chain = false;
  std::vector<ir::Rule> ext_rules;
  std::string fw_target;  // where allowed sources go: ext-<id> or a class chain
  auto add_external = [&](const IPAddress& ip, bool firewalled) {
    if (!claim({false, ip, proto, sp.port})) return;
    // Every address gets its own DNAT map entries, keyed by the address.
    const ir::ValueList key{ip, proto, sp.port};
    std::string target;
    if (affinity) {
      auto rules = affinity_external_rules(sp, id, KeyKind::Address, key, out);
      if (!have_ext_chain) {
        ext_rules = std::move(rules);
        have_ext_chain = true;
      }
      target = ext_chain;
    } else {
      target = external_class(sp, KeyKind::Address, key, out);
    }
    if (firewalled) {
      fw_target = target;
      out.elements.push_back({service_ips, {key, goto_chain(fw_chain), {}}});
    } else if (affinity) {
      out.elements.push_back({service_ips, {key, goto_chain(ext_chain), {}}});
    } else {
      classify(target, key);
    }
  };
  for (const auto& ip : sp.external_ips) add_external(ip, false);
  const bool firewalled = !sp.load_balancer_source_ranges.empty();
  for (const auto& ip : sp.load_balancer_ips) add_external(ip, firewalled);
  if (have_ext_chain) out.chains.push_back(ir::Chain{ext_chain, std::nullopt, std::move(ext_rules)});
  if (!fw_target.empty()) {
    // loadBalancerSourceRanges: allowed sources go on, others are dropped.
    std::vector<ir::Rule> rules;
    bool covers_node = false;
    for (const auto& range : sp.load_balancer_source_ranges) {
      rules.push_back(rule({ir::AddrMatch{ir::KeyField::SrcAddr, false, range, {}}}, {goto_chain(fw_target)}));
      for (const auto& node_ip : node_.node_ips) covers_node = covers_node || range.contains(node_ip);
    }
    // A range that contains a node IP admits the node itself (kube-proxy).
    if (covers_node) rules.push_back(rule({ir::FibLocalMatch{ir::KeyField::SrcAddr}}, {goto_chain(fw_target)}));
    rules.push_back(rule({}, {ir::Verdict{ir::VerdictKind::Drop, {}}}));
    out.chains.push_back(ir::Chain{fw_chain, std::nullopt, std::move(rules)});
  }

  // ---- NodePort -----------------------------------------------------------
  if (sp.node_port != 0 && claim({true, IPAddress{}, proto, sp.node_port})) {
    const ir::ValueList key{proto, sp.node_port};
    if (affinity) {
      const std::string chain = "nodeport-" + id;
      out.chains.push_back(
          ir::Chain{chain, std::nullopt, affinity_external_rules(sp, id, KeyKind::NodePort, key, out)});
      out.elements.push_back({nodeports, {key, goto_chain(chain), {}}});
    } else {
      classify(external_class(sp, KeyKind::NodePort, key, out), key);
    }
  }

  std::sort(out.chains.begin(), out.chains.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::sort(out.sets.begin(), out.sets.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::sort(out.elements.begin(), out.elements.end());
  // The fragment is kept for the port's lifetime: drop the reserve's slack
  // (elements are ~200 bytes; at 50k services the slack was ~20 MiB).
  out.elements.shrink_to_fit();
  return out;
}

}  // namespace svcproxy::dataplane::detail
