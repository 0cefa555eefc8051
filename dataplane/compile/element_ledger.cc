#include "dataplane/compile/table_state.h"

#include <algorithm>

namespace svcproxy::dataplane::detail {

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

}  // namespace svcproxy::dataplane::detail
