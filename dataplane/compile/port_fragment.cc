#include "dataplane/compile/port_fragment.h"

#include <algorithm>
#include <set>

namespace svcproxy::dataplane::detail {
namespace {

// Compiles one port: the ClusterIP, then external and load-balancer IPs,
// then the NodePort, each key only if the port owns it.
class PortCompiler {
 public:
  PortCompiler(const ServicePortState& sp, const TableConfig& config, ElementLedger& ledger,
               const AddressClaims& claims, std::vector<std::string>& warnings)
      : sp_(sp),
        config_(config),
        ledger_(ledger),
        claims_(claims),
        warnings_(warnings),
        id_(service_port_id(sp.name)),
        counters_(port_counter_names(sp.name)),
        // Affinity needs chains of the service's own; everything else is
        // set elements: class sets and DNAT maps.
        affinity_(sp.affinity_timeout_seconds && !sp.cluster_endpoints.empty()) {}

  Fragment run() &&;

 private:
  bool claim(const ClaimKey& key) { return used_.insert(key).second && claims_.wins(key, sp_, warnings_); }
  void classify(const std::string& set, const ir::ValueList& key) {
    out_.elements.push_back({ledger_.id(set), {key, std::nullopt, {}}});
  }
  void verdict(const char* map, const ir::ValueList& key, const std::string& chain) {
    out_.elements.push_back({ledger_.id(map), {key, goto_chain(chain), {}}});
  }
  // The key counts into `counter` through counter map `map` (with counters).
  void count(const char* map, const ir::ValueList& key, const std::string& counter) {
    if (config_.node.counters) out_.elements.push_back({ledger_.id(map), {key, std::nullopt, {}, counter}});
  }
  void count_port(KeyKind kind, const ir::ValueList& key) {
    count(kind == KeyKind::NodePort ? names::kCountNodePorts : names::kCountServices, key, counters_.service);
  }
  void count_rejected(KeyKind kind, const ir::ValueList& key) {
    count(kind == KeyKind::NodePort ? names::kCountNodePortRejected : names::kCountRejected, key, counters_.rejected);
  }
  void count_dropped(KeyKind kind, const ir::ValueList& key) {
    count(kind == KeyKind::NodePort ? names::kCountNodePortDropped : names::kCountDropped, key, counters_.dropped);
  }
  // `counter name "dropped-..."` before a drop in the port's own chains.
  std::vector<ir::Statement> counted_drop() const {
    std::vector<ir::Statement> out;
    if (config_.node.counters) out.push_back(ir::CounterStmt{counters_.dropped});
    out.push_back(ir::Verdict{ir::VerdictKind::Drop, {}});
    return out;
  }
  void counters();
  void cluster_ip();
  void cluster_ip_affinity(const ir::ValueList& key, const std::vector<EndpointAddress>& internal, bool local);
  void external(const IPAddress& ip, bool firewalled);
  void firewall_chain();
  void node_port();
  std::string picker(const std::vector<EndpointAddress>& list, KeyKind kind, Flavour flavour, const ir::ValueList& key,
                     bool local);
  std::string affinity_picker(const std::vector<EndpointAddress>& list, bool local);
  std::vector<ir::Rule> affinity_external_rules(KeyKind kind, const ir::ValueList& key);
  std::string external_class(KeyKind kind, const ir::ValueList& key);

