// One family's table as the compiler holds it, built from four parts:
//  - its config (TableConfig) and the fixed objects that follow from it
//    alone (FixedObjects), which no update changes;
//  - per service port, the state it was compiled from and the Fragment it
//    compiled to (compile_port);
//  - the address claims, which decide who owns a contested key and so
//    which ports an update must recompile (AddressClaims);
//  - the element ledger, which counts what the fragments put into shared
//    sets and maps and turns an update into its net change (ElementLedger).
// An update recompiles only the ports that changed (and the few whose
// claims they resolve) and diffs their old and new fragments: O(changes).
#pragma once

#include <deque>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "dataplane/compile/address_claims.h"
#include "dataplane/compile/element_ledger.h"
#include "dataplane/compile/fixed_objects.h"
#include "dataplane/compile/table_config.h"

namespace svcproxy::dataplane::detail {

class TableState {
 public:
  TableState(IPFamily family, const model::NodeConfig& node)
      : config_(family, node), fixed_(config_), ledger_(config_.localhost_range.has_value()) {}

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
  IPFamily family() const { return config_.family; }
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
  const ir::Set* definition(const std::string& name) const { return ledger_.find(name); }
  std::vector<std::string> warnings;

 private:
  struct PortRecord {
    ServicePortState state;
    Fragment fragment;
  };
  using Ports = std::map<model::ServicePortName, PortRecord>;
  using Incoming = std::map<model::ServicePortName, const ServicePortState*>;

  // A service's ports are one contiguous range of ports_ (names order by
  // service first), so no index by service is kept.
  std::pair<Ports::const_iterator, Ports::const_iterator> service_ports(const model::ObjectRef& service) const;
  std::set<model::ServicePortName> update_claims(const std::set<model::ObjectRef>& services, const Incoming& incoming,
                                                 std::set<model::ServicePortName>& removed);
  void remove_port(const model::ServicePortName& name, TableDiff* diff, bool& needs_full,
                   std::vector<StaleUdpFlow>* stale);
  void recompile_port(const model::ServicePortName& name, const Incoming& incoming, TableDiff* diff, bool& needs_full,
                      std::vector<StaleUdpFlow>* stale);
  // The hairpin set's change when a port's endpoints go from `before` to
  // `after` (null: no port). Derived from the states, which the compiler
  // keeps anyway, rather than kept as contributions in every fragment.
  void hairpin_delta(const ServicePortState* before, const ServicePortState* after, TableDiff* diff);
  void diff_fragment(const Fragment& before, const Fragment& after, TableDiff* diff, bool& needs_full);
  // Counter maps are left out of a table without counters.
  bool counts(uint32_t set_id) const { return config_.node.counters || !ledger_.definition(set_id).is_counter_map; }
  template <bool kTake>
  ir::Table make_table(std::conditional_t<kTake, TableState&, const TableState&> self) const;

  TableConfig config_;
  FixedObjects fixed_;
  Ports ports_;
  AddressClaims claims_;
  ElementLedger ledger_;
};

}  // namespace svcproxy::dataplane::detail

// What a RulesetRef owns: objects that exist only in the view (the DNAT
// chains and the refcounted sets' elements, which the compiler keeps as
// counts).
struct svcproxy::dataplane::ir::RulesetRef::Storage {
  std::deque<Chain> chains;
  std::deque<Element> elements;
  std::deque<Counter> counters;  // the endpoints' (the ledger keeps them as counts)
};
