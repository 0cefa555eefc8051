#include "dataplane/compile.h"

#include <algorithm>
#include <deque>
#include <iterator>
#include <type_traits>
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

// The chain that tries every DNAT map of one kind and flavour in turn (a
// map miss falls through to the next rule): `dnat-maps`,
// `dnat-nodeport-maps`, `dnat-shortcut-maps`, `dnat-nodeport-shortcut-maps`
// (`dnat` alone is an nft keyword).
std::string cascade_chain_name(KeyKind kind, Flavour flavour) {
  std::string name = "dnat-";
  if (kind == KeyKind::NodePort) name += "nodeport-";
  if (flavour == Flavour::Shortcut) name += "shortcut-";
  return name + "maps";
}

// Shared chains a service port's keys are classified into by set membership
// (sets of the same name hold the keys): no chain and no verdict element per
// service, so adding or changing one is element changes in data sets only.
namespace cls {
constexpr const char* kClusterIP = "cluster-ip";           // ClusterIP keys with usable endpoints
constexpr const char* kExternal = "external";              // eTP=Cluster external addresses
constexpr const char* kExternalLocal = "external-local";   // eTP=Local external addresses
constexpr const char* kReject = "no-endpoints";            // no endpoints: reject (any key kind)
constexpr const char* kDrop = "no-local-endpoints";  // iTP=Local, none on this node: drop (set only)
constexpr const char* kNodePorts = "nodeports";            // chain: NodePort classification
constexpr const char* kNodePortExternal = "nodeport-external";
constexpr const char* kNodePortExternalLocal = "nodeport-external-local";
constexpr const char* kNodePortReject = "nodeport-no-endpoints";  // set only; its chain is no-endpoints
}  // namespace cls

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

ir::Verdict goto_chain(std::string chain) { return {ir::VerdictKind::Goto, std::move(chain)}; }
ir::Verdict jump_chain(std::string chain) { return {ir::VerdictKind::Jump, std::move(chain)}; }

using ir::sort_elements;

// A key a service port needs to own exclusively: an address:proto:port in
// the service-ips map, or a proto:NodePort. Two services wanting the same key
// is a conflict the API server prevents but manifests do not; the smallest
// port name wins, deterministically, in full and incremental compiles alike.
struct ClaimKey {
  bool node_port = false;
  IPAddress ip;  // zero for NodePorts
  model::Protocol protocol = model::Protocol::TCP;
  uint16_t port = 0;
  auto operator<=>(const ClaimKey&) const = default;
};

// What one service port contributes to its table: its own chains and sets,
// and elements of the shared sets (by interned set id).
struct Contribution {
  uint32_t set = 0;
  ir::Element element;
  auto operator<=>(const Contribution&) const = default;
};

struct Fragment {
  std::vector<ir::Chain> chains;  // sorted by name
  std::vector<ir::Set> sets;      // sorted by name
  std::vector<Contribution> elements;  // sorted
};

struct PortRecord {
  ServicePortState state;
  Fragment fragment;
};

struct DnatSpec {
  KeyKind kind;
  Flavour flavour;
  size_t n;
};

// Shared sets whose elements several ports may contribute (a ClusterIP of a
// multi-port service, an endpoint IP behind several services): present while
// any port contributes them.
bool is_refcounted(std::string_view set) { return set == names::kClusterIPs || set == names::kHairpin; }

}  // namespace

// One family's table: the fixed objects (from the node config), every port's
// fragment, and the bookkeeping that makes updates O(changes).
class TableState {
 public:
  TableState(IPFamily family, const model::NodeConfig& node) : family_(family), node_(node) {
    for (const auto& cidr : node.cluster_cidrs)
      if (cidr.family() == family) cluster_cidrs_.push_back(cidr);
    for (const auto& cidr : node.service_cidrs)
      if (cidr.family() == family) service_cidrs_.push_back(cidr);
    masq_bits_ = uint32_t{1} << node.masquerade_bit;
    build_fixed();
  }