  const ServicePortState& sp_;
  const TableConfig& config_;
  ElementLedger& ledger_;
  const AddressClaims& claims_;
  std::vector<std::string>& warnings_;
  const std::string id_;
  const PortCounterNames counters_;
  const bool affinity_;
  Fragment out_;
  std::set<ClaimKey> used_;  // one port may list an address twice
  bool have_ext_chain_ = false;
  std::vector<ir::Rule> ext_rules_;
  std::string fw_target_;  // where allowed sources go: ext-<id> or a class chain
};

Fragment PortCompiler::run() && {
  // Elements are large; size the vector once (an upper bound).
  const size_t addresses = 1 + sp_.external_ips.size() + sp_.load_balancer_ips.size() + (sp_.node_port ? 1 : 0);
  out_.elements.reserve(1 + addresses * (2 + sp_.cluster_endpoints.size() + sp_.local_endpoints.size()));
  // Hairpin pairs are not part of the fragment: update() derives them from
  // the port's endpoints (hairpin_delta).
  out_.elements.push_back({ledger_.id(names::kClusterIPs), {{sp_.cluster_ip}, std::nullopt, {}}});
  cluster_ip();
  for (const auto& ip : sp_.external_ips) external(ip, false);
  const bool firewalled = !sp_.load_balancer_source_ranges.empty();
  for (const auto& ip : sp_.load_balancer_ips) external(ip, firewalled);
  if (have_ext_chain_) out_.chains.push_back(ir::Chain{"ext-" + id_, std::nullopt, std::move(ext_rules_)});
  if (!fw_target_.empty()) firewall_chain();
  node_port();
  counters();

  std::sort(out_.chains.begin(), out_.chains.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::sort(out_.sets.begin(), out_.sets.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::sort(out_.elements.begin(), out_.elements.end());
  // The fragment is kept for the port's lifetime: drop the reserve's slack
  // (elements are ~200 bytes; at 50k services the slack was ~20 MiB).
  out_.elements.shrink_to_fit();
  return std::move(out_);
}

// The port's counters, and its endpoints' (shared with every port that has
// the endpoint: the ledger counts them).
void PortCompiler::counters() {
  if (!config_.node.counters) return;
  out_.counters = {{counters_.dropped}, {counters_.rejected}, {counters_.service}};
  std::set<EndpointAddress> endpoints(sp_.cluster_endpoints.begin(), sp_.cluster_endpoints.end());
  endpoints.insert(sp_.local_endpoints.begin(), sp_.local_endpoints.end());
  const uint32_t set = ledger_.id(names::kCountEndpoints);
  for (const auto& ep : endpoints) {
    out_.elements.push_back({set, ledger_.refcounted_element(set, ir::ValueList{ep.ip, sp_.name.protocol, ep.port})});
  }
}

void PortCompiler::cluster_ip() {
  if (!claim({false, sp_.cluster_ip, sp_.name.protocol, sp_.port})) return;
  const ir::ValueList key{sp_.cluster_ip, sp_.name.protocol, sp_.port};
  count_port(KeyKind::Address, key);
  const auto& internal = sp_.internal_endpoints();
  const bool local = sp_.internal_traffic_policy == TrafficPolicy::Local;
  if (sp_.cluster_endpoints.empty()) {
    classify(cls::kReject, key);
    count_rejected(KeyKind::Address, key);
  } else if (internal.empty()) {
    // internalTrafficPolicy=Local with endpoints only on other nodes.
    classify(cls::kDrop, key);
    count_dropped(KeyKind::Address, key);
  } else if (!affinity_) {
    picker(internal, KeyKind::Address, Flavour::Main, key, local);
    classify(cls::kClusterIP, key);
  } else {
    cluster_ip_affinity(key, internal, local);
  }
}

void PortCompiler::cluster_ip_affinity(const ir::ValueList& key, const std::vector<EndpointAddress>& internal,
                                       bool local) {
  std::vector<ir::Rule> rules;
  if (config_.node.masquerade_all) {
    rules.push_back(mark_for_masquerade());
  } else if (auto not_local = config_.local_match(true)) {
    rules.push_back(mark_for_masquerade({std::move(*not_local)}));
  }
  rules.push_back(rule({}, {goto_chain(picker(internal, KeyKind::Address, Flavour::Main, key, local))}));
  const std::string chain = "svc-" + id_;
  out_.chains.push_back(ir::Chain{chain, std::nullopt, std::move(rules)});
  verdict(names::kServiceIPs, key, chain);
}

// An external IP or a load-balancer IP (firewalled: behind its source
// ranges). Every address gets its own DNAT map entries, keyed by it.
void PortCompiler::external(const IPAddress& ip, bool firewalled) {
  if (!claim({false, ip, sp_.name.protocol, sp_.port})) return;
  const ir::ValueList key{ip, sp_.name.protocol, sp_.port};
  count_port(KeyKind::Address, key);
  std::string target;
  if (affinity_) {
    auto rules = affinity_external_rules(KeyKind::Address, key);
    if (!have_ext_chain_) {
      ext_rules_ = std::move(rules);
      have_ext_chain_ = true;
    }
    target = "ext-" + id_;
  } else {
    target = external_class(KeyKind::Address, key);
  }
  if (firewalled) {
    fw_target_ = target;
    verdict(names::kServiceIPs, key, "fw-" + id_);
  } else if (affinity_) {
    verdict(names::kServiceIPs, key, "ext-" + id_);
  } else {
    classify(target, key);
  }
}

// loadBalancerSourceRanges: allowed sources go on, others are dropped.
void PortCompiler::firewall_chain() {
  std::vector<ir::Rule> rules;
  bool covers_node = false;
  for (const auto& range : sp_.load_balancer_source_ranges) {
    rules.push_back(rule({ir::AddrMatch{ir::KeyField::SrcAddr, false, range, {}}}, {goto_chain(fw_target_)}));
    for (const auto& node_ip : config_.node.node_ips) covers_node = covers_node || range.contains(node_ip);
  }
  // A range that contains a node IP admits the node itself (kube-proxy).
  if (covers_node) rules.push_back(rule({ir::FibLocalMatch{ir::KeyField::SrcAddr}}, {goto_chain(fw_target_)}));
  rules.push_back(rule({}, counted_drop()));
  out_.chains.push_back(ir::Chain{"fw-" + id_, std::nullopt, std::move(rules)});
}

void PortCompiler::node_port() {
  if (sp_.node_port == 0 || !claim({true, IPAddress{}, sp_.name.protocol, sp_.node_port})) return;
  const ir::ValueList key{sp_.name.protocol, sp_.node_port};
  // Only TCP has the userspace relay on loopback; the rest is refused there.
  if (config_.localhost_range && sp_.name.protocol != model::Protocol::TCP)
    classify(names::kLocalhostNodePortRejects, key);
  count_port(KeyKind::NodePort, key);
  if (affinity_) {
    const std::string chain = "nodeport-" + id_;
    out_.chains.push_back(ir::Chain{chain, std::nullopt, affinity_external_rules(KeyKind::NodePort, key)});
    verdict(names::kServiceNodePorts, key, chain);
  } else {
    classify(external_class(KeyKind::NodePort, key), key);
  }
}

// Where a key's packets pick an endpoint from `list`: its elements in the
// DNAT map for that many endpoints (returns the cascade chain that tries
// those maps), or with affinity the port's own chain.
std::string PortCompiler::picker(const std::vector<EndpointAddress>& list, KeyKind kind, Flavour flavour,
                                 const ir::ValueList& key, bool local) {
  if (sp_.affinity_timeout_seconds) return affinity_picker(list, local);
  const size_t n = list.size();
  const uint32_t set = ledger_.dnat_map(kind, flavour, n);
  for (size_t slot = 0; slot < n; ++slot) {
    Contribution c;
    c.set = set;
    c.element.key = key;
    c.element.key.emplace_back(static_cast<uint32_t>(slot));
    c.element.data = {list[slot].ip, list[slot].port};
    out_.elements.push_back(std::move(c));
  }
  return cascade_chain_name(kind, flavour);
}

// ClientIP affinity: a dynamic set per endpoint remembers its clients
// (kube-proxy's shape). Costs kernel objects per endpoint, so only affinity
// services pay it.
std::string PortCompiler::affinity_picker(const std::vector<EndpointAddress>& list, bool local) {
  const std::string chain = std::string(local ? "affinity-local-" : "affinity-cluster-") + id_;
  auto& chains = out_.chains;
  auto& sets = out_.sets;
  if (std::any_of(chains.begin(), chains.end(), [&](const ir::Chain& c) { return c.name == chain; })) return chain;
  std::vector<ir::Rule> rules;
  std::vector<std::string> targets;
  for (const auto& ep : list) {
    const std::string suffix = id_ + "__" + endpoint_suffix(ep);
    const std::string set = "affinity-" + suffix;
    const std::string ep_chain = "endpoint-" + suffix;
    targets.push_back(ep_chain);
    rules.push_back(rule({ir::AddrMatch{ir::KeyField::SrcAddr, false, std::nullopt, set}}, {goto_chain(ep_chain)}));
    if (std::any_of(sets.begin(), sets.end(), [&](const ir::Set& s) { return s.name == set; })) continue;
    ir::Set s;
    s.name = set;
    s.key = {ir::KeyType::Addr};
    s.dynamic = true;
    s.timeout_seconds = *sp_.affinity_timeout_seconds;
    sets.push_back(std::move(s));
    chains.push_back(ir::Chain{ep_chain,
                               std::nullopt,
                               {rule({}, {ir::SetUpdateStmt{set}}),
                                rule({ir::ProtoMatch{sp_.name.protocol}}, {ir::DnatStmt{ep.ip, ep.port}})}});
  }
  rules.push_back(rule({}, {ir::NumgenVmapStmt{targets}}));
  chains.push_back(ir::Chain{chain, std::nullopt, std::move(rules)});
  return chain;
}

// Session affinity keeps the per-service shape (chains of the service's
// own, reached through the verdict maps): the endpoint is remembered per
// client. Only called with endpoints.
std::vector<ir::Rule> PortCompiler::affinity_external_rules(KeyKind kind, const ir::ValueList& key) {
  std::vector<ir::Rule> rules;
  const auto& cluster = sp_.cluster_endpoints;
  if (sp_.external_traffic_policy == TrafficPolicy::Cluster) {
    rules.push_back(mark_for_masquerade());
    rules.push_back(rule({}, {goto_chain(picker(cluster, kind, Flavour::Main, key, false))}));
    return rules;
  }
  const std::string shortcut = picker(cluster, kind, Flavour::Shortcut, key, false);
  if (auto local = config_.local_match(false)) rules.push_back(rule({std::move(*local)}, {goto_chain(shortcut)}));
  rules.push_back(mark_for_masquerade({ir::FibLocalMatch{ir::KeyField::SrcAddr}}));
  rules.push_back(rule({ir::FibLocalMatch{ir::KeyField::SrcAddr}}, {goto_chain(shortcut)}));
  if (sp_.local_endpoints.empty()) {
    rules.push_back(rule({}, counted_drop()));
  } else {
    rules.push_back(rule({}, {goto_chain(picker(sp_.local_endpoints, kind, Flavour::Main, key, true))}));
  }
  return rules;
}

// An external key (external IP, LB IP, NodePort) without affinity: adds its
// DNAT elements and returns its class set (for addresses, also the name of
// the shared chain its packets go to).
std::string PortCompiler::external_class(KeyKind kind, const ir::ValueList& key) {
  const bool nodeport = kind == KeyKind::NodePort;
  if (sp_.cluster_endpoints.empty()) {
    count_rejected(kind, key);
    return nodeport ? cls::kNodePortReject : cls::kReject;
  }
  if (sp_.external_traffic_policy == TrafficPolicy::Cluster) {
    picker(sp_.cluster_endpoints, kind, Flavour::Main, key, false);
    return nodeport ? cls::kNodePortExternal : cls::kExternal;
  }
  picker(sp_.cluster_endpoints, kind, Flavour::Shortcut, key, false);
  if (sp_.local_endpoints.empty()) {
    count_dropped(kind, key);  // from outside: no local endpoint
  } else {
    picker(sp_.local_endpoints, kind, Flavour::Main, key, true);
  }
  return nodeport ? cls::kNodePortExternalLocal : cls::kExternalLocal;
}

}  // namespace

Fragment compile_port(const ServicePortState& sp, const TableConfig& config, ElementLedger& ledger,
                      const AddressClaims& claims, std::vector<std::string>& warnings) {
  return PortCompiler(sp, config, ledger, claims, warnings).run();
}

}  // namespace svcproxy::dataplane::detail
