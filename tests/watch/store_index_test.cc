// The store's index of EndpointSlices by service: after any sequence of
// upserts (also moving a slice to another service), erases and relists,
// service_objects() returns exactly the slices a scan of the snapshot finds,
// and each Change names the service(s) it affects.
#include <gtest/gtest.h>

#include <random>

#include "watch/store.h"

namespace svcproxy::watch {
namespace {

model::EndpointSlice slice(const std::string& name, const std::string& service, int version) {
  model::EndpointSlice s;
  s.ref = {"ns", name};
  s.service_name = service;
  s.resource_version = std::to_string(version);
  return s;
}

model::Service service(const std::string& name) {
  model::Service s;
  s.ref = {"ns", name};
  return s;
}

// What a scan finds: the slices labelled with `name`, by reference.
std::vector<model::EndpointSlice> scanned(const Store& store, const std::string& name) {
  std::vector<model::EndpointSlice> out;
  for (const auto& s : store.snapshot().endpoint_slices)
    if (s.ref.ns == "ns" && s.service_name == name) out.push_back(s);
  return out;
}

TEST(StoreIndexTest, ServiceObjectsEqualAScanAfterRandomChanges) {
  Store store;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> pick(0, 9);
  for (int step = 0; step < 2000; ++step) {
    const std::string name = "slice" + std::to_string(pick(rng));
    // "" is an unlabelled slice: indexed under no service.
    const std::string owner = pick(rng) == 0 ? "" : "svc" + std::to_string(pick(rng) % 4);
    const int op = pick(rng);
    if (op < 6) {
      store.upsert(Resource::EndpointSlices, slice(name, owner, step));
    } else if (op < 9) {
      store.erase(Resource::EndpointSlices, {"ns", name});
    } else {
      std::vector<Object> objects;
      for (int i = 0; i < pick(rng); ++i) objects.emplace_back(slice("slice" + std::to_string(i), owner, step));
      store.replace(Resource::EndpointSlices, std::move(objects));
    }
    if (step % 100 == 0) store.upsert(Resource::Services, service("svc" + std::to_string(pick(rng) % 4)));
    for (int s = 0; s < 4; ++s) {
      const std::string svc = "svc" + std::to_string(s);
      const auto got = store.service_objects({"ns", svc});
      ASSERT_EQ(got.slices, scanned(store, svc)) << "step " << step << " " << svc;
      ASSERT_EQ(got.service.has_value(), store.get(Resource::Services, {"ns", svc}).has_value());
    }
  }
}

TEST(StoreIndexTest, UpdateCarriesThePreviousStateSoBothOwnersAreKnown) {
  std::vector<Change> changes;
  Store store([&](const Change& c) { changes.push_back(c); });
  store.upsert(Resource::EndpointSlices, slice("a", "svc1", 1));
  store.upsert(Resource::EndpointSlices, slice("a", "svc2", 2));
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_FALSE(changes[0].previous);
  ASSERT_TRUE(changes[1].previous);
  EXPECT_EQ(std::get<model::EndpointSlice>(*changes[1].previous).service_name, "svc1");
  EXPECT_EQ(std::get<model::EndpointSlice>(changes[1].object).service_name, "svc2");
  EXPECT_TRUE(store.service_objects({"ns", "svc1"}).slices.empty());
  EXPECT_EQ(store.service_objects({"ns", "svc2"}).slices.size(), 1u);

  // A relist that relabels reports the previous state too.
  store.replace(Resource::EndpointSlices, {slice("a", "svc3", 3)});
  ASSERT_EQ(changes.size(), 3u);
  ASSERT_TRUE(changes[2].previous);
  EXPECT_EQ(std::get<model::EndpointSlice>(*changes[2].previous).service_name, "svc2");
  EXPECT_EQ(store.service_objects({"ns", "svc3"}).slices.size(), 1u);
}

TEST(StoreIndexTest, SnapshotOfSomeResourcesLeavesTheOthersOut) {
  Store store;
  store.upsert(Resource::Services, service("svc"));
  store.upsert(Resource::EndpointSlices, slice("a", "svc", 1));
  model::Node node;
  node.name = "node-a";
  store.upsert(Resource::Nodes, node);
  const auto state = store.snapshot({Resource::Nodes, Resource::ServiceCIDRs});
  EXPECT_TRUE(state.services.empty());
  EXPECT_TRUE(state.endpoint_slices.empty());
  ASSERT_EQ(state.nodes.size(), 1u);
  EXPECT_EQ(state.nodes[0].name, "node-a");
}

}  // namespace
}  // namespace svcproxy::watch
