#include "dataplane/kernel.h"

#include "dataplane/compile.h"
#include "dataplane/netlink_encode.h"

#include <algorithm>
#include <deque>
#include <map>
#include <span>
#include <stdexcept>

namespace svcproxy::dataplane {
namespace {

// svcproxy's tables, whatever the ruleset holds: cleanup and readback must
// find them even when the last applied IR is unknown.
ir::Ruleset own_tables() {
  ir::Ruleset tables;
  for (auto family : {model::IPFamily::V4, model::IPFamily::V6}) {
    ir::Table table;
    table.family = family;
    table.name = names::kTable;
    tables.tables.push_back(std::move(table));
  }
  return tables;
}

}  // namespace

void NetlinkBackend::apply_full(const ir::Ruleset& ruleset) {
  in_sync_ = false;
  NetlinkBatch batch = socket_.begin_batch();
  encode_full_sync(ruleset, batch);
  socket_.commit(batch);  // failure descriptions refer to `ruleset`
  in_sync_ = true;
}

void NetlinkBackend::apply_full(const RulesetCompiler& compiler) {
  in_sync_ = false;
  const ir::RulesetRef ruleset = compiler.ruleset_ref();
  NetlinkBatch batch = socket_.begin_batch();
  encode_full_sync(ruleset, batch);
  socket_.commit(batch);  // failure descriptions refer to `ruleset` and the compiler
  in_sync_ = true;
}

void NetlinkBackend::apply_partial(const RulesetDiff& diff, const RulesetCompiler& definitions) {
  if (!in_sync_) throw std::logic_error("partial sync without a successful full sync first");
  if (diff.needs_full_sync) throw std::logic_error("partial sync of a diff that needs a full sync");
  if (std::all_of(diff.tables.begin(), diff.tables.end(), [](const auto& t) { return t.empty(); })) return;
  in_sync_ = false;
  NetlinkBatch batch = socket_.begin_batch();
  NetlinkEncoder encoder(batch);
  // Everything the encoder is handed must outlive the commit (failure
  // descriptions refer to it): deques keep references stable.
  std::deque<ir::Table> tables;
  std::deque<std::vector<ir::Element>> groups;
  std::deque<ir::Chain> gone_chains;
  std::deque<ir::Set> gone_sets;
  std::deque<ir::Counter> gone_counters;
  for (const auto& td : diff.tables) {
    if (td.empty()) continue;
    ir::Table& table = tables.emplace_back();
    table.family = td.family;
    table.name = names::kTable;
    auto definition = [&](const std::string& name) -> const ir::Set& {
      for (const auto& s : td.added_sets)
        if (s.name == name) return s;
      const ir::Set* set = definitions.set_definition(td.family, name);
      if (!set) throw std::logic_error("partial sync: no definition of set " + name);
      return *set;
    };
    auto by_set = [&](const std::vector<std::pair<std::string, ir::Element>>& elements, bool add) {
      std::map<std::string, std::vector<ir::Element>> grouped;
      for (const auto& [name, e] : elements) grouped[name].push_back(e);
      for (auto& [name, list] : grouped) {
        const auto& span = groups.emplace_back(std::move(list));
        if (add) {
          encoder.add_elements(table, definition(name), span);
        } else {
          encoder.delete_elements(table, definition(name), span);
        }
      }
    };
    // Order: new containers first so references resolve; element deletes
    // before adds (a key may move between owners in one update); chains and
    // sets that go are flushed, then deleted, once nothing refers to them.
    for (const auto& counter : td.added_counters) encoder.add_counter(table, counter);
    for (const auto& set : td.added_sets) encoder.add_set(table, set);
    for (const auto& chain : td.added_chains) encoder.add_chain(table, chain);
    by_set(td.deleted_elements, false);
    by_set(td.added_elements, true);
    for (const auto& chain : td.replaced_chains) {
      encoder.flush_chain(table, chain);
      encoder.add_rules(table, chain);
    }
    for (const auto& chain : td.added_chains) encoder.add_rules(table, chain);
    const size_t first_gone = gone_chains.size();
    for (const auto& name : td.deleted_chains) gone_chains.push_back(ir::Chain{name, std::nullopt, {}});
    for (size_t i = first_gone; i < gone_chains.size(); ++i) encoder.flush_chain(table, gone_chains[i]);
    for (size_t i = first_gone; i < gone_chains.size(); ++i) encoder.delete_chain(table, gone_chains[i]);
    for (const auto& name : td.deleted_sets) {
      ir::Set& set = gone_sets.emplace_back();
      set.name = name;
      encoder.delete_set(table, set);
    }
    for (const auto& name : td.deleted_counters)
      encoder.delete_counter(table, gone_counters.emplace_back(ir::Counter{name}));
  }
  socket_.commit(batch);  // one transaction for every table
  in_sync_ = true;
}

ir::Ruleset NetlinkBackend::read_back() {
  std::vector<TableRef> refs;
  for (const auto& table : own_tables().tables) refs.push_back({table.family, table.name});
  return read_tables(socket_, refs);
}

void NetlinkBackend::cleanup() {
  in_sync_ = false;
  const ir::Ruleset tables = own_tables();
  NetlinkBatch batch = socket_.begin_batch();
  encode_cleanup(tables, batch);
  socket_.commit(batch);
}

}  // namespace svcproxy::dataplane
