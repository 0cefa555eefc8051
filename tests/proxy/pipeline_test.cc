// The daemon's pipeline without root: store -> ChangeTracker (dirty
// services) -> ServiceModel (per service) -> SyncLoop -> an in-memory
// kernel. Changes coalesce per service; a partial sync recomputes only the
// dirty services and gives what a full rebuild gives.
#include <gtest/gtest.h>

#include <thread>

#include "dataplane/compile.h"
#include "proxy/change_tracker.h"
#include "proxy/metrics.h"
#include "proxy/service_model.h"
#include "proxy/sync_loop.h"
#include "tests/support/fake_ruleset_kernel.h"
#include "watch/store.h"

namespace svcproxy::proxy {
namespace {

using model::IPAddress;

class NoConntrack final : public ConntrackCleanup {
 public:
  size_t delete_stale(const std::vector<dataplane::StaleUdpFlow>&) override { return 0; }
  size_t delete_orphans(const std::vector<model::ServicePortState>&, const std::vector<IPAddress>&) override {
    return 0;
  }
};

model::NodeConfig node() {
  model::NodeConfig n;
  n.node_name = "node-a";
  n.node_ips = {IPAddress::v4(203, 0, 113, 1)};
  n.nodeport_ips = n.node_ips;
  return n;
}

model::Service service(int i) {
  model::Service s;
  s.ref = {"ns", "svc" + std::to_string(i)};
  s.cluster_ips = {IPAddress::v4(10, 96, static_cast<uint8_t>(i / 250), static_cast<uint8_t>(1 + i % 250))};
  s.ports = {{"http", model::Protocol::TCP, 80, {8080, ""}, 0}};
  return s;
}

model::EndpointSlice slice(int service, int version, const std::string& owner = "") {
  model::EndpointSlice s;
  s.ref = {"ns", "svc" + std::to_string(service) + "-a"};
  s.service_name = owner.empty() ? "svc" + std::to_string(service) : owner;
  s.resource_version = std::to_string(version);
  s.ports = {{"http", model::Protocol::TCP, 8080}};
  model::Endpoint e;
  e.address = IPAddress::v4(10, 244, static_cast<uint8_t>(version % 200), static_cast<uint8_t>(1 + service % 250));
  s.endpoints = {e};
  return s;
}

struct Pipeline {
  ChangeTracker tracker;
  watch::Store store{[this](const watch::Change& c) { tracker.on_change(c); }};
  testing::FakeRulesetKernel kernel;
  NoConntrack conntrack;
  SyncLoop loop{node(), kernel, conntrack, [this] { return dataplane::DriftCheck::Readback{kernel.ruleset()}; }};
  ServiceModel model;

