// The elements of a table's shared sets and maps, which many service ports
// contribute to, kept as counts: the fragments hold the elements, the
// ledger knows which sets exist (interned definitions, no elements, by id),
// how many elements each holds and, during an update, what held before it,
// so that only the net change reaches the kernel.
//  - Refcounted sets (cluster-ips, hairpin, counters-endpoints) hold
//    elements several ports may contribute (a ClusterIP of a multi-port
//    service, an endpoint behind several services): present while any port
//    contributes them. An endpoint counter lives as long as its element.
//  - Every other set's elements are unique (the address claims see to it).
//    A DNAT map exists in the kernel only while it holds elements, with the
//    one chain that binds it and a jump from its cascade chain.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/compile/parts.h"

namespace svcproxy::dataplane::detail {

// A DNAT map `dnat[-nodeport][-shortcut]-N`: the map of one key kind and
// flavour for services with N endpoints.
struct DnatSpec {
  KeyKind kind;
  Flavour flavour;
  size_t n;
};

class ElementLedger {
 public:
  // The shared sets every table has, and with localhost NodePorts the
  // ports refused on loopback.
  explicit ElementLedger(bool localhost_nodeport_rejects = false);

  uint32_t id(const std::string& name) const { return ids_.at(name); }
  // The DNAT map of a kind and flavour for n endpoints, interned on first use.
  uint32_t dnat_map(KeyKind kind, Flavour flavour, size_t n);
  size_t size() const { return definitions_.size(); }
  const ir::Set& definition(uint32_t id) const { return definitions_[id]; }
  const ir::Set* find(const std::string& name) const;
  bool refcounted(uint32_t id) const { return refcounted_[id]; }
  // The element of a refcounted set for a key (hairpin: ip . ip; counter
  // maps: with the counter the key names).
  ir::Element refcounted_element(uint32_t id, const ir::ValueList& key) const;
  ir::Element refcounted_element(uint32_t id, const IPAddress& ip) const;
  bool counts_objects(uint32_t id) const { return definitions_[id].is_counter_map && refcounted_[id]; }

  // One contribution added (delta +1) or removed (-1). With a diff, the
  // element change is recorded (refcounted sets: only the net change, by
  // take_net_changes) and the state before this update is remembered.
  void contribute(const Contribution& c, int delta, TableDiff* diff);
  // Adds the net changes of refcounted elements and DNAT maps since the
  // last call to `diff`, then forgets the state before the update.
  void take_net_changes(TableDiff& diff);

  // For building the whole table: per set id, its element list, refcounted
  // sets already filled (each element passed through make), the others
  // with room for their count.
  template <typename T, typename Make>
  std::vector<std::vector<T>> element_lists(Make make) const;
  size_t dnat_map_count() const { return dnat_map_count_; }
  bool is_dnat_map(uint32_t id) const { return dnat_specs_[id].has_value(); }
  // The chain `dnat-N` binding map `dnat-N`; and the cascade chain of one
  // kind and flavour: a jump to each such chain in use, by ascending N.
  ir::Chain binding_chain(uint32_t id) const;
  ir::Chain cascade_chain(KeyKind kind, Flavour flavour) const;

 private:
  uint32_t intern(const ir::Set& definition);

  std::map<std::string, uint32_t> ids_;
  std::vector<ir::Set> definitions_;                 // by id, without elements
  std::vector<bool> refcounted_;                     // by id
  std::vector<std::optional<DnatSpec>> dnat_specs_;  // by id; for DNAT maps
  size_t dnat_map_count_ = 0;
  // Refcounted sets are counted by key; the others count their elements.
  std::vector<std::map<ir::ValueList, int>> refs_;
  std::vector<size_t> counts_;
  // The state before this update, of what it touched.
  std::map<uint32_t, size_t> touched_dnat_;                          // set id -> count before
  std::map<std::pair<uint32_t, ir::ValueList>, bool> touched_refs_;  // -> present before
};

template <typename T, typename Make>
std::vector<std::vector<T>> ElementLedger::element_lists(Make make) const {
  std::vector<std::vector<T>> lists(definitions_.size());
  for (uint32_t id = 0; id < definitions_.size(); ++id) {
    if (refcounted_[id]) {
      lists[id].reserve(refs_[id].size());
      for (const auto& [key, count] : refs_[id]) lists[id].push_back(make(refcounted_element(id, key)));
    } else {
      lists[id].reserve(counts_[id]);
    }
  }
  return lists;
}

}  // namespace svcproxy::dataplane::detail
