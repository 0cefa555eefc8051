#include "dataplane/compile/element_ledger.h"

#include <algorithm>
#include <set>

namespace svcproxy::dataplane::detail {
namespace {

ir::Set shared_set(const char* name, std::vector<ir::KeyType> key, bool verdict_map = false) {
  ir::Set set;
  set.name = name;
  set.key = std::move(key);
  set.is_verdict_map = verdict_map;
  return set;
}

ir::Set counter_map(const char* name, std::vector<ir::KeyType> key) {
  ir::Set set = shared_set(name, std::move(key));
  set.is_counter_map = true;
  return set;
}

}  // namespace

ElementLedger::ElementLedger(bool localhost_nodeport_rejects) {
  using ir::KeyType;
  // Shared sets whose elements come from service ports.
  intern(shared_set(names::kClusterIPs, {KeyType::Addr}));
  intern(shared_set(names::kHairpin, {KeyType::Addr, KeyType::Addr}));
  intern(shared_set(names::kServiceIPs, {KeyType::Addr, KeyType::Proto, KeyType::Port}, true));
  intern(shared_set(names::kServiceNodePorts, {KeyType::Proto, KeyType::Port}, true));
  // Class sets: keys of service ports, by what their packets need.
  for (const char* name : {cls::kClusterIP, cls::kExternal, cls::kExternalLocal, cls::kReject, cls::kDrop})
    intern(shared_set(name, {KeyType::Addr, KeyType::Proto, KeyType::Port}));
  for (const char* name : {cls::kNodePortExternal, cls::kNodePortExternalLocal, cls::kNodePortReject})
    intern(shared_set(name, {KeyType::Proto, KeyType::Port}));
  if (localhost_nodeport_rejects) intern(shared_set(names::kLocalhostNodePortRejects, {KeyType::Proto, KeyType::Port}));
  // Counter maps, keyed like the class sets (interned always; a table
  // without counters has no elements in them and leaves them out).
  for (const char* name : {names::kCountServices, names::kCountRejected, names::kCountDropped, names::kCountEndpoints})
    intern(counter_map(name, {KeyType::Addr, KeyType::Proto, KeyType::Port}));
  for (const char* name : {names::kCountNodePorts, names::kCountNodePortRejected, names::kCountNodePortDropped})
    intern(counter_map(name, {KeyType::Proto, KeyType::Port}));
}

uint32_t ElementLedger::intern(const ir::Set& definition) {
  auto [it, inserted] = ids_.try_emplace(definition.name, static_cast<uint32_t>(definitions_.size()));
  if (inserted) {
    definitions_.push_back(definition);
    refcounted_.push_back(definition.name == names::kClusterIPs || definition.name == names::kHairpin ||
                          definition.name == names::kCountEndpoints);
    dnat_specs_.emplace_back();
    refs_.emplace_back();
    counts_.push_back(0);
  }
  return it->second;
}

uint32_t ElementLedger::dnat_map(KeyKind kind, Flavour flavour, size_t n) {
  const std::string name = dnat_chain_name(kind, flavour, n);
  auto it = ids_.find(name);
  if (it != ids_.end()) return it->second;
  ir::Set m;
  m.name = name;
  if (kind == KeyKind::Address) {
    m.key = {ir::KeyType::Addr, ir::KeyType::Proto, ir::KeyType::Port, ir::KeyType::Slot};
  } else {
    m.key = {ir::KeyType::Proto, ir::KeyType::Port, ir::KeyType::Slot};
  }
  m.data = {ir::KeyType::Addr, ir::KeyType::Port};
  const uint32_t id = intern(m);
  dnat_specs_[id] = DnatSpec{kind, flavour, n};
  ++dnat_map_count_;
  return id;
}

const ir::Set* ElementLedger::find(const std::string& name) const {
  auto it = ids_.find(name);
  return it == ids_.end() ? nullptr : &definitions_[it->second];
}

ir::Element ElementLedger::refcounted_element(uint32_t id, const IPAddress& ip) const {
  ir::ValueList key;
  for (size_t i = 0; i < definitions_[id].key.size(); ++i) key.push_back(ip);
  return refcounted_element(id, key);
}

ir::Element ElementLedger::refcounted_element(uint32_t id, const ir::ValueList& key) const {
  ir::Element e;
  e.key = key;
  if (definitions_[id].is_counter_map) {
    e.object = endpoint_counter_name({std::get<IPAddress>(key[0]), std::get<uint16_t>(key[2])},
                                     std::get<model::Protocol>(key[1]));
  }
  return e;
}

void ElementLedger::contribute(const Contribution& c, int delta, TableDiff* diff) {
  if (refcounted_[c.set]) {
    auto& refs = refs_[c.set];
    const ir::ValueList& key = c.element.key;
    auto it = refs.find(key);
    const bool present = it != refs.end();
    if (diff) touched_refs_.try_emplace({c.set, key}, present);
    if (delta > 0) {
      if (present)
        ++it->second;
      else
        refs.emplace(key, 1);
    } else if (present && --it->second == 0) {
      refs.erase(it);
    }
    return;
  }
  if (dnat_specs_[c.set] && diff) touched_dnat_.try_emplace(c.set, counts_[c.set]);
  counts_[c.set] += static_cast<size_t>(delta);  // wraps correctly for -1
  if (diff) {
    (delta > 0 ? diff->added_elements : diff->deleted_elements).emplace_back(definitions_[c.set].name, c.element);
  }
}

void ElementLedger::take_net_changes(TableDiff& diff) {
  for (const auto& [key, was_present] : touched_refs_) {
    const bool present = refs_[key.first].contains(key.second);
    if (present == was_present) continue;
    ir::Element element = refcounted_element(key.first, key.second);
    if (counts_objects(key.first)) {
      if (present) {
        diff.added_counters.push_back(ir::Counter{*element.object});
      } else {
        diff.deleted_counters.push_back(*element.object);
      }
    }
    (present ? diff.added_elements : diff.deleted_elements)
        .emplace_back(definitions_[key.first].name, std::move(element));
  }
  touched_refs_.clear();
  // A DNAT map that appears or goes changes its cascade chain: rewritten
  // after the map is added, before it is deleted (apply_partial's order).
  std::set<std::pair<KeyKind, Flavour>> cascades;
  for (const auto& [id, before] : touched_dnat_) {
    const size_t now = counts_[id];
    const auto& name = definitions_[id].name;
    const auto& spec = *dnat_specs_[id];
    if (before == 0 && now > 0) {
      diff.added_sets.push_back(definitions_[id]);
      diff.added_chains.push_back(binding_chain(id));
      cascades.emplace(spec.kind, spec.flavour);
    } else if (before > 0 && now == 0) {
      // Deleting the map deletes its elements; drop the individual deletes.
      std::erase_if(diff.deleted_elements, [&](const auto& e) { return e.first == name; });
      diff.deleted_chains.push_back(name);
      diff.deleted_sets.push_back(name);
      cascades.emplace(spec.kind, spec.flavour);
    }
  }
  for (const auto& [kind, flavour] : cascades) diff.replaced_chains.push_back(cascade_chain(kind, flavour));
  touched_dnat_.clear();
}

ir::Chain ElementLedger::binding_chain(uint32_t id) const {
  // The only rule binding the map: the kernel's cost of a binding grows
  // with the map, so one per map, whatever the number of services, and never
  // rewritten while the map lives.
  const DnatSpec& spec = *dnat_specs_[id];
  const std::string& name = definitions_[id].name;
  std::vector<ir::KeyField> key;
  if (spec.kind == KeyKind::Address) {
    key = {ir::KeyField::DstAddr, ir::KeyField::L4Proto, ir::KeyField::DstPort, ir::KeyField::Numgen};
  } else {
    key = {ir::KeyField::L4Proto, ir::KeyField::DstPort, ir::KeyField::Numgen};
  }
  return ir::Chain{name, std::nullopt, {rule({}, {ir::DnatMapStmt{key, name, static_cast<uint32_t>(spec.n)}})}};
}

ir::Chain ElementLedger::cascade_chain(KeyKind kind, Flavour flavour) const {
  // A jump to each map's chain, by ascending N. A key's elements are in
  // exactly one map of a kind and flavour: the other maps miss, their chain
  // returns, and the next is tried. Rewriting this chain when a map comes
  // or goes binds no map.
  std::vector<std::pair<size_t, uint32_t>> maps;  // n, set id
  for (uint32_t id = 0; id < dnat_specs_.size(); ++id) {
    const auto& spec = dnat_specs_[id];
    if (spec && spec->kind == kind && spec->flavour == flavour && counts_[id] > 0) maps.emplace_back(spec->n, id);
  }
  std::sort(maps.begin(), maps.end());
  std::vector<ir::Rule> rules;
  for (const auto& [n, id] : maps) rules.push_back(rule({}, {jump_chain(definitions_[id].name)}));
  return ir::Chain{cascade_chain_name(kind, flavour), std::nullopt, std::move(rules)};
}

}  // namespace svcproxy::dataplane::detail
