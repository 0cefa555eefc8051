// Moved from dataplane/compile.cc.
#pragma once

#include <deque>
#include <map>
#include <optional>
#include <set>
#include <type_traits>

#include "dataplane/compile/parts.h"

namespace svcproxy::dataplane::detail {

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

}  // namespace svcproxy::dataplane::detail

// What a RulesetRef owns: objects that exist only in the view (the DNAT
// chains and the refcounted sets' elements, which the compiler keeps as
// counts).
struct svcproxy::dataplane::ir::RulesetRef::Storage {
  std::deque<Chain> chains;
  std::deque<Element> elements;
};
