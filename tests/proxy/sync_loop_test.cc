// The nftables dataplane against an in-memory kernel: full programs at start
// and after failures, O(changes) diffs in between, and object counts that
// always equal a recount of what the kernel holds.
#include "proxy/sync_loop.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "proxy/metrics.h"
#include "tests/dataplane/random_ports.h"
#include "tests/support/fake_ruleset_kernel.h"

namespace svcproxy::proxy {
namespace {

using dataplane::testing::node;
using dataplane::testing::random_port;
using model::ObjectRef;
using model::ServicePortState;

class RecordingConntrack final : public ConntrackCleanup {
 public:
  size_t delete_stale(const std::vector<dataplane::StaleUdpFlow>& flows) override {
    stale_calls.push_back(flows);
    return flows.size();
  }
  size_t delete_orphans(const std::vector<ServicePortState>&, const std::vector<model::IPAddress>&) override {
    return ++orphan_calls, 0;
  }
  std::vector<std::vector<dataplane::StaleUdpFlow>> stale_calls;
  int orphan_calls = 0;
};

// The cluster as services -> ports, as the daemon keeps it.
using Services = std::map<ObjectRef, std::vector<ServicePortState>>;

std::vector<ServicePortState> flatten(const Services& services) {
  std::vector<ServicePortState> out;
  for (const auto& [ref, ports] : services) out.insert(out.end(), ports.begin(), ports.end());
  return out;
}

std::vector<ServicePortState> random_service(std::mt19937& rng, int service) {
  std::vector<ServicePortState> ports;
  for (int p = 0; p < 1 + static_cast<int>(rng() % 2); ++p) ports.push_back(random_port(rng, service, p));
  return ports;
}

struct Fixture {
  testing::FakeRulesetKernel kernel;
  RecordingConntrack conntrack;
  SyncLoop loop{node(), kernel, conntrack};
  Services services;

