// An in-memory dataplane::RulesetKernel for unit tests of whoever keeps
// svcproxy's tables in sync: full rulesets replace its ir::Ruleset, diffs are
// applied to it as the kernel would (an operation the kernel would refuse —
// adding what exists, deleting what does not — fails the whole transaction
// and changes nothing), and it can be told to fail the next transaction.
// The real kernel's behaviour stays proven by the netns e2e tests.
#pragma once

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/compile.h"
#include "dataplane/ruleset_kernel.h"

namespace svcproxy::testing {

namespace detail {

// One table's part of a partial transaction, applied as the kernel applies
// it; refuse() throws std::runtime_error naming what the kernel would refuse.
class TableDiffApplier {
 public:
  using Table = dataplane::ir::Table;
  using Chain = dataplane::ir::Chain;
  using Element = dataplane::ir::Element;

  explicit TableDiffApplier(Table& table) : t_(table) {}

  template <typename TableDiff>
  void apply(const TableDiff& td) {
    add_objects(td);
    change_elements(td);
    delete_objects(td);
    std::sort(t_.counters.begin(), t_.counters.end());
    std::sort(t_.sets.begin(), t_.sets.end(), [](auto& a, auto& b) { return a.name < b.name; });
    std::sort(t_.chains.begin(), t_.chains.end(), [](auto& a, auto& b) { return a.name < b.name; });
    for (auto& set : t_.sets) std::sort(set.elements.begin(), set.elements.end());
  }

 private:
  [[noreturn]] static void refuse(const std::string& what) { throw std::runtime_error("fake kernel: " + what); }

  template <typename List>
  static auto by_name(List& list, const std::string& name) {
    return std::find_if(list.begin(), list.end(), [&](const auto& x) { return x.name == name; });
  }

  bool counter_exists(const Element& e) const {
    return !e.object || by_name(t_.counters, *e.object) != t_.counters.end();
  }

  // Rules name counters (`counter name "x"`): they must exist when the rule
  // is added, and a counter in use by a rule or element cannot be deleted.
  void check_rules(const Chain& chain) const {
    for (const auto& rule : chain.rules)
      for (const auto& st : rule.statements)
        if (const auto* c = std::get_if<dataplane::ir::CounterStmt>(&st);
            c && by_name(t_.counters, c->name) == t_.counters.end())
          refuse("rule of chain " + chain.name + " names an absent counter " + c->name);
  }

  bool in_use(const std::string& name) const {
    for (const auto& set : t_.sets)
      for (const auto& e : set.elements)
        if (e.object && *e.object == name) return true;
    for (const auto& chain : t_.chains)
      for (const auto& rule : chain.rules)
        for (const auto& st : rule.statements)
          if (const auto* c = std::get_if<dataplane::ir::CounterStmt>(&st); c && c->name == name) return true;
    return false;
  }

  template <typename TableDiff>
  void add_objects(const TableDiff& td) {
    for (const auto& c : td.added_counters) {
      if (by_name(t_.counters, c.name) != t_.counters.end()) refuse("counter exists: " + c.name);
      t_.counters.push_back(c);
    }
    for (const auto& set : td.added_sets) {
      for (const auto& e : set.elements)
        if (!counter_exists(e)) refuse("element of " + set.name + " names an absent counter");
      if (by_name(t_.sets, set.name) != t_.sets.end()) refuse("set exists: " + set.name);
      t_.sets.push_back(set);
    }
    for (const auto& c : td.added_chains) {
      if (by_name(t_.chains, c.name) != t_.chains.end()) refuse("chain exists: " + c.name);
      check_rules(c);
      t_.chains.push_back(c);
    }
  }

