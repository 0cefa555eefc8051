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

// Applies `diff` to `ruleset` as the kernel applies a partial transaction,
// in apply_partial's order; throws std::runtime_error naming the first
// operation the kernel would refuse (adding what exists, deleting, flushing
// or adding into what does not). Sets and chains end sorted by name and
// elements sorted, as a readback compares them.
inline void apply_diff(dataplane::ir::Ruleset& ruleset, const dataplane::RulesetDiff& diff) {
  auto refuse = [](const std::string& what) { throw std::runtime_error("fake kernel: " + what); };
  auto by_name = [](auto& list, const std::string& name) {
    return std::find_if(list.begin(), list.end(), [&](const auto& x) { return x.name == name; });
  };
  for (const auto& td : diff.tables) {
    auto table = std::find_if(ruleset.tables.begin(), ruleset.tables.end(),
                              [&](const auto& t) { return t.family == td.family; });
    if (table == ruleset.tables.end()) refuse("no table");
    dataplane::ir::Table& t = *table;
    for (const auto& c : td.added_counters) {
      if (by_name(t.counters, c.name) != t.counters.end()) refuse("counter exists: " + c.name);
      t.counters.push_back(c);
    }
    auto counter_exists = [&](const dataplane::ir::Element& e) {
      return !e.object || by_name(t.counters, *e.object) != t.counters.end();
    };
    // Rules name counters (`counter name "x"`): they must exist when the rule
    // is added, and a counter in use by a rule or element cannot be deleted.
    auto check_rules = [&](const dataplane::ir::Chain& chain) {
      for (const auto& rule : chain.rules)
        for (const auto& st : rule.statements)
          if (const auto* c = std::get_if<dataplane::ir::CounterStmt>(&st);
              c && by_name(t.counters, c->name) == t.counters.end())
            refuse("rule of chain " + chain.name + " names an absent counter " + c->name);
    };
    auto in_use = [&](const std::string& name) {
      for (const auto& s : t.sets)
        for (const auto& e : s.elements)
          if (e.object && *e.object == name) return true;
      for (const auto& chain : t.chains)
        for (const auto& rule : chain.rules)
          for (const auto& st : rule.statements)
            if (const auto* c = std::get_if<dataplane::ir::CounterStmt>(&st); c && c->name == name) return true;
      return false;
    };
    for (const auto& s : td.added_sets) {
      for (const auto& e : s.elements)
        if (!counter_exists(e)) refuse("element of " + s.name + " names an absent counter");
      if (by_name(t.sets, s.name) != t.sets.end()) refuse("set exists: " + s.name);
      t.sets.push_back(s);
    }
    for (const auto& c : td.added_chains) {
      if (by_name(t.chains, c.name) != t.chains.end()) refuse("chain exists: " + c.name);
      check_rules(c);
      t.chains.push_back(c);
    }
    for (const auto& [name, e] : td.deleted_elements) {
      auto set = by_name(t.sets, name);
      if (set == t.sets.end()) refuse("no set " + name);
      auto it = std::find(set->elements.begin(), set->elements.end(), e);
      if (it == set->elements.end()) refuse("deleting an absent element of " + name);
      set->elements.erase(it);
    }
    for (const auto& [name, e] : td.added_elements) {
      auto set = by_name(t.sets, name);
      if (set == t.sets.end()) refuse("no set " + name);
      for (const auto& existing : set->elements)
        if (existing.key == e.key) refuse("duplicate key in " + name);
      if (!counter_exists(e)) refuse("element of " + name + " names an absent counter");
      set->elements.push_back(e);
    }
    for (const auto& c : td.replaced_chains) {
      auto it = by_name(t.chains, c.name);
      if (it == t.chains.end()) refuse("replacing absent chain " + c.name);
      check_rules(c);
      *it = c;
    }
    for (const auto& name : td.deleted_chains) {
      auto it = by_name(t.chains, name);
      if (it == t.chains.end()) refuse("deleting absent chain " + name);
      t.chains.erase(it);
    }
    for (const auto& name : td.deleted_sets) {
      auto it = by_name(t.sets, name);
      if (it == t.sets.end()) refuse("deleting absent set " + name);
      t.sets.erase(it);
    }
    for (const auto& name : td.deleted_counters) {
      auto it = by_name(t.counters, name);
      if (it == t.counters.end()) refuse("deleting absent counter " + name);
      if (in_use(name)) refuse("deleting counter " + name + " still in use");
      t.counters.erase(it);
    }
    std::sort(t.counters.begin(), t.counters.end());
    std::sort(t.sets.begin(), t.sets.end(), [](auto& a, auto& b) { return a.name < b.name; });
    std::sort(t.chains.begin(), t.chains.end(), [](auto& a, auto& b) { return a.name < b.name; });
    for (auto& s : t.sets) std::sort(s.elements.begin(), s.elements.end());
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
