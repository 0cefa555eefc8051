// Drift repair without a kernel: rulesets built by the compiler, drifted by
// hand (what `nft delete element`, `nft flush chain`, `nft add element` do),
// and the repair applied the way the kernel applies a partial transaction.
// The last tests run the whole scheme in memory: a snapshot, syncs racing
// the check, random drift, and the filtered repair, against the compiler.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <stdexcept>

#include "dataplane/drift.h"
#include "tests/dataplane/random_ports.h"
#include "tests/support/fake_ruleset_kernel.h"

namespace svcproxy::dataplane {
namespace {

using model::IPAddress;
using model::IPFamily;
using model::ServicePortState;
using testing::node;

using testing::port;

ir::Ruleset sample() { return compile({port("a", 10, {1, 2}), port("b", 11, {3}), port("c", 12, {})}, node()).ruleset; }

ir::Table& table(ir::Ruleset& r, IPFamily family = IPFamily::V4) {
  for (auto& t : r.tables)
    if (t.family == family) return t;
  throw std::logic_error("no table");
}
ir::Set& set(ir::Ruleset& r, const std::string& name) {
  for (auto& s : table(r).sets)
    if (s.name == name) return s;
  throw std::logic_error("no set " + name);
}
ir::Chain& chain(ir::Ruleset& r, const std::string& name) {
  for (auto& c : table(r).chains)
    if (c.name == name) return c;
  throw std::logic_error("no chain " + name);
}

// The kernel's way of applying a partial transaction (refusals fail the test).
void apply(ir::Ruleset& ruleset, const RulesetDiff& diff) {
  ASSERT_NO_THROW(svcproxy::testing::apply_diff(ruleset, diff));
}

// Rule comments are not read back from the kernel.
ir::Ruleset without_comments(ir::Ruleset r) {
  for (auto& t : r.tables)
    for (auto& c : t.chains)
      for (auto& rule : c.rules) rule.comment.clear();
  return r;
}

TEST(DriftRepair, InSyncIsEmpty) {
  const ir::Ruleset expected = sample();
  EXPECT_TRUE(drift_repair(expected, expected).empty());
  // The readback carries no comments and may list elements in any order.
  ir::Ruleset kernel = without_comments(expected);
  for (auto& t : kernel.tables)
    for (auto& s : t.sets) std::reverse(s.elements.begin(), s.elements.end());
  const RulesetDiff repair = drift_repair(kernel, expected);
  EXPECT_TRUE(repair.empty());
  EXPECT_FALSE(repair.needs_full_sync);
}

TEST(DriftRepair, HandDeletedElementIsAddedBack) {
  const ir::Ruleset expected = sample();
  ir::Ruleset kernel = expected;
  auto& elements = set(kernel, "cluster-ip").elements;
  ASSERT_FALSE(elements.empty());
  const ir::Element gone = elements.front();
  elements.erase(elements.begin());
  const RulesetDiff repair = drift_repair(kernel, expected);
  ASSERT_EQ(repair.tables.size(), 2u);
  EXPECT_EQ(repair.operations(), 1u);
  ASSERT_EQ(repair.tables[0].added_elements.size(), 1u);
  EXPECT_EQ(repair.tables[0].added_elements[0], std::make_pair(std::string("cluster-ip"), gone));
  apply(kernel, repair);
  EXPECT_EQ(kernel, expected);
}

TEST(DriftRepair, RogueElementIsDeletedAndChangedMapDataIsRewritten) {
  const ir::Ruleset expected = sample();
  ir::Ruleset kernel = expected;
  ir::Element rogue{{IPAddress::v4(10, 96, 9, 9), model::Protocol::TCP, uint16_t{80}}, std::nullopt, {}};
  set(kernel, "cluster-ip").elements.push_back(rogue);
  // Service b's single endpoint, pointed elsewhere.
  auto& dnat = set(kernel, "dnat-1").elements;
  ASSERT_EQ(dnat.size(), 1u);
  const ir::Element wrong{dnat[0].key, std::nullopt, {IPAddress::v4(192, 0, 2, 1), uint16_t{9}}};
  const ir::Element right = dnat[0];
  dnat[0] = wrong;
  const RulesetDiff repair = drift_repair(kernel, expected);
  ASSERT_FALSE(repair.needs_full_sync);
  const TableDiff& t = repair.tables[0];
  EXPECT_EQ(t.deleted_elements,
            (std::vector<std::pair<std::string, ir::Element>>{{"cluster-ip", rogue}, {"dnat-1", wrong}}));
  EXPECT_EQ(t.added_elements, (std::vector<std::pair<std::string, ir::Element>>{{"dnat-1", right}}));
  apply(kernel, repair);
  EXPECT_EQ(kernel, expected);
}

TEST(DriftRepair, FlushedChainIsReplacedRogueChainAndSetDeleted) {
  const ir::Ruleset expected = sample();
  ir::Ruleset kernel = expected;
  chain(kernel, "services").rules.clear();
  table(kernel).chains.push_back(ir::Chain{"rogue", std::nullopt, {}});
  ir::Set extra;
  extra.name = "rogue-set";
  extra.key = {ir::KeyType::Addr};
  table(kernel).sets.push_back(extra);
  const RulesetDiff repair = drift_repair(kernel, expected);
  ASSERT_FALSE(repair.needs_full_sync);
  const TableDiff& t = repair.tables[0];
  ASSERT_EQ(t.replaced_chains.size(), 1u);
  EXPECT_EQ(t.replaced_chains[0], chain(const_cast<ir::Ruleset&>(expected), "services"));
  EXPECT_EQ(t.deleted_chains, std::vector<std::string>{"rogue"});
  EXPECT_EQ(t.deleted_sets, std::vector<std::string>{"rogue-set"});
  EXPECT_EQ(repair.operations(), 3u);
  apply(kernel, repair);
  EXPECT_EQ(kernel, expected);
}

TEST(DriftRepair, MissingChainAndSetAreAddedWhole) {
  const ir::Ruleset expected = sample();
  ir::Ruleset kernel = expected;
  auto& chains = table(kernel).chains;
  chains.erase(std::find_if(chains.begin(), chains.end(), [](auto& c) { return c.name == "dnat-2"; }));
  auto& sets = table(kernel).sets;
  sets.erase(std::find_if(sets.begin(), sets.end(), [](auto& s) { return s.name == "dnat-2"; }));
  const RulesetDiff repair = drift_repair(kernel, expected);
  const TableDiff& t = repair.tables[0];
  ASSERT_EQ(t.added_sets.size(), 1u);
  EXPECT_EQ(t.added_sets[0].elements.size(), 2u) << "service a: one key, 2 slots";
  ASSERT_EQ(t.added_chains.size(), 1u);
  EXPECT_EQ(t.added_chains[0].name, "dnat-2");
  apply(kernel, repair);
  EXPECT_EQ(kernel, expected);
}

TEST(DriftRepair, WhatNoPartialTransactionFixesAsksForAFullSync) {
  const ir::Ruleset expected = sample();
  {
    ir::Ruleset kernel = expected;
    kernel.tables.erase(kernel.tables.begin());
    EXPECT_TRUE(drift_repair(kernel, expected).needs_full_sync) << "a missing table";
  }
  {
    ir::Ruleset kernel = expected;
    set(kernel, "cluster-ip").timeout_seconds = 5;
    EXPECT_TRUE(drift_repair(kernel, expected).needs_full_sync) << "a set definition";
  }
  {
    ir::Ruleset kernel = expected;
    set(kernel, "service-cidrs").elements.clear();
    ASSERT_TRUE(set(kernel, "service-cidrs").interval);
    EXPECT_TRUE(drift_repair(kernel, expected).needs_full_sync) << "an interval set's elements";
  }
  {
    ir::Ruleset kernel = expected;
    chain(kernel, "nat-output").base->priority = 0;
    EXPECT_TRUE(drift_repair(kernel, expected).needs_full_sync) << "a base chain's hook";
  }
}

TEST(DriftRepair, RepeatedElementsOfARacedDumpAreNotExtra) {
  const ir::Ruleset expected = sample();
  ir::Ruleset kernel = expected;
  auto& elements = set(kernel, "hairpin").elements;
  ASSERT_FALSE(elements.empty());
  elements.push_back(elements.front());
  EXPECT_TRUE(drift_repair(kernel, expected).empty());
}

TEST(DriftRepair, DistrustedMissingChainIsRewrittenNotAdded) {
  RulesetDiff repair;
  repair.tables.emplace_back();
  repair.tables[0].added_chains.push_back(ir::Chain{"services", std::nullopt, {}});
  distrust_missing_chains(repair);
  EXPECT_TRUE(repair.tables[0].added_chains.empty());
  ASSERT_EQ(repair.tables[0].replaced_chains.size(), 1u);
  EXPECT_EQ(repair.tables[0].replaced_chains[0].name, "services");
}

TEST(DriftRepair, SummaryCountsAndNamesTheFirstObjects) {
  const ir::Ruleset expected = sample();
  ir::Ruleset kernel = expected;
  set(kernel, "cluster-ip").elements.clear();  // a, b (c has no endpoints)
  chain(kernel, "services").rules.pop_back();
  const DriftSummary s = summarize(drift_repair(kernel, expected));
  EXPECT_EQ(s.missing_elements, 2u);
  EXPECT_EQ(s.changed_chains, 1u);
  EXPECT_EQ(s.total(), 3u);
  EXPECT_FALSE(s.full);
  EXPECT_EQ(s.objects, (std::vector<std::string>{"ip cluster-ip missing element 10.96.0.10 . tcp . 80",
                                                 "ip cluster-ip missing element 10.96.0.11 . tcp . 80",
                                                 "ip changed chain services"}));
}

TEST(ChangedSinceSnapshot, DropsWhatSyncsTouchedAndKeepsTheRest) {
  RulesetDiff applied;
  auto& a = applied.tables.emplace_back();
  const ir::Element touched{{IPAddress::v4(10, 96, 0, 10), model::Protocol::TCP, uint16_t{80}}, std::nullopt, {}};
  const ir::Element untouched{{IPAddress::v4(10, 96, 0, 11), model::Protocol::TCP, uint16_t{80}}, std::nullopt, {}};
  a.added_elements.emplace_back("cluster-ip", touched);
  a.replaced_chains.push_back(ir::Chain{"dnat-maps", std::nullopt, {}});
  a.deleted_sets.push_back("dnat-3");
  ChangedSinceSnapshot changed;
  EXPECT_TRUE(changed.empty());
  changed.record(applied);
  EXPECT_FALSE(changed.empty());

  RulesetDiff repair;
  auto& r = repair.tables.emplace_back();
  ir::Element other_data = touched;  // same key, other data: the same element
  other_data.data.push_back(IPAddress::v4(1, 2, 3, 4));
  r.deleted_elements = {{"cluster-ip", other_data}, {"cluster-ip", untouched}, {"dnat-3", untouched}};
  r.added_elements = {{"no-endpoints", touched}};  // same key, another set: kept
  r.replaced_chains = {ir::Chain{"dnat-maps", std::nullopt, {}}, ir::Chain{"services", std::nullopt, {}}};
  r.added_sets.emplace_back().name = "dnat-3";
  changed.drop_from(repair);
  EXPECT_EQ(r.deleted_elements, (std::vector<std::pair<std::string, ir::Element>>{{"cluster-ip", untouched}}));
  EXPECT_EQ(r.added_elements.size(), 1u);
  ASSERT_EQ(r.replaced_chains.size(), 1u);
  EXPECT_EQ(r.replaced_chains[0].name, "services");
  EXPECT_TRUE(r.added_sets.empty());

  // Another family's objects of the same names are not touched.
  RulesetDiff v6;
  auto& t6 = v6.tables.emplace_back();
  t6.family = IPFamily::V6;
  t6.replaced_chains = {ir::Chain{"dnat-maps", std::nullopt, {}}};
  changed.drop_from(v6);
  EXPECT_EQ(t6.replaced_chains.size(), 1u);
  changed.clear();
  EXPECT_TRUE(changed.empty());
}

// The whole scheme, randomized: at the snapshot the kernel holds the
// compiler's ruleset; syncs then change both (recorded), the kernel drifts
// (elements deleted and added by hand, chains flushed), the check compares
// the kernel with a compile of the snapshot, and the filtered repair makes
// the kernel equal the compiler's current ruleset, except for objects the
// syncs touched (repaired by the next check) — with no operation the kernel
// would refuse.
TEST(DriftRepair, RandomDriftDuringSyncsIsRepairedExactly) {
  std::mt19937 rng(4242);
  RulesetCompiler compiler(node());
  std::map<int, std::vector<ServicePortState>> services;
  for (int id = 0; id < 30; ++id) services[id] = {testing::random_port(rng, id, 0)};
  compiler.reset(testing::flatten(services));
  ir::Ruleset kernel = without_comments(compiler.ruleset());
  int repaired = 0, deferred = 0;
  for (int round = 0; round < 60; ++round) {
    const auto snapshot = testing::flatten(services);
    ChangedSinceSnapshot changed;
    // 0-3 syncs race the check.
    for (int s = static_cast<int>(rng() % 4); s > 0; --s) {
      const int id = static_cast<int>(rng() % 40);
      std::vector<ServicePortState> ports;
      if (rng() % 4 == 0) {
        services.erase(id);
      } else {
        services[id] = {testing::random_port(rng, id, 0)};
        ports = services[id];
      }
      const RulesetDiff diff = compiler.update({{"ns", "svc" + std::to_string(id)}}, ports);
      if (diff.needs_full_sync) {
        kernel = without_comments(compiler.ruleset());  // a full sync: the check is abandoned
        changed.clear();
        continue;
      }
      apply(kernel, diff);
      ASSERT_FALSE(HasFatalFailure()) << "round " << round;
      changed.record(diff);
    }
    // Drift: delete or add an element by hand, or flush a chain.
    ir::Table& t = kernel.tables[rng() % kernel.tables.size()];
    const int what = static_cast<int>(rng() % 3);
    std::vector<ir::Set*> plain;
    for (auto& s : t.sets)
      if (!s.interval && !s.dynamic && !s.elements.empty()) plain.push_back(&s);
    if (what == 0 && !plain.empty()) {
      auto& elements = plain[rng() % plain.size()]->elements;
      elements.erase(elements.begin() + static_cast<long>(rng() % elements.size()));
    } else if (what == 1) {
      t.chains[rng() % t.chains.size()].rules.clear();
    } else if (!plain.empty()) {
      ir::Set& s = *plain[rng() % plain.size()];
      ir::Element rogue = s.elements.front();
      rogue.key = {};
      for (const auto& v : s.elements.front().key)
        rogue.key.push_back(std::holds_alternative<uint16_t>(v) ? ir::Value(uint16_t{1}) : v);
      if (std::find_if(s.elements.begin(), s.elements.end(), [&](auto& e) { return e.key == rogue.key; }) ==
          s.elements.end())
        s.elements.push_back(rogue);
    }
    RulesetDiff repair = drift_repair(kernel, compile(snapshot, node()).ruleset);
    ASSERT_FALSE(repair.needs_full_sync) << "round " << round;
    changed.drop_from(repair);
    if (!repair.empty()) ++repaired;
    apply(kernel, repair);
    ASSERT_FALSE(HasFatalFailure()) << "round " << round;
    // Drift on an object a sync touched waits for the next check: the
    // check cannot tell it from the sync's change. The next check (no sync
    // in between) finds nothing else.
    RulesetDiff next = drift_repair(kernel, compile(testing::flatten(services), node()).ruleset);
    RulesetDiff untouched = next;
    changed.drop_from(untouched);
    ASSERT_TRUE(untouched.empty()) << "round " << round << ": drift left unrepaired: "
                                   << (summarize(untouched).objects.empty() ? "" : summarize(untouched).objects[0]);
    if (!next.empty()) ++deferred;
    apply(kernel, next);
    ASSERT_FALSE(HasFatalFailure()) << "round " << round;
    ASSERT_EQ(kernel, without_comments(compiler.ruleset())) << "round " << round;
  }
  EXPECT_GT(repaired, 30);
  EXPECT_LT(deferred, 15);
}

}  // namespace
}  // namespace svcproxy::dataplane