  // Applies new states for the given services' ports in this family (ports
  // of those services not in `ports` are removed). Records the net change in
  // `diff` unless it is null.
  void update(const std::set<model::ObjectRef>& services, const std::vector<const ServicePortState*>& ports,
              TableDiff* diff, bool& needs_full, std::vector<StaleUdpFlow>* stale);
  ir::Table table() const;
  // The table with every fragment's contents moved out (compile(): the
  // state is discarded right after, so nothing is copied).
  ir::Table take_table();
  // The table by reference (RulesetRef): what apply_full encodes.
  void ref(ir::RulesetRef::TableRef& out, ir::RulesetRef::Storage& storage) const;
  IPFamily family() const { return family_; }
  // Calls f(service) for each port held (a service once per port).
  template <typename F>
  void each_service(F f) const {
    for (const auto& [name, record] : ports_) f(name.service);
  }
  size_t port_count(const model::ObjectRef& service) const {
    auto [begin, end] = service_ports(service);
    return static_cast<size_t>(std::distance(begin, end));
  }
  const ServicePortState* port(const model::ServicePortName& name) const {
    auto it = ports_.find(name);
    return it == ports_.end() ? nullptr : &it->second.state;
  }
  const ir::Set* definition(const std::string& name) const {
    auto it = set_ids_.find(name);
    return it == set_ids_.end() ? nullptr : &definitions_[it->second];
  }
  std::vector<std::string> warnings;

 private:
  void build_fixed();
  uint32_t set_id(const std::string& name, const ir::Set* definition = nullptr);
  uint32_t dnat_set(KeyKind kind, Flavour flavour, size_t n);
  std::vector<ClaimKey> wants(const ServicePortState& sp) const;
  bool wins(const ClaimKey& key, const ServicePortState& sp);
  Fragment compile_port(const ServicePortState& sp);
  std::string picker(const ServicePortState& sp, const std::string& id, const std::vector<EndpointAddress>& list,
                     KeyKind kind, Flavour flavour, const ir::ValueList& key, bool local, Fragment& out);
  std::vector<ir::Rule> affinity_external_rules(const ServicePortState& sp, const std::string& id, KeyKind kind,
                                                const ir::ValueList& key, Fragment& out);
  // The match for "from this node's pods" (negate: "not from them"), by
  // --detect-local-mode; none when nothing can be recognised (no pod CIDR
  // of this family). kube-proxy's LocalTrafficDetector.
  std::optional<ir::Match> local_match(bool negate) const {
    switch (node_.local_detect) {
      case model::LocalDetect::CIDRs:
        if (cluster_cidrs_.empty()) return std::nullopt;
        return ir::AddrMatch{ir::KeyField::SrcAddr, negate, std::nullopt, names::kClusterCIDRs};
      case model::LocalDetect::BridgeInterface:
        return ir::IifnameMatch{node_.local_interface, false, negate};
      case model::LocalDetect::InterfaceNamePrefix:
        return ir::IifnameMatch{node_.local_interface, true, negate};
    }
    return std::nullopt;
  }
  ir::Rule mark_for_masquerade(std::vector<ir::Match> matches = {}) const {
    return rule(std::move(matches), {jump_chain(names::kMarkForMasquerade)});
  }
  // Element bookkeeping; `touched_` remembers the state before this update
  // so that only the net change reaches the kernel.
  void contribute(const Contribution& c, int delta, TableDiff* diff);
  void diff_fragment(const Fragment& before, const Fragment& after, TableDiff* diff, bool& needs_full);
  // The hairpin set's change when a port's endpoints go from `before` to
  // `after` (null: no port). Derived from the states, which the compiler
  // keeps anyway, rather than kept as contributions in every fragment.
  void hairpin_delta(const ServicePortState* before, const ServicePortState* after, TableDiff* diff);
  // The chain `dnat-N` binding map `dnat-N`, and the cascade chain of one
  // kind and flavour: a jump to each such chain in use, by ascending N.
  ir::Chain dnat_chain(const DnatSpec& spec, const std::string& name) const;
  ir::Chain cascade_chain(KeyKind kind, Flavour flavour) const;
  std::string external_class(const ServicePortState& sp, KeyKind kind, const ir::ValueList& key, Fragment& out);
  template <bool kTake>
  ir::Table make_table(std::conditional_t<kTake, TableState&, const TableState&> self) const;

  IPFamily family_;
  const model::NodeConfig& node_;
  std::vector<model::CIDR> cluster_cidrs_;
  std::vector<model::CIDR> service_cidrs_;
  uint32_t masq_bits_ = 0;

  std::vector<ir::Chain> fixed_chains_;
  std::vector<ir::Set> fixed_sets_;  // with elements; never change
  // Interned shared sets: definitions (no elements) by id.
  std::map<std::string, uint32_t> set_ids_;
  std::vector<ir::Set> definitions_;
  std::map<uint32_t, DnatSpec> dnat_specs_;
  // Present elements per shared set: refcounted sets keep counts per
  // element; the others count contributions (each unique by claims).
  // Refcounted sets are keyed by one address (cluster-ips: ip; hairpin:
  // ip . ip), so they are counted by that address.
  std::vector<std::map<IPAddress, int>> refs_;
  std::vector<size_t> counts_;