  void full() {
    tracker.take();
    model.rebuild(store.snapshot(), node());
    ASSERT_EQ(loop.full_sync(model.all_ports()).error, "");
  }
  ChangeBatch partial() {
    ChangeBatch batch = tracker.take();
    const auto ports = model.recompute(store, batch.services, node());
    EXPECT_EQ(loop.apply_changes({batch.services.begin(), batch.services.end()}, ports).error, "");
    return batch;
  }
  // What a full rebuild from the store gives.
  void expect_equal_to_a_rebuild() {
    ServiceModel rebuilt;
    rebuilt.rebuild(store.snapshot(), node());
    EXPECT_EQ(model.all_ports(), rebuilt.all_ports());
    EXPECT_EQ(kernel.ruleset(), dataplane::compile(rebuilt.all_ports(), node()).ruleset);
  }
};

TEST(PipelineTest, ABurstOf10kChangesIsOneTransaction) {
  Pipeline p;
  for (int i = 0; i < 100; ++i) {
    p.store.upsert(watch::Resource::Services, service(i));
    p.store.upsert(watch::Resource::EndpointSlices, slice(i, 0));
  }
  p.full();
  // 10k slice updates from another thread (the watch thread) while the
  // loop is busy: they coalesce into one batch of dirty services.
  std::thread watcher([&] {
    for (int v = 1; v <= 10000; ++v) p.store.upsert(watch::Resource::EndpointSlices, slice(v % 100, v));
  });
  watcher.join();
  const ChangeBatch batch = p.partial();
  EXPECT_EQ(batch.endpoint_slice_changes, 10000u);
  EXPECT_EQ(batch.services.size(), 100u);
  // All 10k were in that one take: nothing is left for a second sync (the
  // transaction count alone is this harness's one call).
  EXPECT_FALSE(p.tracker.take().any());
  EXPECT_EQ(p.kernel.partial_transactions, 1);
  EXPECT_EQ(p.kernel.full_transactions, 1);
  p.expect_equal_to_a_rebuild();
}

TEST(PipelineTest, APartialSyncRecomputesOnlyTheDirtyServices) {
  Pipeline p;
  for (int i = 0; i < 50; ++i) {
    p.store.upsert(watch::Resource::Services, service(i));
    p.store.upsert(watch::Resource::EndpointSlices, slice(i, 0));
  }
  p.full();
  p.store.upsert(watch::Resource::EndpointSlices, slice(7, 1));
  const ChangeBatch batch = p.partial();
  EXPECT_EQ(batch.services, (std::set<model::ObjectRef>{{"ns", "svc7"}}));
  ASSERT_TRUE(batch.oldest);
  EXPECT_EQ(p.kernel.partial_transactions, 1);
  for (const auto& t : p.kernel.last_partial.tables) {
    for (const auto& c : t.replaced_chains) EXPECT_NE(c.name.find("ns/svc7/"), std::string::npos) << c.name;
    for (const auto& c : t.added_chains) EXPECT_NE(c.name.find("ns/svc7/"), std::string::npos) << c.name;
  }
  p.expect_equal_to_a_rebuild();
  // Nothing arrived: nothing is dirty, no transaction.
  EXPECT_TRUE(p.partial().services.empty());
  EXPECT_EQ(p.kernel.partial_transactions, 1);
}

TEST(PipelineTest, ASliceMovedToAnotherServiceDirtiesBoth) {
  Pipeline p;
  for (int i = 0; i < 3; ++i) p.store.upsert(watch::Resource::Services, service(i));
  p.store.upsert(watch::Resource::EndpointSlices, slice(1, 0));
  p.full();
  p.store.upsert(watch::Resource::EndpointSlices, slice(1, 1, "svc2"));  // relabelled
  const ChangeBatch batch = p.partial();
  EXPECT_EQ(batch.services, (std::set<model::ObjectRef>{{"ns", "svc1"}, {"ns", "svc2"}}));
  p.expect_equal_to_a_rebuild();
  // Deleting the service and its slice.
  p.store.erase(watch::Resource::Services, {"ns", "svc2"});
  p.store.erase(watch::Resource::EndpointSlices, {"ns", "svc1-a"});
  p.partial();
  p.expect_equal_to_a_rebuild();
}

TEST(PipelineTest, NodeAndServiceCidrChangesAskForTheNodeConfiguration) {
  ChangeTracker tracker;
  watch::Store store([&](const watch::Change& c) { tracker.on_change(c); });
  store.upsert(watch::Resource::Services, service(1));
  EXPECT_FALSE(tracker.take().node_changed);
  model::Node n;
  n.name = "node-a";
  store.upsert(watch::Resource::Nodes, n);
  const auto batch = tracker.take();
  EXPECT_TRUE(batch.node_changed);
  EXPECT_TRUE(batch.services.empty());
}

TEST(PipelineTest, TheOldestArrivalIsKeptAcrossMerges) {
  ChangeTracker tracker;
  const auto t0 = ChangeTracker::Clock::now();
  watch::Change c;
  c.resource = watch::Resource::Services;
  c.key = {"ns", "a"};
  c.object = service(1);
  tracker.on_change(c, t0 + std::chrono::seconds(2));
  ChangeBatch pending = tracker.take();
  tracker.on_change(c, t0 + std::chrono::seconds(5));
  pending.merge(tracker.take());
  ASSERT_TRUE(pending.oldest);
  EXPECT_EQ(*pending.oldest, t0 + std::chrono::seconds(2));
  EXPECT_EQ(pending.service_changes, 2u);
}

TEST(PipelineTest, ServiceModelKeepsDerivedCountsLikeARecount) {
  Pipeline p;
  for (int i = 0; i < 20; ++i) {
    auto s = service(i);
    if (i % 3 == 0) {
      s.type = model::ServiceType::LoadBalancer;
      s.external_traffic_policy = model::TrafficPolicy::Local;
      s.health_check_node_port = static_cast<uint16_t>(31000 + i);
      s.ports[0].node_port = static_cast<uint16_t>(30000 + i);
    }
    p.store.upsert(watch::Resource::Services, s);
    auto sl = slice(i, 0);
    if (i % 2 == 0) sl.endpoints[0].node_name = "node-a";
    p.store.upsert(watch::Resource::EndpointSlices, sl);
  }
  p.full();
  auto served = p.model.take_health_check_services();
  ASSERT_TRUE(served);
  EXPECT_EQ(served->size(), 7u);
  for (int v = 1; v < 40; ++v) {
    auto sl = slice(v % 20, v);
    if (v % 4 == 0) sl.endpoints[0].node_name = "node-a";
    p.store.upsert(watch::Resource::EndpointSlices, sl);
    p.partial();
    const auto all = p.model.all_ports();
    const auto recount = count_no_local_endpoints(all);
    EXPECT_TRUE(p.model.no_local_endpoints() == recount) << v;
    // What the servers were last given equals a recount over every port.
    if (auto hc = p.model.take_health_check_services()) served = std::move(hc);
    EXPECT_EQ(*served, health_check_services(all)) << v;
  }
  p.expect_equal_to_a_rebuild();
}

}  // namespace
}  // namespace svcproxy::proxy
