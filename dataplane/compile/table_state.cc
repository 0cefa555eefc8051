#include "dataplane/compile/table_state.h"

#include <algorithm>
#include <iterator>

namespace svcproxy::dataplane::detail {

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

}  // namespace svcproxy::dataplane::detail
