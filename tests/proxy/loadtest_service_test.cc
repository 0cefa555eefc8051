// loadtest --watch's follower against a real manifests directory (inotify):
// an endpoint turning unready is handed on as removed, with the new set.
#include "proxy/loadtest_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>

namespace svcproxy::proxy {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

std::string manifests(bool p3_ready) {
  return std::string(R"(
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  ports: [{name: http, port: 80, targetPort: 8080, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-a, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}]
endpoints:
- {addresses: [10.244.1.2], nodeName: node-a, conditions: {ready: true}}
- {addresses: [10.244.3.2], nodeName: node-a, conditions: {ready: )") +
         (p3_ready ? "true" : "false") + "}}\n";
}

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/svcproxy-follower-XXXXXX";
    path_ = mkdtemp(pattern);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  // Written beside and renamed in: one event, never half a file.
  void put(const std::string& name, const std::string& text) const {
    const std::string tmp = path_ + ".tmp-" + name;
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, path_ + "/" + name);
  }

 private:
  std::string path_;
};

TEST(ServiceFollower, AnEndpointTurningUnreadyIsHandedOn) {
  TempDir dir;
  dir.put("web.yaml", manifests(true));
  SourceFlags source;
  source.manifests = dir.path();
  ExpectationInputs inputs;
  inputs.target = *parse_service_target("shop/web:http");
  inputs.node_flags.hostname_override = "node-a";
  inputs.node_flags.node_ips = {"203.0.113.1"};
  inputs.sources = {*model::IPAddress::parse("203.0.113.1")};  // no route lookup

  ServiceFollower follower(source, inputs.node_flags, [](const std::string&) {});
  const auto initial = compute_expectation(follower.snapshot(), inputs);
  EXPECT_EQ(initial.address.str(), "10.96.0.10:80");
  EXPECT_THAT(initial.expected.serving, ElementsAre("10.244.1.2:8080", "10.244.3.2:8080"));

  std::mutex mutex;
  std::condition_variable changed;
  std::vector<ExpectationChange> seen;
  follower.start(inputs, initial.expected, [&](const ExpectationChange& c) {
    std::lock_guard lock(mutex);
    seen.push_back(c);
    changed.notify_all();
  });
  dir.put("web.yaml", manifests(false));
  std::unique_lock lock(mutex);
  ASSERT_TRUE(changed.wait_for(lock, std::chrono::seconds(10), [&] { return !seen.empty(); }));
  EXPECT_THAT(seen.front().removed, ElementsAre("10.244.3.2:8080"));
  EXPECT_TRUE(seen.front().added.empty());
  EXPECT_THAT(seen.front().expected.serving, ElementsAre("10.244.1.2:8080"));
  EXPECT_THAT(seen.front().expected.excluded, ElementsAre(Pair("10.244.3.2:8080", "unready")));
  lock.unlock();
  follower.stop();
}

}  // namespace
}  // namespace svcproxy::proxy
