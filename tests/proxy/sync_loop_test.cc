// The nftables dataplane against an in-memory kernel: full programs at start
// and after failures, O(changes) diffs in between, and object counts that
// always equal a recount of what the kernel holds.
#include "proxy/sync_loop.h"

#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <future>
#include <map>
#include <random>
#include <set>

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
  size_t delete_orphans(const std::vector<ServicePortState>& ports, const std::vector<model::IPAddress>&) override {
    orphan_calls.push_back(ports);
    return 0;
  }
  std::vector<std::vector<dataplane::StaleUdpFlow>> stale_calls;
  std::vector<std::vector<ServicePortState>> orphan_calls;  // the ports given, per call
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

// The families with UDP ports: each gets one orphan reconcile per full sync.
size_t udp_families(const std::vector<ServicePortState>& ports) {
  std::set<model::IPFamily> families;
  for (const auto& p : ports)
    if (p.name.protocol == model::Protocol::UDP) families.insert(p.name.family);
  return families.size();
}

struct Fixture {
  testing::FakeRulesetKernel kernel;
  RecordingConntrack conntrack;
  // A drift check reads the fake kernel's tables once `gate` opens (at
  // once when it holds no future).
  std::shared_future<void> gate;
  SyncLoop loop{node(), kernel, conntrack, [this] {
                  if (gate.valid()) gate.wait();
                  return dataplane::DriftCheck::Readback{kernel.ruleset()};
                }};
  Services services;

  // Waits for the drift check repair() started and applies its repair.
  std::optional<RepairResult> finish_repair() {
    pollfd fd{loop.repair_fd(), POLLIN, 0};
    EXPECT_EQ(poll(&fd, 1, 10000), 1) << "the drift check did not finish";
    return loop.finish_repair();
  }

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
  EXPECT_EQ(f.conntrack.orphan_calls.size(), udp_families(flatten(f.services)));
  EXPECT_EQ(start.conntrack_reconciles.size(), udp_families(flatten(f.services)));
  // Each call is one family's UDP ports (kube-proxy reconciles per family).
  for (const auto& call : f.conntrack.orphan_calls) {
    ASSERT_FALSE(call.empty());
    for (const auto& p : call) {
      EXPECT_EQ(p.name.protocol, model::Protocol::UDP);
      EXPECT_EQ(p.name.family, call.front().name.family);
    }
  }
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
  // After a failure conntrack is unknown too: reconciled again.
  EXPECT_EQ(f.conntrack.orphan_calls.size(), 2 * udp_families(flatten(f.services)));
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
  // One timed reconcile of the family that changed (the conntrack metrics).
  ASSERT_EQ(r.conntrack_reconciles.size(), 1u);
  EXPECT_EQ(r.conntrack_reconciles[0].family, model::IPFamily::V4);
  EXPECT_EQ(r.conntrack_reconciles[0].deleted, r.conntrack_deleted);
  EXPECT_LE(r.conntrack_reconciles[0].duration, r.duration);
}

TEST(SyncLoopTest, ConntrackIsReconciledPerFamily) {
  Fixture f;
  auto udp_port = [](model::IPFamily family, model::IPAddress ip, model::IPAddress endpoint) {
    ServicePortState p;
    p.name = {{"ns", "dns"}, "dns", model::Protocol::UDP, family};
    p.port = 53;
    p.cluster_ip = ip;
    p.cluster_endpoints = {{endpoint, 53}};
    return p;
  };
  const auto v6 = [](int last) { return *model::IPAddress::parse("fd00::" + std::to_string(last)); };
  std::vector<ServicePortState> dns = {
      udp_port(model::IPFamily::V4, model::IPAddress::v4(10, 96, 0, 10), model::IPAddress::v4(10, 244, 0, 5)),
      udp_port(model::IPFamily::V6, v6(10), v6(5))};
  f.services[{"ns", "dns"}] = dns;
  const auto start = f.loop.full_sync(flatten(f.services));
  ASSERT_EQ(start.error, "");
  ASSERT_EQ(start.conntrack_reconciles.size(), 2u);
  EXPECT_EQ(start.conntrack_reconciles[0].family, model::IPFamily::V4);
  EXPECT_EQ(start.conntrack_reconciles[1].family, model::IPFamily::V6);
  ASSERT_EQ(f.conntrack.orphan_calls.size(), 2u);
  EXPECT_EQ(f.conntrack.orphan_calls[1].front().name.family, model::IPFamily::V6);
  // Only the IPv6 endpoint moves: only IPv6 is reconciled.
  dns[1].cluster_endpoints = {{v6(6), 53}};
  const auto r = f.change({"ns", "dns"}, dns);
  ASSERT_EQ(r.error, "");
  ASSERT_EQ(r.conntrack_reconciles.size(), 1u);
  EXPECT_EQ(r.conntrack_reconciles[0].family, model::IPFamily::V6);
  ASSERT_EQ(f.conntrack.stale_calls.size(), 1u);
  for (const auto& flow : f.conntrack.stale_calls[0]) EXPECT_EQ(flow.family, model::IPFamily::V6);
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
  f.loop.repair();
  const auto r = f.finish_repair();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->sync.error, "");
  EXPECT_EQ(r->drifted.missing_chains, 1u);
  f.expect_kernel_matches("after repair");
}

