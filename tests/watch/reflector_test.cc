// The reflector against the fixture API server: list, watch, relists,
// backoff, faults, TLS and auth.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tests/watch/reflector_harness.h"

namespace svcproxy::watch {
namespace {

using testing::FixtureProcess;
using testing::Harness;
using testing::fast;
using testing::fixture_config;
using testing::fixture_objects;
using testing::json_field;
using testing::pki_dir;
using testing::service_json;
using testing::slice_json;

std::vector<Object> store_objects(Store& store, Resource resource) {
  const auto state = store.snapshot();
  std::vector<Object> out;
  if (resource == Resource::Services) {
    for (const auto& s : state.services) out.emplace_back(s);
  } else {
    for (const auto& s : state.endpoint_slices) out.emplace_back(s);
  }
  return out;
}

bool same(std::vector<Object> a, std::vector<Object> b) {
  auto by_key = [](const Object& x, const Object& y) { return object_key(x) < object_key(y); };
  std::sort(a.begin(), a.end(), by_key);
  std::sort(b.begin(), b.end(), by_key);
  return a == b;
}

TEST(Reflector, ListsThenWatchesWithKubeProxysRequests) {
  FixtureProcess fx(pki_dir());
  fx.apply("services", service_json("shop", "web", "10.96.0.10", 80));
  fx.apply("services", service_json("shop", "headless", "None", 80));
  fx.apply("services", service_json("shop", "other", "10.96.0.11", 80, R"(,"service.kubernetes.io/service-proxy-name":"x")"));
  fx.apply("endpointslices", slice_json("shop", "web-abc", "web", {"10.244.0.1", "10.244.0.2"}));

  Harness h(fixture_config(fx));
  h.add(fast(services_options()));
  h.add(fast(endpoint_slices_options()));
  h.start();
  ASSERT_TRUE(h.wait_for([&] { return h.store().has_synced({Resource::Services, Resource::EndpointSlices}); }));
  auto state = h.store().snapshot();
  ASSERT_EQ(state.services.size(), 1u);  // headless and foreign ones are filtered by the server
  EXPECT_EQ(state.services[0].ref.name, "web");
  ASSERT_EQ(state.endpoint_slices.size(), 1u);
  EXPECT_EQ(state.endpoint_slices[0].endpoints.size(), 2u);

  fx.apply("services", service_json("shop", "api", "10.96.0.12", 9090));
  fx.remove("endpointslices", "shop", "web-abc");
  ASSERT_TRUE(h.wait_for([&] { return h.store().size(Resource::Services) == 2 && h.store().size(Resource::EndpointSlices) == 0; }));

  // The requests, exactly as kube-proxy makes them.
  const std::string requests = fx.command(R"({"op":"requests"})");
  EXPECT_NE(requests.find(R"("labelSelector":"!service.kubernetes.io/service-proxy-name","fieldSelector":"spec.clusterIP!=None","limit":"500","resourceVersion":"0")"), std::string::npos) << requests.substr(0, 2000);
  EXPECT_NE(requests.find(R"("path":"/apis/discovery.k8s.io/v1/endpointslices","query":{"labelSelector":"!service.kubernetes.io/headless")"), std::string::npos);
  EXPECT_NE(requests.find(R"("allowWatchBookmarks":"true")"), std::string::npos);
  EXPECT_NE(requests.find(R"("accept":"application/json","user_agent":"svcproxy/0.1.0")"), std::string::npos);
  EXPECT_NE(requests.find(R"("authorization":"Bearer test-token")"), std::string::npos);
}

TEST(Reflector, WatchErrorGoneRelistsAndEmitsTheDifference) {
  FixtureProcess fx(pki_dir());
  fx.apply("services", service_json("a", "keep", "10.96.0.1", 80));
  fx.apply("services", service_json("a", "drop", "10.96.0.2", 80));
  Harness h(fixture_config(fx));
  h.add(fast(services_options()));
  h.start();
  ASSERT_TRUE(h.wait_for([&] { return h.store().size(Resource::Services) == 2; }));
  // While the watch is down, the history is compacted: the next watch from
  // the old RV gets ERROR 410, and the relist must delete, add and update.
  fx.fault(R"("status":{"code":503,"count":1000000,"on":"watch"},"close_watches":true)");
  ASSERT_TRUE(h.wait_for_log("503"));
  fx.remove("services", "a", "drop");
  fx.apply("services", service_json("a", "keep", "10.96.0.1", 81));
  fx.apply("services", service_json("a", "new", "10.96.0.3", 80));
  fx.command(R"({"op":"compact"})");
  fx.fault(R"("clear_statuses":true)");
  const auto want = fixture_objects(fx, "services", services_options());
  ASSERT_TRUE(h.wait_for([&] { return same(store_objects(h.store(), Resource::Services), want); }));
  h.stop();  // every change handed out
  EXPECT_TRUE(h.log_contains("too old resource version")) << ::testing::PrintToString(h.logs());
  // The relist's difference: one delete, one update, one add, in that order.
  const auto changes = h.changes();
  ASSERT_GE(changes.size(), 5u);
  const std::vector<Change> last(changes.end() - 3, changes.end());
  EXPECT_EQ(last[0].type, ChangeType::Deleted);
  EXPECT_EQ(last[0].key.name, "drop");
  EXPECT_EQ(last[1].type, ChangeType::Updated);
  EXPECT_EQ(last[1].key.name, "keep");
  EXPECT_EQ(last[2].type, ChangeType::Added);
  EXPECT_EQ(last[2].key.name, "new");
  // Replaying the change stream from nothing gives the store.
  std::map<std::pair<Resource, model::ObjectRef>, Object> replay;
  for (const Change& c : h.changes()) apply_change(replay, c);
  std::vector<Object> replayed;
  for (auto& [k, v] : replay) replayed.push_back(v);
  EXPECT_TRUE(same(replayed, store_objects(h.store(), Resource::Services)));
}

// Changes the watch's selectors filter out reach it only as bookmarks: the
// resourceVersion moves on with them, so after a compaction past the last
// event it saw, the next watch still resumes (no relist) from the bookmark's.
TEST(Reflector, BookmarksMoveTheResourceVersionPastFilteredChanges) {
  FixtureProcess fx(pki_dir());
  fx.apply("services", service_json("a", "web", "10.96.0.1", 80));
  Harness h(fixture_config(fx));
  Reflector& r = h.add(fast(services_options()));
  h.start();
  ASSERT_TRUE(h.wait_for([&] { return h.store().has_synced(Resource::Services); }));
  std::string rv;
  for (int i = 0; i < 3; ++i) {
    rv = json_field(fx.apply("services", service_json("a", "foreign-" + std::to_string(i), "10.96.0.9", 80,
                                                      R"(,"service.kubernetes.io/service-proxy-name":"x")")),
                    "rv");
  }
  // Two more bookmarks: the second was sent after the writes (0.3 s apart).
  // A bookmark changes nothing in the store, so nothing wakes Harness::wait_for: poll.
  auto poll = [](const std::function<bool()>& done) {
    for (auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20); !done();) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return true;
  };
  const uint64_t seen = r.stats().bookmarks;
  ASSERT_TRUE(poll([&] { return r.stats().bookmarks >= seen + 2; }));
  fx.command(R"({"op":"compact"})");
  fx.fault(R"("close_watches":true)");
  ASSERT_TRUE(poll([&] { return fx.command(R"({"op":"requests"})").find(
                                  R"("resourceVersion":")" + rv + R"(","watch":"1")") != std::string::npos; }));
  h.stop();
  EXPECT_EQ(r.stats().lists, 1u) << ::testing::PrintToString(h.logs());
  EXPECT_FALSE(h.log_contains("too old resource version"));
  EXPECT_EQ(h.store().size(Resource::Services), 1u);
}

TEST(Reflector, ExpiredContinueTokenRestartsTheListFromEmptyResourceVersion) {
  FixtureProcess fx(pki_dir());
  for (int i = 0; i < 7; ++i) fx.apply("services", service_json("p", "s" + std::to_string(i), "10.96.1." + std::to_string(i + 1), 80));
  Harness h(fixture_config(fx));
  ReflectorOptions options = fast(services_options());
  options.page_size = 2;
  Reflector& reflector = h.add(options);
  fx.fault(R"("expire_continue":1)");
  // A relist (not the first, which uses RV 0 and is not paginated) from a
  // known RV: force one with an HTTP 410 on the watch.
  fx.fault(R"("http410_watch":1)");
  h.start();
  ASSERT_TRUE(h.wait_for_log("continue token expired"));
  ASSERT_TRUE(h.wait_for([&] { return reflector.stats().lists >= 2 && h.store().size(Resource::Services) == 7; }));
  const std::string requests = fx.command(R"({"op":"requests"})");
  EXPECT_NE(requests.find(R"("continue":)"), std::string::npos);
  EXPECT_NE(requests.find(R"("limit":"2","resourceVersion":"")"), std::string::npos) << requests.substr(0, 3000);
}

TEST(Reflector, TooManyRequestsHonoursRetryAfter) {
  FixtureProcess fx(pki_dir());
  fx.apply("services", service_json("a", "x", "10.96.0.1", 80));
  fx.fault(R"("status":{"code":429,"retry_after":1,"count":1,"on":"list"})");
  Harness h(fixture_config(fx));
  Reflector& r = h.add(fast(services_options()));
  const auto start = std::chrono::steady_clock::now();
  h.start();
  ASSERT_TRUE(h.wait_for([&] { return h.store().has_synced(Resource::Services); }));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1000));
  EXPECT_TRUE(h.log_contains("429 Too Many Requests"));
  // What the /debug page shows: the failure, and the list's resourceVersion.
  EXPECT_EQ(r.stats().failures, 1u);
  EXPECT_NE(r.stats().last_error().find("429"), std::string::npos) << r.stats().last_error();
  EXPECT_FALSE(r.stats().resource_version().empty());
}