  template <typename TableDiff>
  void change_elements(const TableDiff& td) {
    for (const auto& [name, e] : td.deleted_elements) {
      auto set = by_name(t_.sets, name);
      if (set == t_.sets.end()) refuse("no set " + name);
      auto it = std::find(set->elements.begin(), set->elements.end(), e);
      if (it == set->elements.end()) refuse("deleting an absent element of " + name);
      set->elements.erase(it);
    }
    for (const auto& [name, e] : td.added_elements) {
      auto set = by_name(t_.sets, name);
      if (set == t_.sets.end()) refuse("no set " + name);
      for (const auto& existing : set->elements)
        if (existing.key == e.key) refuse("duplicate key in " + name);
      if (!counter_exists(e)) refuse("element of " + name + " names an absent counter");
      set->elements.push_back(e);
    }
    for (const auto& c : td.replaced_chains) {
      auto it = by_name(t_.chains, c.name);
      if (it == t_.chains.end()) refuse("replacing absent chain " + c.name);
      check_rules(c);
      *it = c;
    }
  }

  template <typename TableDiff>
  void delete_objects(const TableDiff& td) {
    for (const auto& name : td.deleted_chains) {
      auto it = by_name(t_.chains, name);
      if (it == t_.chains.end()) refuse("deleting absent chain " + name);
      t_.chains.erase(it);
    }
    for (const auto& name : td.deleted_sets) {
      auto it = by_name(t_.sets, name);
      if (it == t_.sets.end()) refuse("deleting absent set " + name);
      t_.sets.erase(it);
    }
    for (const auto& name : td.deleted_counters) {
      auto it = by_name(t_.counters, name);
      if (it == t_.counters.end()) refuse("deleting absent counter " + name);
      if (in_use(name)) refuse("deleting counter " + name + " still in use");
      t_.counters.erase(it);
    }
  }

  Table& t_;
};

}  // namespace detail

// Applies `diff` to `ruleset` as the kernel applies a partial transaction,
// in apply_partial's order; throws std::runtime_error naming the first
// operation the kernel would refuse (adding what exists, deleting, flushing
// or adding into what does not). Sets and chains end sorted by name and
// elements sorted, as a readback compares them.
inline void apply_diff(dataplane::ir::Ruleset& ruleset, const dataplane::RulesetDiff& diff) {
  for (const auto& td : diff.tables) {
    auto table = std::find_if(ruleset.tables.begin(), ruleset.tables.end(),
                              [&](const auto& t) { return t.family == td.family; });
    if (table == ruleset.tables.end()) throw std::runtime_error("fake kernel: no table");
    detail::TableDiffApplier(*table).apply(td);
  }
}

class FakeRulesetKernel final : public dataplane::RulesetKernel {
 public:
  void apply_full(const dataplane::RulesetCompiler& compiler) override {
    begin();
    ruleset_ = compiler.ruleset();
    ++full_transactions;
    in_sync_ = true;
  }

  void apply_partial(const dataplane::RulesetDiff& diff, const dataplane::RulesetCompiler&) override {
    if (!in_sync_) throw std::logic_error("apply_partial while not in sync");
    begin();
    dataplane::ir::Ruleset next = ruleset_;
    try {
      apply_diff(next, diff);
    } catch (const std::runtime_error&) {
      in_sync_ = false;  // refused: nothing changed, the next sync must be full
      throw;
    }
    ruleset_ = std::move(next);
    ++partial_transactions;
    last_partial = diff;
  }

  dataplane::ir::Ruleset read_back() override { return ruleset_; }
  void cleanup() override {
    ruleset_ = {};
    in_sync_ = false;
  }
  bool in_sync() const override { return in_sync_; }

  // The next transaction is refused (nothing changes; in_sync() turns false).
  void fail_next() { fail_next_ = true; }
  // What the kernel holds now; tests may edit it (drift).
  dataplane::ir::Ruleset& ruleset() { return ruleset_; }

  int full_transactions = 0;
  int partial_transactions = 0;
  dataplane::RulesetDiff last_partial;

 private:
  void begin() {
    if (!fail_next_) return;
    fail_next_ = false;
    in_sync_ = false;
    throw std::runtime_error("fake kernel: transaction refused");
  }
  dataplane::ir::Ruleset ruleset_;
  bool in_sync_ = false;
  bool fail_next_ = false;
};

}  // namespace svcproxy::testing
