// A randomized run against the fixture: 1200 create/update/delete operations
// on Services and EndpointSlices (some headless, foreign or invalid, some
// moving in and out of the selectors), interleaved with random faults (cut
// and split streams, ERROR 410 after compaction, HTTP 410, expired continue
// tokens, 429, 500, closed watches). At the end the store equals the
// fixture's state exactly, and replaying the emitted changes from empty
// gives the same state.
#include <gtest/gtest.h>

#include <random>

#include "tests/watch/reflector_harness.h"

namespace svcproxy::watch {
namespace {

using testing::FixtureProcess;
using testing::Harness;
using testing::fast;
using testing::fixture_config;
using testing::fixture_objects;
using testing::pki_dir;

std::string random_service(std::mt19937& rng, const std::string& ns, const std::string& name) {
  std::uniform_int_distribution<int> pick(0, 99);
  const int kind = pick(rng);
  std::string labels = R"("app":")" + name + "\"";
  std::string ip = "10.96." + std::to_string(pick(rng)) + "." + std::to_string(1 + pick(rng));
  int port = 1 + pick(rng) * 600;
  if (kind < 8) ip = "None";                                                   // headless: filtered
  if (kind >= 8 && kind < 14) labels += R"(,"service.kubernetes.io/service-proxy-name":"other")";  // not ours
  if (kind >= 14 && kind < 18) port = 0;                                       // invalid: skipped
  std::string ports = R"([{"name":"p","protocol":")" + std::string(kind % 3 == 0 ? "UDP" : "TCP") +
                      R"(","port":)" + std::to_string(port) + R"(,"targetPort":)" + std::to_string(1 + pick(rng)) + "}]";
  return R"({"metadata":{"name":")" + name + R"(","namespace":")" + ns + R"(","labels":{)" + labels +
         R"(}},"spec":{"type":")" + std::string(kind % 4 == 0 ? "NodePort" : "ClusterIP") + R"(","clusterIP":")" + ip +
         R"(","ports":)" + ports + "}}";
}

std::string random_slice(std::mt19937& rng, const std::string& ns, const std::string& name) {
  std::uniform_int_distribution<int> pick(0, 99);
  const int kind = pick(rng);
  std::string labels = R"("kubernetes.io/service-name":"svc-)" + std::to_string(pick(rng) % 20) + "\"";
  if (kind < 8) labels += R"(,"service.kubernetes.io/headless":"")";  // filtered
  std::string endpoints;
  const int count = pick(rng) % 6;
  for (int i = 0; i < count; ++i) {
    if (i > 0) endpoints += ",";
    const std::string ip = kind >= 8 && kind < 12 && i == 0 ? "not-an-ip" : "10.244." + std::to_string(pick(rng)) + "." + std::to_string(1 + i);
    endpoints += R"({"addresses":[")" + ip + R"("],"conditions":{"ready":)" + std::string(pick(rng) < 80 ? "true" : "false") +
                 R"(},"nodeName":"node-)" + std::to_string(pick(rng) % 4) + "\"}";
  }
  return R"({"metadata":{"name":")" + name + R"(","namespace":")" + ns + R"(","labels":{)" + labels +
         R"(}},"addressType":"IPv4","endpoints":[)" + endpoints + R"(],"ports":[{"name":"p","protocol":"TCP","port":)" +
         std::to_string(1 + pick(rng) * 100) + "}]}";
}

bool same(std::vector<Object> a, std::vector<Object> b) {
  auto by_key = [](const Object& x, const Object& y) { return object_key(x) < object_key(y); };
  std::sort(a.begin(), a.end(), by_key);
  std::sort(b.begin(), b.end(), by_key);
  return a == b;
}

std::vector<Object> in_store(Store& store, Resource resource) {
  std::vector<Object> out;
  const auto state = store.snapshot();
  if (resource == Resource::Services) {
    for (const auto& s : state.services) out.emplace_back(s);
  } else {
    for (const auto& s : state.endpoint_slices) out.emplace_back(s);
  }
  return out;
}