TEST(Reflector, ServerErrorsCutStreamsAndStallsAreSurvived) {
  FixtureProcess fx(pki_dir());
  Harness h(fixture_config(fx));
  ReflectorOptions options = fast(services_options());
  options.watch_idle_timeout = std::chrono::milliseconds(800);
  h.add(options);
  fx.fault(R"("status":{"code":500,"count":2,"on":"any"},"split":true)");
  h.start();
  ASSERT_TRUE(h.wait_for([&] { return h.store().has_synced(Resource::Services); }));
  fx.fault(R"("cut_watch":1)");
  fx.apply("services", service_json("a", "one", "10.96.0.1", 80));
  fx.apply("services", service_json("a", "two", "10.96.0.2", 80));
  ASSERT_TRUE(h.wait_for([&] { return h.store().size(Resource::Services) == 2; }));
  fx.fault(R"("stall":5,"close_watches":true)");
  fx.apply("services", service_json("a", "three", "10.96.0.3", 80));
  ASSERT_TRUE(h.wait_for([&] { return h.store().size(Resource::Services) == 3; }));
  EXPECT_TRUE(h.log_contains("500"));
  EXPECT_TRUE(h.log_contains("middle of an event") || h.log_contains("(body)")) << ::testing::PrintToString(h.logs());
  // "three" may arrive on the old watch before it is closed; the stalled
  // re-watch then times out afterwards: wait for that, do not race it.
  EXPECT_TRUE(h.wait_for_log("timed out")) << ::testing::PrintToString(h.logs());
}

