#include "dataplane/compile/table_state.h"

#include <algorithm>
#include <functional>
#include <iterator>

#include "dataplane/compile/merge_walk.h"
#include "dataplane/compile/port_fragment.h"

namespace svcproxy::dataplane::detail {
namespace {

// kube-proxy's UDP conntrack rule: entries whose reply comes from an
// endpoint that is gone are deleted, for every address of the port; and when
// a port goes from no endpoints to some, every entry to its addresses.
void stale_udp_flows(const ServicePortState& before, const ServicePortState* after, std::vector<StaleUdpFlow>& out) {
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

constexpr auto kByName = [](const auto& a, const auto& b) { return a.name < b.name; };

}  // namespace

std::pair<TableState::Ports::const_iterator, TableState::Ports::const_iterator> TableState::service_ports(
    const model::ObjectRef& service) const {
  const model::ServicePortName first{service, {}, static_cast<model::Protocol>(0), IPFamily::V4};
  const auto begin = ports_.lower_bound(first);
  auto end = begin;
  while (end != ports_.end() && end->first.service == service) ++end;
  return {begin, end};
}

void TableState::update(const std::set<model::ObjectRef>& services, const std::vector<const ServicePortState*>& ports,
                        TableDiff* diff, bool& needs_full, std::vector<StaleUdpFlow>* stale) {
  Incoming incoming;
  for (const auto* sp : ports)
    if (sp->name.family == config_.family) incoming[sp->name] = sp;
  const bool fresh = ports_.empty();
  std::set<model::ServicePortName> removed;
  const auto recompile = update_claims(services, incoming, removed);
  for (const auto& name : removed) remove_port(name, diff, needs_full, stale);
  if (fresh) {
    for (const auto& [name, sp] : incoming) recompile_port(name, incoming, diff, needs_full, stale);
  } else {
    for (const auto& name : recompile) recompile_port(name, incoming, diff, needs_full, stale);
  }
  if (diff) ledger_.take_net_changes(*diff);
}

// Registers the new claims; returns the ports to recompile (changed, or
// whose ownership of a key changed) and fills `removed`. With nothing
// compiled yet (a reset) every incoming port is compiled anyway, so neither
// the owners before nor the ports to recompile are tracked: at 50k services
// those temporaries were ~20 MiB of the peak.
std::set<model::ServicePortName> TableState::update_claims(const std::set<model::ObjectRef>& services,
                                                           const Incoming& incoming,
                                                           std::set<model::ServicePortName>& removed) {
  const bool fresh = ports_.empty();
  std::set<model::ServicePortName> recompile;
  for (const auto& service : services) {
    const auto [begin, end] = service_ports(service);
    for (auto port = begin; port != end; ++port) {
      const auto& [name, record] = *port;
      auto in = incoming.find(name);
      if (in != incoming.end() && *in->second == record.state) continue;  // unchanged
      claims_.release(record.state);
      if (in == incoming.end()) removed.insert(name);
    }
  }
  for (const auto& [name, sp] : incoming) {
    auto existing = ports_.find(name);
    if (existing != ports_.end() && existing->second.state == *sp) continue;
    claims_.claim(*sp, !fresh);
    if (!fresh) recompile.insert(name);
  }
  for (const auto& owner : claims_.take_owner_changes())
    if (!removed.contains(owner) && (ports_.contains(owner) || incoming.contains(owner))) recompile.insert(owner);
  return recompile;
}

void TableState::remove_port(const model::ServicePortName& name, TableDiff* diff, bool& needs_full,
                             std::vector<StaleUdpFlow>* stale) {
  static const Fragment kEmpty;
  auto it = ports_.find(name);
  if (stale) stale_udp_flows(it->second.state, nullptr, *stale);
  hairpin_delta(&it->second.state, nullptr, diff);
  diff_fragment(it->second.fragment, kEmpty, diff, needs_full);
  ports_.erase(it);
}

void TableState::recompile_port(const model::ServicePortName& name, const Incoming& incoming, TableDiff* diff,
                                bool& needs_full, std::vector<StaleUdpFlow>* stale) {
  auto in = incoming.find(name);
  auto existing = ports_.find(name);
  if (stale && existing != ports_.end() && in != incoming.end())
    stale_udp_flows(existing->second.state, in->second, *stale);
  auto& record = ports_[name];
  if (in != incoming.end()) {
    hairpin_delta(existing != ports_.end() ? &record.state : nullptr, in->second, diff);
    record.state = *in->second;
  }
  Fragment fragment = compile_port(record.state, config_, ledger_, claims_, warnings);
  diff_fragment(record.fragment, fragment, diff, needs_full);
  record.fragment = std::move(fragment);
}

void TableState::hairpin_delta(const ServicePortState* before, const ServicePortState* after, TableDiff* diff) {
  const uint32_t set = ledger_.id(names::kHairpin);
  auto change = [&](int delta) {
    return [this, set, diff, delta](const IPAddress& ip) {
      ledger_.contribute({set, ledger_.refcounted_element(set, ip)}, delta, diff);
    };
  };
  merge_walk(hairpin_addresses(before), hairpin_addresses(after), std::less<>{}, change(-1), change(+1),
             [](const IPAddress&, const IPAddress&) {});
}

void TableState::diff_fragment(const Fragment& before, const Fragment& after, TableDiff* diff, bool& needs_full) {
  merge_walk(
      before.elements, after.elements, std::less<>{}, [&](const Contribution& c) { ledger_.contribute(c, -1, diff); },
      [&](const Contribution& c) { ledger_.contribute(c, +1, diff); }, [](const Contribution&, const Contribution&) {});
  if (!diff) return;
  merge_walk(
      before.counters, after.counters, kByName, [&](const ir::Counter& c) { diff->deleted_counters.push_back(c.name); },
      [&](const ir::Counter& c) { diff->added_counters.push_back(c); }, [](const ir::Counter&, const ir::Counter&) {});
  merge_walk(
      before.chains, after.chains, kByName, [&](const ir::Chain& c) { diff->deleted_chains.push_back(c.name); },
      [&](const ir::Chain& c) { diff->added_chains.push_back(c); },
      [&](const ir::Chain& was, const ir::Chain& now) {
        if (was != now) diff->replaced_chains.push_back(now);
      });
  // Sets (affinity). A changed definition cannot be edited in place.
  merge_walk(
      before.sets, after.sets, kByName, [&](const ir::Set& s) { diff->deleted_sets.push_back(s.name); },
      [&](const ir::Set& s) { diff->added_sets.push_back(s); },
      [&](const ir::Set& was, const ir::Set& now) {
        if (was != now) needs_full = true;
      });
}

// Builds the table: copies every fragment's objects (kTake: moves them out
// and frees each fragment as it goes, so the ruleset is never held twice).
template <bool kTake>
ir::Table TableState::make_table(std::conditional_t<kTake, TableState&, const TableState&> self) const {
  // Gather the shared sets' elements from every fragment.
  auto elements = ledger_.element_lists<ir::Element>([](ir::Element e) { return e; });
  size_t chain_count = fixed_.chains().size() + 4 + ledger_.dnat_map_count();
  size_t set_count = fixed_.sets().size() + ledger_.size();
  for (const auto& [name, record] : ports_) {
    chain_count += record.fragment.chains.size();
    set_count += record.fragment.sets.size();
  }
  std::vector<ir::Chain> chains = fixed_.chains();
  std::vector<ir::Set> sets = fixed_.sets();
  std::vector<ir::Counter> counters = fixed_.counters();
  chains.reserve(chain_count);
  sets.reserve(set_count);
  for (auto& [name, record] : self.ports_) {
    auto& fragment = record.fragment;
    if constexpr (kTake) {
      for (auto& c : fragment.elements)
        if (!ledger_.refcounted(c.set)) elements[c.set].push_back(std::move(c.element));
      std::move(fragment.chains.begin(), fragment.chains.end(), std::back_inserter(chains));
      std::move(fragment.sets.begin(), fragment.sets.end(), std::back_inserter(sets));
      std::move(fragment.counters.begin(), fragment.counters.end(), std::back_inserter(counters));
      fragment = Fragment{};
    } else {
      for (const auto& c : fragment.elements)
        if (!ledger_.refcounted(c.set)) elements[c.set].push_back(c.element);
      chains.insert(chains.end(), fragment.chains.begin(), fragment.chains.end());
      sets.insert(sets.end(), fragment.sets.begin(), fragment.sets.end());
      counters.insert(counters.end(), fragment.counters.begin(), fragment.counters.end());
    }
  }
  for (auto kind : {KeyKind::Address, KeyKind::NodePort})
    for (auto flavour : {Flavour::Main, Flavour::Shortcut}) chains.push_back(ledger_.cascade_chain(kind, flavour));
  for (uint32_t id = 0; id < ledger_.size(); ++id) {
    if (ledger_.is_dnat_map(id)) {
      if (elements[id].empty()) continue;  // a map exists only while used
      chains.push_back(ledger_.binding_chain(id));
    }
    if (!counts(id)) continue;
    if (ledger_.counts_objects(id))
      for (const auto& e : elements[id]) counters.push_back(ir::Counter{*e.object});
    ir::Set set = ledger_.definition(id);
    set.elements = std::move(elements[id]);
    sort_elements(set.elements);
    sets.push_back(std::move(set));
  }
  std::sort(chains.begin(), chains.end(), kByName);
  std::sort(sets.begin(), sets.end(), kByName);
  std::sort(counters.begin(), counters.end());
  ir::Table table;
  table.family = config_.family;
  table.name = names::kTable;
  table.counters = std::move(counters);
  table.chains = std::move(chains);
  table.sets = std::move(sets);
  return table;
}

ir::Table TableState::table() const { return make_table<false>(*this); }

ir::Table TableState::take_table() { return make_table<true>(*this); }

void TableState::ref(ir::RulesetRef::TableRef& out, ir::RulesetRef::Storage& storage) const {
  out.header.family = config_.family;
  out.header.name = names::kTable;
  auto elements = ledger_.element_lists<const ir::Element*>(
      [&](ir::Element e) { return &storage.elements.emplace_back(std::move(e)); });
  for (const auto& chain : fixed_.chains()) out.chains.push_back(&chain);
  for (const auto& set : fixed_.sets()) out.sets.push_back({&set, {}});
  for (const auto& counter : fixed_.counters()) out.counters.push_back(&counter);
  for (const auto& [name, record] : ports_) {
    for (const auto& c : record.fragment.elements)
      if (!ledger_.refcounted(c.set)) elements[c.set].push_back(&c.element);
    for (const auto& chain : record.fragment.chains) out.chains.push_back(&chain);
    for (const auto& set : record.fragment.sets) out.sets.push_back({&set, {}});
    for (const auto& counter : record.fragment.counters) out.counters.push_back(&counter);
  }
  for (auto kind : {KeyKind::Address, KeyKind::NodePort})
    for (auto flavour : {Flavour::Main, Flavour::Shortcut})
      out.chains.push_back(&storage.chains.emplace_back(ledger_.cascade_chain(kind, flavour)));
  for (uint32_t id = 0; id < ledger_.size(); ++id) {
    if (ledger_.is_dnat_map(id)) {
      if (elements[id].empty()) continue;  // a map exists only while used
      out.chains.push_back(&storage.chains.emplace_back(ledger_.binding_chain(id)));
    }
    if (!counts(id)) continue;
    if (ledger_.counts_objects(id))
      for (const auto* e : elements[id])
        out.counters.push_back(&storage.counters.emplace_back(ir::Counter{*e->object}));
    out.sets.push_back({&ledger_.definition(id), std::move(elements[id])});
  }
  std::sort(out.chains.begin(), out.chains.end(), [](const auto* a, const auto* b) { return a->name < b->name; });
  std::sort(out.counters.begin(), out.counters.end(), [](const auto* a, const auto* b) { return a->name < b->name; });
  std::sort(out.sets.begin(), out.sets.end(), [](const auto& a, const auto& b) { return a.set->name < b.set->name; });
}

}  // namespace svcproxy::dataplane::detail