TEST(StoreConvergence, RandomOperationsWithFaultsConverge) {
  FixtureProcess fx(pki_dir(), /*bookmark_interval=*/0.2, /*seed=*/42);
  fx.fault(R"("split":true)");
  Harness h(fixture_config(fx));
  ReflectorOptions services = fast(services_options());
  ReflectorOptions slices = fast(endpoint_slices_options());
  services.page_size = 7;
  slices.page_size = 5;
  services.min_watch_duration = slices.min_watch_duration = std::chrono::milliseconds(200);
  Reflector& service_reflector = h.add(services, 1);
  Reflector& slice_reflector = h.add(slices, 2);
  h.start();

  std::mt19937 rng(20261128);
  std::uniform_int_distribution<int> pick(0, 999);
  int faults = 0;
  for (int op = 0; op < 1200; ++op) {
    const bool service = pick(rng) % 2 == 0;
    const std::string ns = "ns" + std::to_string(pick(rng) % 3);
    const std::string name = (service ? "svc-" : "slice-") + std::to_string(pick(rng) % 40);
    if (pick(rng) < 250) {
      fx.remove(service ? "services" : "endpointslices", ns, name);
    } else {
      fx.apply(service ? "services" : "endpointslices", service ? random_service(rng, ns, name) : random_slice(rng, ns, name));
    }
    if (op % 50 == 49) {
      // A checkpoint: the store catches up with whatever happened so far.
      const auto checkpoint_start = std::chrono::steady_clock::now();
      const auto want_services = fixture_objects(fx, "services", services);
      const auto want_slices = fixture_objects(fx, "endpointslices", slices);
      ASSERT_TRUE(h.wait_for(
          [&] {
            return same(in_store(h.store(), Resource::Services), want_services) &&
                   same(in_store(h.store(), Resource::EndpointSlices), want_slices);
          },
          std::chrono::seconds(60)))
          << "checkpoint after operation " << op << "\nlog:\n" << ::testing::PrintToString(h.logs())
          << "\nstore " << h.store().size(Resource::Services) << "/" << h.store().size(Resource::EndpointSlices)
          << " want " << want_services.size() << "/" << want_slices.size() << " rv " << service_reflector.resource_version()
          << "/" << slice_reflector.resource_version();
      if (std::getenv("SVCPROXY_TEST_VERBOSE") != nullptr) {
        std::printf("checkpoint %d: %lld ms\n", op,
                    static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                               std::chrono::steady_clock::now() - checkpoint_start)
                                               .count()));
      }
    }
    const int roll = pick(rng);
    if (roll >= 60) continue;
    ++faults;
    switch (roll % 10) {
      case 0: fx.fault(R"("cut_watch":1)"); break;
      case 1: fx.command(R"({"op":"compact"})"); fx.fault(R"("close_watches":true)"); break;
      case 2: fx.fault(R"("error410":1,"close_watches":true)"); break;
      case 3: fx.fault(R"("http410_watch":1,"close_watches":true)"); break;
      case 4: fx.fault(R"("expire_continue":1)"); fx.fault(R"("http410_watch":1,"close_watches":true)"); break;
      case 5: fx.fault(R"("expire_continue":2,"cut_watch":1)"); break;
      case 6: fx.fault(R"("status":{"code":429,"retry_after":0,"count":2,"on":"any"})"); break;
      case 7: fx.fault(R"("status":{"code":500,"count":2,"on":"any"},"close_watches":true)"); break;
      case 8: fx.fault(R"("status":{"code":503,"count":1,"on":"watch"},"close_watches":true)"); break;
      default: fx.fault(R"("close_watches":true)"); break;
    }
  }
  ASSERT_GT(faults, 50);

  const auto expected_services = fixture_objects(fx, "services", services);
  const auto expected_slices = fixture_objects(fx, "endpointslices", slices);
  ASSERT_TRUE(h.wait_for(
      [&] {
        return same(in_store(h.store(), Resource::Services), expected_services) &&
               same(in_store(h.store(), Resource::EndpointSlices), expected_slices);
      },
      std::chrono::seconds(60)))
      << "store: " << h.store().size(Resource::Services) << " services, " << h.store().size(Resource::EndpointSlices)
      << " slices; fixture: " << expected_services.size() << ", " << expected_slices.size();
  h.stop();

  std::map<std::pair<Resource, model::ObjectRef>, Object> replay;
  for (const Change& change : h.changes()) apply_change(replay, change);
  std::vector<Object> replayed_services, replayed_slices;
  for (auto& [key, object] : replay) (key.first == Resource::Services ? replayed_services : replayed_slices).push_back(object);
  EXPECT_TRUE(same(replayed_services, expected_services));
  EXPECT_TRUE(same(replayed_slices, expected_slices));
  EXPECT_GE(service_reflector.stats().lists + slice_reflector.stats().lists, 4u);
  std::printf("convergence: %d faults, %llu+%llu lists, %llu+%llu watches, %zu changes\n", faults,
              static_cast<unsigned long long>(service_reflector.stats().lists.load()),
              static_cast<unsigned long long>(slice_reflector.stats().lists.load()),
              static_cast<unsigned long long>(service_reflector.stats().watches.load()),
              static_cast<unsigned long long>(slice_reflector.stats().watches.load()), h.changes().size());
}

}  // namespace
}  // namespace svcproxy::watch