  // A service's ports are one contiguous range of ports_ (names order by
  // service first), so no index by service is kept.
  std::map<model::ServicePortName, PortRecord> ports_;
  using PortIterator = std::map<model::ServicePortName, PortRecord>::const_iterator;
  std::pair<PortIterator, PortIterator> service_ports(const model::ObjectRef& service) const {
    const model::ServicePortName first{service, {}, static_cast<model::Protocol>(0), IPFamily::V4};
    const auto begin = ports_.lower_bound(first);
    auto end = begin;
    while (end != ports_.end() && end->first.service == service) ++end;
    return {begin, end};
  }
  std::map<ClaimKey, std::set<model::ServicePortName>> claims_;
  std::map<uint32_t, size_t> touched_dnat_;                       // set id -> count before
  std::map<std::pair<uint32_t, IPAddress>, bool> touched_refs_;  // -> present before
  ir::Element refcounted_element(uint32_t set, const IPAddress& ip) const {
    ir::Element e;
    for (size_t i = 0; i < definitions_[set].key.size(); ++i) e.key.push_back(ip);
    return e;
  }
};

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

uint32_t TableState::set_id(const std::string& name, const ir::Set* definition) {
  auto [it, inserted] = set_ids_.try_emplace(name, static_cast<uint32_t>(definitions_.size()));
  if (inserted) {
    definitions_.push_back(definition ? *definition : ir::Set{});
    refs_.emplace_back();
    counts_.push_back(0);
  }
  return it->second;
}

uint32_t TableState::dnat_set(KeyKind kind, Flavour flavour, size_t n) {
  const std::string name = dnat_chain_name(kind, flavour, n);
  auto it = set_ids_.find(name);
  if (it != set_ids_.end()) return it->second;
  ir::Set m;
  m.name = name;
  if (kind == KeyKind::Address) {
    m.key = {ir::KeyType::Addr, ir::KeyType::Proto, ir::KeyType::Port, ir::KeyType::Slot};
  } else {
    m.key = {ir::KeyType::Proto, ir::KeyType::Port, ir::KeyType::Slot};
  }
  m.data = {ir::KeyType::Addr, ir::KeyType::Port};
  const uint32_t id = set_id(name, &m);
  dnat_specs_[id] = DnatSpec{kind, flavour, n};
  return id;
}

ir::Chain TableState::dnat_chain(const DnatSpec& spec, const std::string& name) const {
  // The only rule binding the map: the kernel's cost of a binding grows
  // with the map, so one per map, whatever the number of services, and never
  // rewritten while the map lives.
  std::vector<ir::KeyField> key;
  if (spec.kind == KeyKind::Address) {
    key = {ir::KeyField::DstAddr, ir::KeyField::L4Proto, ir::KeyField::DstPort, ir::KeyField::Numgen};
  } else {
    key = {ir::KeyField::L4Proto, ir::KeyField::DstPort, ir::KeyField::Numgen};
  }
  return ir::Chain{name, std::nullopt, {rule({}, {ir::DnatMapStmt{key, name, static_cast<uint32_t>(spec.n)}})}};
}

ir::Chain TableState::cascade_chain(KeyKind kind, Flavour flavour) const {
  // A jump to each map's chain, by ascending N. A key's elements are in
  // exactly one map of a kind and flavour: the other maps miss, their chain
  // returns, and the next is tried. Rewriting this chain when a map comes
  // or goes binds no map.
  std::vector<std::pair<size_t, uint32_t>> maps;  // n, set id
  for (const auto& [id, spec] : dnat_specs_)
    if (spec.kind == kind && spec.flavour == flavour && counts_[id] > 0) maps.emplace_back(spec.n, id);
  std::sort(maps.begin(), maps.end());
  std::vector<ir::Rule> rules;
  for (const auto& [n, id] : maps) rules.push_back(rule({}, {jump_chain(definitions_[id].name)}));
  return ir::Chain{cascade_chain_name(kind, flavour), std::nullopt, std::move(rules)};
}