TEST(SyncLoopTest, RepairAppliesOnlyTheDriftAsOnePartialTransaction) {
  Fixture f;
  std::mt19937 rng(7);
  for (int s = 0; s < 20; ++s) f.services[{"ns", "svc" + std::to_string(s)}] = random_service(rng, s);
  ASSERT_EQ(f.loop.full_sync(flatten(f.services)).error, "");
  // Someone deletes one element of a set (not an interval set: those are
  // replaced whole).
  auto& table = f.kernel.ruleset().tables[0];
  auto set = std::find_if(table.sets.begin(), table.sets.end(),
                          [](const auto& s) { return s.elements.size() > 1 && !s.interval && !s.dynamic; });
  ASSERT_NE(set, table.sets.end());
  set->elements.erase(set->elements.begin());
  const int full_before = f.kernel.full_transactions;
  const int partial_before = f.kernel.partial_transactions;

  f.loop.repair();
  const auto r = f.finish_repair();
  ASSERT_TRUE(r);
  ASSERT_EQ(r->sync.error, "");
  EXPECT_FALSE(r->sync.full);
  EXPECT_EQ(r->drifted.missing_elements, 1u);
  EXPECT_EQ(r->drifted.total(), 1u);
  EXPECT_EQ(r->sync.operations, 1u);
  EXPECT_EQ(f.kernel.full_transactions, full_before);
  EXPECT_EQ(f.kernel.partial_transactions, partial_before + 1);
  EXPECT_EQ(f.kernel.last_partial.operations(), 1u);
  f.expect_kernel_matches("after repair");

  // Undrifted: a check finds nothing and sends nothing.
  f.loop.repair();
  const auto again = f.finish_repair();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->drifted.total(), 0u);
  EXPECT_EQ(f.kernel.partial_transactions, partial_before + 1);
}

TEST(SyncLoopTest, ASyncDuringADriftCheckIsNotUndoneByItsRepair) {
  Fixture f;
  std::mt19937 rng(8);
  for (int s = 0; s < 10; ++s) f.services[{"ns", "svc" + std::to_string(s)}] = random_service(rng, s);
  ASSERT_EQ(f.loop.full_sync(flatten(f.services)).error, "");
  std::promise<void> open;
  f.gate = open.get_future().share();
  f.loop.repair();  // snapshot: before the change below
  ASSERT_EQ(f.change({"ns", "svc3"}, random_service(rng, 30)).error, "");
  ASSERT_EQ(f.change({"ns", "svc4"}, {}).error, "");
  open.set_value();  // the readback: after it
  const auto r = f.finish_repair();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->drifted.total(), 0u) << "the changes synced meanwhile are no drift";
  f.expect_kernel_matches("after the repair");
}

TEST(SyncLoopTest, AFullSyncOrAFailureDuringADriftCheckVoidsIt) {
  Fixture f;
  std::mt19937 rng(9);
  for (int s = 0; s < 5; ++s) f.services[{"ns", "svc" + std::to_string(s)}] = random_service(rng, s);
  ASSERT_EQ(f.loop.full_sync(flatten(f.services)).error, "");
  f.kernel.ruleset().tables[0].chains.pop_back();
  std::promise<void> open;
  f.gate = open.get_future().share();
  f.loop.repair();
  ASSERT_EQ(f.loop.full_sync(flatten(f.services)).error, "");  // SIGHUP: repairs everything
  open.set_value();
  EXPECT_FALSE(f.finish_repair());
  f.expect_kernel_matches("after the full sync");

  f.gate = {};
  f.kernel.ruleset().tables[0].chains.pop_back();
  f.loop.repair();
  f.kernel.fail_next();
  EXPECT_NE(f.change({"ns", "svc1"}, random_service(rng, 11)).error, "");
  EXPECT_FALSE(f.finish_repair()) << "after a failure the next sync is full, not a repair";
  EXPECT_TRUE(f.loop.needs_full_sync());
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
