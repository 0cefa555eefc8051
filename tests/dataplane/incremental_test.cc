// RulesetCompiler: incremental updates must give exactly the ruleset a full
// compile gives, and their diffs, applied to the previous ruleset with the
// kernel's rules (no duplicate adds, no deletes of absent objects), must
// produce it too. Randomized over many changes, with address conflicts.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>

#include "dataplane/compile.h"
#include "tests/dataplane/random_ports.h"
#include "tests/support/fake_ruleset_kernel.h"

namespace svcproxy::dataplane {
namespace {

using testing::flatten;
using testing::node;
using testing::random_port;
using model::EndpointAddress;
using model::IPAddress;
using model::ServicePortState;

// Applies `diff` to `ruleset` as the kernel would (the fake kernel's rules:
// no duplicate adds, no deletes of absent objects, counters present before
// what names them and unused when deleted), failing the test otherwise.
void apply_diff(ir::Ruleset& ruleset, const RulesetDiff& diff) {
  try {
    svcproxy::testing::apply_diff(ruleset, diff);
  } catch (const std::runtime_error& e) {
    FAIL() << e.what();
  }
}

void random_updates_match_full_compile(const model::NodeConfig& node_config) {
  std::mt19937 rng(1234);
  RulesetCompiler compiler(node_config);
  std::map<int, std::vector<ServicePortState>> services;
  ir::Ruleset replayed = compiler.ruleset();
  int full_syncs = 0;
  for (int step = 0; step < 400; ++step) {
    // Change 1-3 services: add, remove, or rewrite.
    std::vector<model::ObjectRef> touched;
    std::vector<ServicePortState> ports;
    const int changes = 1 + static_cast<int>(rng() % 3);
    for (int c = 0; c < changes; ++c) {
      const int id = static_cast<int>(rng() % 40);
      touched.push_back({"ns", "svc" + std::to_string(id)});
      if (rng() % 4 == 0) {
        services.erase(id);
        continue;
      }
      std::vector<ServicePortState> list;
      const int nports = 1 + static_cast<int>(rng() % 2);
      for (int p = 0; p < nports; ++p) list.push_back(random_port(rng, id, p));
      services[id] = list;
    }
    for (const auto& ref : touched) {
      const int id = std::stoi(ref.name.substr(3));
      if (services.contains(id)) ports.insert(ports.end(), services[id].begin(), services[id].end());
    }
    const RulesetDiff diff = compiler.update(touched, ports);
    const ir::Ruleset expected = compile(flatten(services), node_config).ruleset;
    ASSERT_EQ(compiler.ruleset(), expected) << "step " << step;
    if (diff.needs_full_sync) {
      ++full_syncs;
      replayed = expected;
    } else {
      apply_diff(replayed, diff);
      if (::testing::Test::HasFatalFailure()) FAIL() << "step " << step;
      ASSERT_EQ(replayed, expected) << "diff replay diverged at step " << step;
    }
  }
  EXPECT_LT(full_syncs, 40) << "partial syncs should be the rule";
}

TEST(RulesetCompiler, RandomUpdatesMatchFullCompileAndTheirDiffsReplay) { random_updates_match_full_compile(node()); }

// With localhost NodePorts, the UDP/SCTP NodePorts refused on loopback
// follow the services too.
TEST(RulesetCompiler, RandomUpdatesWithLocalhostNodePortsMatchFullCompile) {
  model::NodeConfig n = node();
  n.localhost_nodeport_ranges = {*model::CIDR::parse("127.0.0.0/8"), *model::CIDR::parse("::1/128")};
  random_updates_match_full_compile(n);
}

// The hairpin set is derived from the ports' endpoints, outside the
// fragments: after every update it holds exactly one pair per endpoint
// address of the family (cluster and local lists, whatever node they are
// on), and a one-endpoint change is a one-pair diff.
TEST(RulesetCompiler, HairpinSetFollowsEveryEndpointThroughUpdates) {
  std::mt19937 rng(77);
  RulesetCompiler compiler(node());
  std::map<int, std::vector<ServicePortState>> services;
  for (int step = 0; step < 200; ++step) {
    const int id = static_cast<int>(rng() % 30);
    if (rng() % 4 == 0) {
      services.erase(id);
    } else {
      services[id] = {random_port(rng, id, 0)};
      // An endpoint only in the local list (topology hints narrowed the
      // cluster list) counts too.
      if (rng() % 3 == 0 && !services[id][0].cluster_endpoints.empty()) services[id][0].cluster_endpoints.pop_back();
    }
    std::vector<ServicePortState> ports = services.contains(id) ? services[id] : std::vector<ServicePortState>{};
    compiler.update(std::vector<model::ObjectRef>{{"ns", "svc" + std::to_string(id)}}, ports);
    for (auto family : {model::IPFamily::V4, model::IPFamily::V6}) {
      std::set<IPAddress> want;
      for (const auto& sp : flatten(services)) {
        if (sp.name.family != family) continue;
        for (const auto& ep : sp.cluster_endpoints) want.insert(ep.ip);
        for (const auto& ep : sp.local_endpoints) want.insert(ep.ip);
      }
      std::set<IPAddress> have;
      const auto ruleset = compiler.ruleset();
      for (const auto& e : ruleset.find_table(family)->find_set(names::kHairpin)->elements) {
        ASSERT_EQ(e.key[0], e.key[1]);
        have.insert(std::get<IPAddress>(e.key[0]));
      }
      ASSERT_EQ(have, want) << "step " << step;
    }
  }
  // One new endpoint address: one pair added, nothing else in that set.
  ServicePortState sp = random_port(rng, 99, 0);
  sp.cluster_endpoints = {{IPAddress::v4(10, 250, 0, 1), 8080}};
  sp.local_endpoints.clear();
  compiler.update({sp.name.service}, {sp});
  sp.cluster_endpoints.push_back({IPAddress::v4(10, 250, 0, 2), 8080});
  const auto diff = compiler.update({sp.name.service}, {sp});
  size_t added = 0, deleted = 0;
  for (const auto& td : diff.tables) {
    for (const auto& [set, e] : td.added_elements) added += set == names::kHairpin;
    for (const auto& [set, e] : td.deleted_elements) deleted += set == names::kHairpin;
  }
  EXPECT_EQ(added, 1u);
  EXPECT_EQ(deleted, 0u);
}

TEST(RulesetCompiler, ReplaceAllOnlyTouchesWhatChanged) {
  std::mt19937 rng(99);
  std::map<int, std::vector<ServicePortState>> services;
  for (int id = 0; id < 40; ++id) services[id] = {random_port(rng, id, 0)};
  RulesetCompiler compiler(node());
  compiler.reset(flatten(services));
  EXPECT_TRUE(compiler.replace_all(flatten(services)).empty());
  services[7] = {random_port(rng, 7, 0)};
  ir::Ruleset replayed = compiler.ruleset();
  const auto diff = compiler.replace_all(flatten(services));
  ASSERT_FALSE(diff.needs_full_sync);
  apply_diff(replayed, diff);
  EXPECT_EQ(replayed, compile(flatten(services), node()).ruleset);
}

TEST(RulesetCompiler, OneEndpointChangeIsASmallDiffWhateverTheClusterSize) {
  model::NodeConfig n = node();
  std::vector<ServicePortState> ports;
  for (int s = 0; s < 5000; ++s) {
    ServicePortState sp;
    sp.name = {{"ns", "svc" + std::to_string(s)}, "http", model::Protocol::TCP, model::IPFamily::V4};
    sp.cluster_ip = IPAddress::v4(10, 96, static_cast<uint8_t>(s / 250), static_cast<uint8_t>(s % 250 + 1));
    sp.port = 80;
    for (int e = 0; e < 3; ++e)
      sp.cluster_endpoints.push_back({IPAddress::v4(10, 244, static_cast<uint8_t>(s / 80), static_cast<uint8_t>(e + 3 * (s % 80))), 8080});
    ports.push_back(sp);
  }
  RulesetCompiler compiler(n);
  compiler.reset(ports);
  auto changed = ports[1234];
  changed.cluster_endpoints.pop_back();  // 3 -> 2 endpoints
  const auto diff = compiler.update({changed.name.service}, {changed});
  EXPECT_FALSE(diff.needs_full_sync);
  EXPECT_GT(diff.operations(), 0u);
  EXPECT_LE(diff.operations(), 11u)
      << "3 elements out, 2 in, one chain rewritten, the gone endpoint's counter and its element";
}

TEST(RulesetCompiler, ConflictOwnershipMovesWhenTheWinnerLeaves) {
  model::NodeConfig n = node();
  ServicePortState a, b;
  a.name = {{"ns", "a"}, "", model::Protocol::TCP, model::IPFamily::V4};
  b.name = {{"ns", "b"}, "", model::Protocol::TCP, model::IPFamily::V4};
  a.cluster_ip = b.cluster_ip = IPAddress::v4(10, 96, 0, 1);
  a.port = b.port = 80;
  a.cluster_endpoints = {{IPAddress::v4(10, 244, 0, 1), 80}};
  b.cluster_endpoints = {{IPAddress::v4(10, 244, 0, 2), 80}};
  RulesetCompiler compiler(n);
  compiler.reset({a, b});
  EXPECT_EQ(compiler.take_warnings().size(), 1u);
  ir::Ruleset replayed = compiler.ruleset();
  const auto diff = compiler.update({a.name.service}, {});
  apply_diff(replayed, diff);
  EXPECT_EQ(replayed, compile({b}, n).ruleset);
  EXPECT_EQ(compiler.ruleset(), compile({b}, n).ruleset);
}

}  // namespace
}  // namespace svcproxy::dataplane