std::vector<ClaimKey> TableState::wants(const ServicePortState& sp) const {
  std::vector<ClaimKey> keys;
  keys.push_back({false, sp.cluster_ip, sp.name.protocol, sp.port});
  for (const auto& ip : sp.external_ips) keys.push_back({false, ip, sp.name.protocol, sp.port});
  for (const auto& ip : sp.load_balancer_ips) keys.push_back({false, ip, sp.name.protocol, sp.port});
  if (sp.node_port) keys.push_back({true, IPAddress{}, sp.name.protocol, sp.node_port});
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

bool TableState::wins(const ClaimKey& key, const ServicePortState& sp) {
  auto it = claims_.find(key);
  if (it == claims_.end() || it->second.empty()) return false;
  const auto& winner = *it->second.begin();
  if (winner == sp.name) return true;
  const std::string proto(model::to_lower(sp.name.protocol));
  if (key.node_port) {
    warnings.push_back("service port " + sp.name.str() + ": nodePort " + std::to_string(key.port) + "/" + proto +
                       " is already used by " + winner.str() + "; nodePort skipped");
  } else {
    warnings.push_back("service port " + sp.name.str() + ": " + model::format_endpoint(key.ip, key.port) + "/" +
                       proto + " is already served by " + winner.str() + "; address skipped");
  }
  return false;
}

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

void TableState::contribute(const Contribution& c, int delta, TableDiff* diff) {
  const auto& name = definitions_[c.set].name;
  if (is_refcounted(name)) {
    auto& refs = refs_[c.set];
    const IPAddress ip = std::get<IPAddress>(c.element.key[0]);
    auto it = refs.find(ip);
    const bool present = it != refs.end();
    if (diff) touched_refs_.try_emplace({c.set, ip}, present);
    if (delta > 0) {
      if (present) ++it->second; else refs.emplace(ip, 1);
    } else if (present && --it->second == 0) {
      refs.erase(it);
    }
    return;
  }
  auto dnat = dnat_specs_.find(c.set);
  if (dnat != dnat_specs_.end() && diff) touched_dnat_.try_emplace(c.set, counts_[c.set]);
  counts_[c.set] += static_cast<size_t>(delta);  // wraps correctly for -1
  if (diff) (delta > 0 ? diff->added_elements : diff->deleted_elements).emplace_back(name, c.element);
}

void TableState::diff_fragment(const Fragment& before, const Fragment& after, TableDiff* diff, bool& needs_full) {
  // Elements: both lists are sorted; walk them together.
  size_t i = 0, j = 0;
  while (i < before.elements.size() || j < after.elements.size()) {
    if (j == after.elements.size() || (i < before.elements.size() && before.elements[i] < after.elements[j])) {
      contribute(before.elements[i++], -1, diff);
    } else if (i == before.elements.size() || after.elements[j] < before.elements[i]) {
      contribute(after.elements[j++], +1, diff);
    } else {
      ++i, ++j;
    }
  }
  if (!diff) return;
  // Chains, by name.
  i = j = 0;
  while (i < before.chains.size() || j < after.chains.size()) {
    if (j == after.chains.size() || (i < before.chains.size() && before.chains[i].name < after.chains[j].name)) {
      diff->deleted_chains.push_back(before.chains[i++].name);
    } else if (i == before.chains.size() || after.chains[j].name < before.chains[i].name) {
      diff->added_chains.push_back(after.chains[j++]);
    } else {
      if (before.chains[i] != after.chains[j]) diff->replaced_chains.push_back(after.chains[j]);
      ++i, ++j;
    }
  }
  // Sets (affinity), by name. A changed definition cannot be edited in place.
  i = j = 0;
  while (i < before.sets.size() || j < after.sets.size()) {
    if (j == after.sets.size() || (i < before.sets.size() && before.sets[i].name < after.sets[j].name)) {
      diff->deleted_sets.push_back(before.sets[i++].name);
    } else if (i == before.sets.size() || after.sets[j].name < before.sets[i].name) {
      diff->added_sets.push_back(after.sets[j++]);
    } else {
      if (before.sets[i] != after.sets[j]) needs_full = true;
      ++i, ++j;
    }
  }
}

namespace {

// Every address a port may DNAT to, sorted and unique: kube-proxy
// masquerades a connection that lands on its own client for every endpoint,
// wherever its slice says it runs (a selectorless service's endpoints have
// no nodeName; traffic may reach this node from anywhere). The local list
// can hold endpoints the cluster list lacks (topology hints, terminating
// fallback), so both count.
std::vector<IPAddress> hairpin_addresses(const ServicePortState* sp) {
  std::vector<IPAddress> out;
  if (!sp) return out;
  out.reserve(sp->cluster_endpoints.size() + sp->local_endpoints.size());
  for (const auto& ep : sp->cluster_endpoints) out.push_back(ep.ip);
  for (const auto& ep : sp->local_endpoints) out.push_back(ep.ip);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

void TableState::hairpin_delta(const ServicePortState* before, const ServicePortState* after, TableDiff* diff) {
  const uint32_t set = set_ids_.at(names::kHairpin);
  const auto old_ips = hairpin_addresses(before);
  const auto new_ips = hairpin_addresses(after);
  auto change = [&](const IPAddress& ip, int delta) { contribute({set, refcounted_element(set, ip)}, delta, diff); };
  size_t i = 0, j = 0;
  while (i < old_ips.size() || j < new_ips.size()) {
    if (j == new_ips.size() || (i < old_ips.size() && old_ips[i] < new_ips[j])) {
      change(old_ips[i++], -1);
    } else if (i == old_ips.size() || new_ips[j] < old_ips[i]) {
      change(new_ips[j++], +1);
    } else {
      ++i, ++j;
    }
  }
}

namespace {

// kube-proxy's UDP conntrack rule: entries whose reply comes from an
// endpoint that is gone are deleted, for every address of the port; and when
// a port goes from no endpoints to some, every entry to its addresses.
void stale_udp_flows(const ServicePortState& before, const ServicePortState* after,
                     std::vector<StaleUdpFlow>& out) {
  if (before.name.protocol != model::Protocol::UDP) return;
  auto endpoints = [](const ServicePortState& sp) {
    std::set<EndpointAddress> all(sp.cluster_endpoints.begin(), sp.cluster_endpoints.end());
    all.insert(sp.local_endpoints.begin(), sp.local_endpoints.end());
    return all;
  };
  auto each_address = [&](const ServicePortState& sp, const std::optional<EndpointAddress>& ep) {
    const auto family = sp.name.family;
    out.push_back({family, sp.cluster_ip, sp.port, ep});
    for (const auto& ip : sp.external_ips) out.push_back({family, ip, sp.port, ep});
    for (const auto& ip : sp.load_balancer_ips) out.push_back({family, ip, sp.port, ep});
    if (sp.node_port) out.push_back({family, std::nullopt, sp.node_port, ep});
  };
  const auto old_endpoints = endpoints(before);
  const auto new_endpoints = after ? endpoints(*after) : std::set<EndpointAddress>{};
  for (const auto& ep : old_endpoints)
    if (!new_endpoints.contains(ep)) each_address(before, ep);
  if (after && before.cluster_endpoints.empty() && !after->cluster_endpoints.empty())
    each_address(*after, std::nullopt);
}

}  // namespace

void TableState::update(const std::set<model::ObjectRef>& services,
                        const std::vector<const ServicePortState*>& ports, TableDiff* diff, bool& needs_full,
                        std::vector<StaleUdpFlow>* stale) {
  std::map<model::ServicePortName, const ServicePortState*> incoming;
  for (const auto* sp : ports)
    if (sp->name.family == family_) incoming[sp->name] = sp;

  // 1. Register the new claims and find whose ownership changes. With
  // nothing compiled yet (a reset) every incoming port is compiled anyway,
  // so neither the winners nor the set of ports to recompile are tracked:
  // at 50k services those temporaries were ~20 MiB of the peak.
  const bool fresh = ports_.empty();
  std::set<model::ServicePortName> recompile, removed;
  std::map<ClaimKey, std::optional<model::ServicePortName>> winner_before;
  auto note_winner = [&](const ClaimKey& key) {
    if (winner_before.contains(key)) return;
    auto it = claims_.find(key);
    winner_before[key] = it == claims_.end() || it->second.empty() ? std::nullopt
                                                                   : std::optional(*it->second.begin());
  };
  for (const auto& service : services) {
    const auto [begin, end] = service_ports(service);
    for (auto port = begin; port != end; ++port) {
      const auto& [name, record] = *port;
      auto in = incoming.find(name);
      if (in != incoming.end() && *in->second == record.state) continue;  // unchanged
      for (const auto& key : wants(record.state)) {
        note_winner(key);
        auto& owners = claims_[key];
        owners.erase(name);
        if (owners.empty()) claims_.erase(key);
      }
      if (in == incoming.end()) removed.insert(name);
    }
  }
  for (const auto& [name, sp] : incoming) {
    auto existing = ports_.find(name);
    if (existing != ports_.end() && existing->second.state == *sp) continue;
    for (const auto& key : wants(*sp)) {
      if (!fresh) note_winner(key);
      claims_[key].insert(name);
    }
    if (!fresh) recompile.insert(name);
  }
  for (const auto& [key, before] : winner_before) {
    auto it = claims_.find(key);
    const std::optional<model::ServicePortName> after =
        it == claims_.end() || it->second.empty() ? std::nullopt : std::optional(*it->second.begin());
    if (before == after) continue;
    for (const auto& w : {before, after})
      if (w && !removed.contains(*w) && (ports_.contains(*w) || incoming.contains(*w))) recompile.insert(*w);
  }

  // 2. Remove ports that are gone, then (re)compile the rest.
  static const Fragment kEmpty;
  for (const auto& name : removed) {
    auto it = ports_.find(name);
    if (stale) stale_udp_flows(it->second.state, nullptr, *stale);
    hairpin_delta(&it->second.state, nullptr, diff);
    diff_fragment(it->second.fragment, kEmpty, diff, needs_full);
    ports_.erase(it);
  }
  auto recompile_port = [&](const model::ServicePortName& name) {
    auto in = incoming.find(name);
    auto existing = ports_.find(name);
    if (stale && existing != ports_.end() && in != incoming.end())
      stale_udp_flows(existing->second.state, in->second, *stale);
    auto& record = ports_[name];
    if (in != incoming.end()) {
      hairpin_delta(existing != ports_.end() ? &record.state : nullptr, in->second, diff);
      record.state = *in->second;
    }
    Fragment fragment = compile_port(record.state);
    diff_fragment(record.fragment, fragment, diff, needs_full);
    record.fragment = std::move(fragment);
  };
  if (fresh) {
    for (const auto& [name, sp] : incoming) recompile_port(name);
  } else {
    for (const auto& name : recompile) recompile_port(name);
  }
  if (!diff) return;

  // 3. Net changes of shared objects: refcounted elements and DNAT maps.
  for (const auto& [key, was_present] : touched_refs_) {
    const bool present = refs_[key.first].contains(key.second);
    if (present == was_present) continue;
    (present ? diff->added_elements : diff->deleted_elements)
        .emplace_back(definitions_[key.first].name, refcounted_element(key.first, key.second));
  }
  touched_refs_.clear();
  // A DNAT map that appears or goes changes its cascade chain: rewritten
  // after the map is added, before it is deleted (apply_partial's order).
  std::set<std::pair<KeyKind, Flavour>> cascades;
  for (const auto& [id, before] : touched_dnat_) {
    const size_t now = counts_[id];
    const auto& name = definitions_[id].name;
    const auto& spec = dnat_specs_.at(id);
    if (before == 0 && now > 0) {
      diff->added_sets.push_back(definitions_[id]);
      diff->added_chains.push_back(dnat_chain(spec, name));
      cascades.emplace(spec.kind, spec.flavour);
    } else if (before > 0 && now == 0) {
      // Deleting the map deletes its elements; drop the individual deletes.
      std::erase_if(diff->deleted_elements, [&](const auto& e) { return e.first == name; });
      diff->deleted_chains.push_back(name);
      diff->deleted_sets.push_back(name);
      cascades.emplace(spec.kind, spec.flavour);
    }
  }
  for (const auto& [kind, flavour] : cascades) diff->replaced_chains.push_back(cascade_chain(kind, flavour));
  touched_dnat_.clear();
}

// Builds the table: copies every fragment's objects (kTake: moves them out
// and frees each fragment as it goes, so the ruleset is never held twice).
template <bool kTake>
ir::Table TableState::make_table(std::conditional_t<kTake, TableState&, const TableState&> self) const {
  ir::Table table;
  table.family = family_;
  table.name = names::kTable;
  // Gather the shared sets' elements from every fragment.
  std::vector<std::vector<ir::Element>> elements(definitions_.size());
  for (uint32_t id = 0; id < definitions_.size(); ++id) {
    if (is_refcounted(definitions_[id].name)) {
      elements[id].reserve(refs_[id].size());
      for (const auto& [ip, count] : refs_[id]) elements[id].push_back(refcounted_element(id, ip));
    } else {
      elements[id].reserve(counts_[id]);
    }
  }
  size_t chain_count = fixed_chains_.size() + 4 + dnat_specs_.size(), set_count = fixed_sets_.size() + definitions_.size();
  for (const auto& [name, record] : ports_) {
    chain_count += record.fragment.chains.size();
    set_count += record.fragment.sets.size();
  }
  std::vector<ir::Chain> chains = fixed_chains_;
  std::vector<ir::Set> sets = fixed_sets_;
  chains.reserve(chain_count);
  sets.reserve(set_count);
  for (auto& [name, record] : self.ports_) {
    auto& fragment = record.fragment;
    if constexpr (kTake) {
      for (auto& c : fragment.elements)
        if (!is_refcounted(definitions_[c.set].name)) elements[c.set].push_back(std::move(c.element));
      std::move(fragment.chains.begin(), fragment.chains.end(), std::back_inserter(chains));
      std::move(fragment.sets.begin(), fragment.sets.end(), std::back_inserter(sets));
      fragment = Fragment{};
    } else {
      for (const auto& c : fragment.elements)
        if (!is_refcounted(definitions_[c.set].name)) elements[c.set].push_back(c.element);
      chains.insert(chains.end(), fragment.chains.begin(), fragment.chains.end());
      sets.insert(sets.end(), fragment.sets.begin(), fragment.sets.end());
    }
  }
  for (auto kind : {KeyKind::Address, KeyKind::NodePort})
    for (auto flavour : {Flavour::Main, Flavour::Shortcut}) chains.push_back(cascade_chain(kind, flavour));
  for (uint32_t id = 0; id < definitions_.size(); ++id) {
    auto dnat = dnat_specs_.find(id);
    if (dnat != dnat_specs_.end()) {
      if (elements[id].empty()) continue;  // a map exists only while used
      chains.push_back(dnat_chain(dnat->second, definitions_[id].name));
    }
    ir::Set set = definitions_[id];
    set.elements = std::move(elements[id]);
    sort_elements(set.elements);
    sets.push_back(std::move(set));
  }
  std::sort(chains.begin(), chains.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::sort(sets.begin(), sets.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  table.chains = std::move(chains);
  table.sets = std::move(sets);
  return table;
}

ir::Table TableState::table() const { return make_table<false>(*this); }

ir::Table TableState::take_table() { return make_table<true>(*this); }

}  // namespace svcproxy::dataplane

// What a RulesetRef owns: objects that exist only in the view (the DNAT
// chains and the refcounted sets' elements, which the compiler keeps as
// counts).
struct svcproxy::dataplane::ir::RulesetRef::Storage {
  std::deque<Chain> chains;
  std::deque<Element> elements;
};

namespace svcproxy::dataplane {

void TableState::ref(ir::RulesetRef::TableRef& out, ir::RulesetRef::Storage& storage) const {
  out.header.family = family_;
  out.header.name = names::kTable;
  std::vector<std::vector<const ir::Element*>> elements(definitions_.size());
  for (uint32_t id = 0; id < definitions_.size(); ++id) {
    if (is_refcounted(definitions_[id].name)) {
      elements[id].reserve(refs_[id].size());
      for (const auto& [ip, count] : refs_[id]) elements[id].push_back(&storage.elements.emplace_back(refcounted_element(id, ip)));
    } else {
      elements[id].reserve(counts_[id]);
    }
  }
  for (const auto& chain : fixed_chains_) out.chains.push_back(&chain);
  for (const auto& set : fixed_sets_) out.sets.push_back({&set, {}});
  for (const auto& [name, record] : ports_) {
    for (const auto& c : record.fragment.elements)
      if (!is_refcounted(definitions_[c.set].name)) elements[c.set].push_back(&c.element);
    for (const auto& chain : record.fragment.chains) out.chains.push_back(&chain);
    for (const auto& set : record.fragment.sets) out.sets.push_back({&set, {}});
  }
  for (auto kind : {KeyKind::Address, KeyKind::NodePort})
    for (auto flavour : {Flavour::Main, Flavour::Shortcut})
      out.chains.push_back(&storage.chains.emplace_back(cascade_chain(kind, flavour)));
  for (uint32_t id = 0; id < definitions_.size(); ++id) {
    auto dnat = dnat_specs_.find(id);
    if (dnat != dnat_specs_.end()) {
      if (elements[id].empty()) continue;  // a map exists only while used
      out.chains.push_back(&storage.chains.emplace_back(dnat_chain(dnat->second, definitions_[id].name)));
    }
    out.sets.push_back({&definitions_[id], std::move(elements[id])});
  }
  std::sort(out.chains.begin(), out.chains.end(), [](const auto* a, const auto* b) { return a->name < b->name; });
  std::sort(out.sets.begin(), out.sets.end(), [](const auto& a, const auto& b) { return a.set->name < b.set->name; });
}

namespace {
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

struct RulesetCompiler::Impl {
  model::NodeConfig node;
  std::vector<TableState> tables;
  explicit Impl(model::NodeConfig n) : node(std::move(n)) {
    tables.emplace_back(IPFamily::V4, node);
    tables.emplace_back(IPFamily::V6, node);
  }

  RulesetDiff apply(const std::set<model::ObjectRef>& services, const std::vector<ServicePortState>& ports,
                    bool record) {
    std::vector<const ServicePortState*> pointers;
    pointers.reserve(ports.size());
    for (const auto& p : ports) pointers.push_back(&p);
    RulesetDiff diff;
    for (auto& table : tables) {
      TableDiff table_diff;
      table_diff.family = table.family();
      table.update(services, pointers, record ? &table_diff : nullptr, diff.needs_full_sync,
                   record ? &diff.stale_udp_flows : nullptr);
      diff.tables.push_back(std::move(table_diff));
    }
    std::sort(diff.stale_udp_flows.begin(), diff.stale_udp_flows.end());
    diff.stale_udp_flows.erase(std::unique(diff.stale_udp_flows.begin(), diff.stale_udp_flows.end()),
                               diff.stale_udp_flows.end());
    return diff;
  }
};

RulesetCompiler::RulesetCompiler(model::NodeConfig node) : impl_(std::make_unique<Impl>(std::move(node))) {}
RulesetCompiler::~RulesetCompiler() = default;
RulesetCompiler::RulesetCompiler(RulesetCompiler&&) noexcept = default;
RulesetCompiler& RulesetCompiler::operator=(RulesetCompiler&&) noexcept = default;

RulesetDiff RulesetCompiler::update(const std::vector<model::ObjectRef>& services,
                                    const std::vector<model::ServicePortState>& ports) {
  return impl_->apply(std::set<model::ObjectRef>(services.begin(), services.end()), ports, true);
}

RulesetDiff RulesetCompiler::replace_all(const std::vector<model::ServicePortState>& ports) {
  // Compared with the ports the tables hold (no second copy of the state is
  // kept for this): a service changed if it is new, gone, or any port differs.
  std::map<model::ObjectRef, std::vector<const ServicePortState*>> wanted;
  for (const auto& p : ports) wanted[p.name.service].push_back(&p);
  std::set<model::ObjectRef> changed;
  std::vector<ServicePortState> changed_ports;
  for (const auto& table : impl_->tables)
    table.each_service([&](const model::ObjectRef& service) {
      if (!wanted.contains(service)) changed.insert(service);
    });
  for (const auto& [service, list] : wanted) {
    size_t known = 0;
    for (const auto& table : impl_->tables) known += table.port_count(service);
    bool same = known == list.size();
    for (size_t i = 0; same && i < list.size(); ++i) {
      const ServicePortState* held = impl_->tables[list[i]->name.family == IPFamily::V4 ? 0 : 1].port(list[i]->name);
      same = held && *held == *list[i];
    }
    if (same) continue;
    changed.insert(service);
    for (const auto* p : list) changed_ports.push_back(*p);
  }
  return impl_->apply(changed, changed_ports, true);
}

ir::Ruleset RulesetCompiler::ruleset() const {
  ir::Ruleset ruleset;
  for (const auto& table : impl_->tables) ruleset.tables.push_back(table.table());
  return ruleset;
}

ir::Ruleset RulesetCompiler::take_ruleset() && {
  ir::Ruleset ruleset;
  for (auto& table : impl_->tables) ruleset.tables.push_back(table.take_table());
  impl_.reset();
  return ruleset;
}

ir::RulesetRef RulesetCompiler::ruleset_ref() const {
  ir::RulesetRef ref;
  ref.storage = std::make_shared<ir::RulesetRef::Storage>();
  for (const auto& table : impl_->tables) table.ref(ref.tables.emplace_back(), *ref.storage);
  return ref;
}

std::vector<std::string> RulesetCompiler::take_warnings() {
  std::vector<std::string> out;
  for (auto& table : impl_->tables) {
    out.insert(out.end(), table.warnings.begin(), table.warnings.end());
    table.warnings.clear();
  }
  return out;
}

const model::NodeConfig& RulesetCompiler::node() const { return impl_->node; }

const ir::Set* RulesetCompiler::set_definition(IPFamily family, const std::string& name) const {
  return impl_->tables[family == IPFamily::V4 ? 0 : 1].definition(name);
}

bool RulesetDiff::empty() const {
  return std::all_of(tables.begin(), tables.end(), [](const auto& t) { return t.empty(); }) && !needs_full_sync &&
         stale_udp_flows.empty();
}

size_t RulesetDiff::operations() const {
  size_t n = 0;
  for (const auto& t : tables) n += t.operations();
  return n;
}

void RulesetCompiler::reset(const std::vector<model::ServicePortState>& ports) {
  model::NodeConfig node = impl_->node;
  impl_ = std::make_unique<Impl>(std::move(node));
  // The state is empty, so there are no held ports of any service to
  // remove: no set of the services is needed (it was ~5 MiB at 50k).
  impl_->apply({}, ports, false);
}

CompileResult compile(const std::vector<model::ServicePortState>& ports, const model::NodeConfig& node) {
  RulesetCompiler compiler(node);
  compiler.reset(ports);
  auto warnings = compiler.take_warnings();
  return CompileResult{std::move(compiler).take_ruleset(), std::move(warnings)};
}

}  // namespace svcproxy::dataplane
