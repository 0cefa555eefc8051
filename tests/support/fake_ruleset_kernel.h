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
    for (const auto& td : diff.tables) apply(table(next, td.family), td);
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
  [[noreturn]] void refuse(const std::string& what) {
    in_sync_ = false;
    throw std::runtime_error("fake kernel: " + what);
  }
  dataplane::ir::Table& table(dataplane::ir::Ruleset& ruleset, model::IPFamily family) {
    for (auto& t : ruleset.tables)
      if (t.family == family) return t;
    refuse("no table");
  }
  template <typename List>
  static auto find(List& list, const std::string& name) {
    return std::find_if(list.begin(), list.end(), [&](const auto& x) { return x.name == name; });
  }
  void apply(dataplane::ir::Table& t, const dataplane::TableDiff& td) {
    for (const auto& s : td.added_sets) {
      if (find(t.sets, s.name) != t.sets.end()) refuse("set exists: " + s.name);
      t.sets.push_back(s);
    }
    for (const auto& c : td.added_chains) {
      if (find(t.chains, c.name) != t.chains.end()) refuse("chain exists: " + c.name);
      t.chains.push_back(c);
    }
    for (const auto& [name, e] : td.deleted_elements) {
      auto set = find(t.sets, name);
      if (set == t.sets.end()) refuse("no set " + name);
      auto it = std::find(set->elements.begin(), set->elements.end(), e);
      if (it == set->elements.end()) refuse("deleting an absent element of " + name);
      set->elements.erase(it);
    }
    for (const auto& [name, e] : td.added_elements) {
      auto set = find(t.sets, name);
      if (set == t.sets.end()) refuse("no set " + name);
      for (const auto& existing : set->elements)
        if (existing.key == e.key) refuse("duplicate key in " + name);
      set->elements.push_back(e);
    }
    for (const auto& c : td.replaced_chains) {
      auto it = find(t.chains, c.name);
      if (it == t.chains.end()) refuse("replacing absent chain " + c.name);
      *it = c;
    }
    for (const auto& name : td.deleted_chains) {
      auto it = find(t.chains, name);
      if (it == t.chains.end()) refuse("deleting absent chain " + name);
      t.chains.erase(it);
    }
    for (const auto& name : td.deleted_sets) {
      auto it = find(t.sets, name);
      if (it == t.sets.end()) refuse("deleting absent set " + name);
      t.sets.erase(it);
    }
    std::sort(t.sets.begin(), t.sets.end(), [](auto& a, auto& b) { return a.name < b.name; });
    std::sort(t.chains.begin(), t.chains.end(), [](auto& a, auto& b) { return a.name < b.name; });
    for (auto& s : t.sets) std::sort(s.elements.begin(), s.elements.end());
  }

  dataplane::ir::Ruleset ruleset_;
  bool in_sync_ = false;
  bool fail_next_ = false;
};

}  // namespace svcproxy::testing