  void expect_kernel_matches(const char* when) {
    EXPECT_EQ(kernel.ruleset(), dataplane::compile(flatten(services), node()).ruleset) << when;
    const auto counted = count_kernel_objects(kernel.ruleset());
    ASSERT_TRUE(loop.kernel_objects());
    EXPECT_EQ(*loop.kernel_objects(), counted) << when;
  }
  SyncResult change(const ObjectRef& ref, std::vector<ServicePortState> ports) {
    if (ports.empty()) {
      services.erase(ref);
    } else {
      services[ref] = ports;
    }
    return loop.apply_changes({ref}, ports);
  }
};

TEST(SyncLoopTest, StartIsFullThenAChangeIsOnePartialTransactionOfThatService) {
  Fixture f;
  std::mt19937 rng(1);
  for (int s = 0; s < 20; ++s) f.services[{"ns", "svc" + std::to_string(s)}] = random_service(rng, s);
  ASSERT_TRUE(f.loop.needs_full_sync());
  const auto start = f.loop.full_sync(flatten(f.services));
  ASSERT_EQ(start.error, "");
  EXPECT_TRUE(start.full);
  EXPECT_EQ(f.kernel.full_transactions, 1);
  EXPECT_EQ(f.conntrack.orphan_calls, 1);
  f.expect_kernel_matches("after start");

  auto ports = f.services.at({"ns", "svc7"});
  ports[0].cluster_endpoints.push_back({model::IPAddress::v4(10, 244, 9, 9), 8080});
  const auto r = f.change({"ns", "svc7"}, ports);
  ASSERT_EQ(r.error, "");
  EXPECT_FALSE(r.full);
  EXPECT_EQ(f.kernel.full_transactions, 1);
  EXPECT_EQ(f.kernel.partial_transactions, 1);
  EXPECT_GT(r.operations, 0u);
  // Only svc7's own chains were touched.
  for (const auto& t : f.kernel.last_partial.tables) {
    for (const auto& c : t.added_chains) EXPECT_NE(c.name.find("ns/svc7/"), std::string::npos) << c.name;
    for (const auto& c : t.replaced_chains) EXPECT_NE(c.name.find("ns/svc7/"), std::string::npos) << c.name;
    for (const auto& c : t.deleted_chains) EXPECT_NE(c.find("ns/svc7/"), std::string::npos) << c;
  }
  f.expect_kernel_matches("after one change");
}

TEST(SyncLoopTest, NothingChangedIsNoTransaction) {
  Fixture f;
  std::mt19937 rng(2);
  f.services[{"ns", "svc1"}] = random_service(rng, 1);
  ASSERT_EQ(f.loop.full_sync(flatten(f.services)).error, "");
  // An unchanged service given again, and nothing at all.
  const auto same = f.loop.apply_changes({{"ns", "svc1"}}, f.services.at({"ns", "svc1"}));
  const auto none = f.loop.apply_changes({}, {});
  EXPECT_EQ(same.operations + none.operations, 0u);
  EXPECT_EQ(f.kernel.partial_transactions, 0);
  EXPECT_EQ(f.kernel.full_transactions, 1);
}

TEST(SyncLoopTest, AFailedTransactionMakesTheNextSyncFull) {
  Fixture f;
  std::mt19937 rng(3);
  for (int s = 0; s < 5; ++s) f.services[{"ns", "svc" + std::to_string(s)}] = random_service(rng, s);
  ASSERT_EQ(f.loop.full_sync(flatten(f.services)).error, "");
  f.kernel.fail_next();
  const auto failed = f.change({"ns", "svc2"}, {});
  EXPECT_NE(failed.error, "");
  EXPECT_TRUE(f.loop.needs_full_sync());
  // A partial sync is refused until a full one succeeded.
  EXPECT_NE(f.loop.apply_changes({}, {}).error, "");
  const auto again = f.loop.full_sync(flatten(f.services));
  ASSERT_EQ(again.error, "");
  EXPECT_TRUE(again.full);
  EXPECT_EQ(f.conntrack.orphan_calls, 2);  // after a failure conntrack is unknown too
  EXPECT_FALSE(f.loop.needs_full_sync());
  f.expect_kernel_matches("after recovery");
}

TEST(SyncLoopTest, RandomChangesAndFailuresKeepKernelAndCountsExact) {
  Fixture f;
  std::mt19937 rng(4);
  for (int s = 0; s < 30; ++s) f.services[{"ns", "svc" + std::to_string(s)}] = random_service(rng, s);
  ASSERT_EQ(f.loop.full_sync(flatten(f.services)).error, "");
  int failures = 0;
  for (int step = 0; step < 300; ++step) {
    if (rng() % 25 == 0) {
      f.kernel.fail_next();
      ++failures;
    }
    const int s = static_cast<int>(rng() % 40);
    const ObjectRef ref{"ns", "svc" + std::to_string(s)};
    std::vector<ServicePortState> ports = rng() % 5 == 0 ? std::vector<ServicePortState>{} : random_service(rng, s);
    SyncResult r = f.loop.needs_full_sync() ? SyncResult{} : f.change(ref, ports);
    if (f.loop.needs_full_sync()) {
      if (ports.empty()) {
        f.services.erase(ref);
      } else {
        f.services[ref] = ports;
      }
      r = f.loop.full_sync(flatten(f.services));
    }
    if (!r.error.empty()) continue;
    ASSERT_NO_FATAL_FAILURE(f.expect_kernel_matches(("step " + std::to_string(step)).c_str()));
  }
  EXPECT_GT(failures, 0);
  EXPECT_GT(f.kernel.partial_transactions, 200);
}

TEST(SyncLoopTest, StaleUdpFlowsOfAChangeAreDeleted) {
  Fixture f;
  ServicePortState dns;
  dns.name = {{"ns", "dns"}, "dns", model::Protocol::UDP, model::IPFamily::V4};
  dns.port = 53;
  dns.cluster_ip = model::IPAddress::v4(10, 96, 0, 10);
  dns.cluster_endpoints = {{model::IPAddress::v4(10, 244, 0, 5), 53}};
  f.services[dns.name.service] = {dns};
  ASSERT_EQ(f.loop.full_sync(flatten(f.services)).error, "");
  dns.cluster_endpoints = {{model::IPAddress::v4(10, 244, 0, 6), 53}};
  const auto r = f.change(dns.name.service, {dns});
  ASSERT_EQ(r.error, "");
  ASSERT_EQ(f.conntrack.stale_calls.size(), 1u);
  EXPECT_FALSE(f.conntrack.stale_calls[0].empty());
  EXPECT_EQ(r.conntrack_deleted, f.conntrack.stale_calls[0].size());
}

TEST(SyncLoopTest, NodeChangeMakesTheNextSyncFull) {
  Fixture f;
  std::mt19937 rng(5);
  f.services[{"ns", "svc1"}] = random_service(rng, 1);
  ASSERT_EQ(f.loop.full_sync(flatten(f.services)).error, "");
  auto changed = node();
  changed.service_cidrs.push_back(*model::CIDR::parse("10.97.0.0/16"));
  f.loop.set_node(changed);
  EXPECT_TRUE(f.loop.needs_full_sync());
  ASSERT_EQ(f.loop.full_sync(flatten(f.services)).error, "");
  EXPECT_EQ(f.kernel.ruleset(), dataplane::compile(flatten(f.services), changed).ruleset);
}

TEST(SyncLoopTest, RepairUndoesAnEditOfTheKernelsTables) {
  Fixture f;
  std::mt19937 rng(6);
  for (int s = 0; s < 5; ++s) f.services[{"ns", "svc" + std::to_string(s)}] = random_service(rng, s);
  ASSERT_EQ(f.loop.full_sync(flatten(f.services)).error, "");
  f.kernel.ruleset().tables[0].chains.pop_back();  // someone deleted a chain
  const auto r = f.loop.repair();
  ASSERT_EQ(r.error, "");
  f.expect_kernel_matches("after repair");
}

TEST(SyncLoopTest, ConflictWarningsStayListedUntilTheConflictIsGone) {
  Fixture f;
  auto port_of = [](const std::string& name) {
    ServicePortState p;
    p.name = {{"ns", name}, "", model::Protocol::TCP, model::IPFamily::V4};
    p.port = 80;
    p.cluster_ip = model::IPAddress::v4(10, 96, 0, 1);  // the same address: a conflict
    return p;
  };
  f.services[{"ns", "a"}] = {port_of("a")};
  f.services[{"ns", "b"}] = {port_of("b")};
  const auto start = f.loop.full_sync(flatten(f.services));
  ASSERT_EQ(start.warnings.size(), 1u);
  // A change elsewhere: the warning is still listed.
  auto c = port_of("c");
  c.cluster_ip = model::IPAddress::v4(10, 96, 0, 3);
  EXPECT_EQ(f.change({"ns", "c"}, {c}).warnings, start.warnings);
  // The loser goes away: so does its warning.
  EXPECT_TRUE(f.change({"ns", "b"}, {}).warnings.empty());
}

}  // namespace
}  // namespace svcproxy::proxy