TEST(Reflector, BadObjectsAreLoggedOnceAndSkipped) {
  FixtureProcess fx(pki_dir());
  fx.apply("services", service_json("a", "bad", "10.96.0.1", 0));  // port 0
  fx.apply("services", service_json("a", "good", "10.96.0.2", 80));
  Harness h(fixture_config(fx));
  h.add(fast(services_options()));
  h.start();
  ASSERT_TRUE(h.wait_for([&] { return h.store().has_synced(Resource::Services); }));
  EXPECT_EQ(h.store().size(Resource::Services), 1u);
  fx.apply("services", service_json("a", "good", "10.96.0.2", 0));  // becomes bad: gone
  ASSERT_TRUE(h.wait_for([&] { return h.store().size(Resource::Services) == 0; }));
  int bad_logs = 0;
  for (const auto& line : h.logs()) {
    if (line.find("skipped Service a/bad: spec.ports[0].port: 0 is out of range 1..65535") != std::string::npos) ++bad_logs;
  }
  EXPECT_EQ(bad_logs, 1);
}

TEST(Reflector, WatchListStreamsTheInitialState) {
  FixtureProcess fx(pki_dir());
  fx.apply("services", service_json("a", "one", "10.96.0.1", 80));
  Harness h(fixture_config(fx));
  ReflectorOptions options = fast(services_options());
  options.watch_list = true;
  h.add(options);
  h.start();
  ASSERT_TRUE(h.wait_for([&] { return h.store().has_synced(Resource::Services); }));
  EXPECT_EQ(h.store().size(Resource::Services), 1u);
  const std::string requests = fx.command(R"({"op":"requests"})");
  EXPECT_NE(requests.find(R"("sendInitialEvents":"true","resourceVersionMatch":"NotOlderThan")"), std::string::npos);
  EXPECT_EQ(requests.find(R"("limit")"), std::string::npos);  // no LIST at all
}

TEST(Reflector, WatchListFallsBackToListOnError) {
  FixtureProcess fx(pki_dir());
  fx.apply("services", service_json("a", "one", "10.96.0.1", 80));
  fx.fault(R"("status":{"code":500,"count":1,"on":"watch"})");
  Harness h(fixture_config(fx));
  ReflectorOptions options = fast(services_options());
  options.watch_list = true;
  h.add(options);
  h.start();
  ASSERT_TRUE(h.wait_for([&] { return h.store().has_synced(Resource::Services); }));
  EXPECT_TRUE(h.log_contains("falling back to LIST")) << ::testing::PrintToString(h.logs());
  const std::string requests = fx.command(R"({"op":"requests"})");
  EXPECT_NE(requests.find(R"("limit":"500")"), std::string::npos);
  fx.apply("services", service_json("a", "two", "10.96.0.2", 80));
  ASSERT_TRUE(h.wait_for([&] { return h.store().size(Resource::Services) == 2; }));
}

}  // namespace
}  // namespace svcproxy::watch
