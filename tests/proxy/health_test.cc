#include "proxy/health.h"

#include <gtest/gtest.h>

namespace svcproxy::proxy {
namespace {

using namespace std::chrono_literals;

// 2025-11-28T12:00:00Z on the wall clock; the monotonic clock anywhere.
Instant t0() {
  return {std::chrono::steady_clock::time_point(1000h),
          std::chrono::system_clock::time_point(std::chrono::seconds(1764331200))};
}

TEST(Rfc3339, FormatsAsGoRfc3339Nano) {
  const auto noon = t0().wall;
  EXPECT_EQ(format_rfc3339(noon), "2025-11-28T12:00:00Z");
  EXPECT_EQ(format_rfc3339(noon + 500ms), "2025-11-28T12:00:00.5Z");
  EXPECT_EQ(format_rfc3339(noon + 123456us), "2025-11-28T12:00:00.123456Z");
  EXPECT_EQ(format_rfc3339(std::chrono::system_clock::time_point{}), "1970-01-01T00:00:00Z");
}

TEST(ProxyHealth, HealthyWhileStartingUp) {
  ProxyHealth h(30s);
  EXPECT_EQ(h.timeout(), 60s);
  EXPECT_TRUE(h.healthy(t0()));
  EXPECT_EQ(h.healthz(t0()).status, 200);
  EXPECT_EQ(h.livez(t0()).status, 200);
}

TEST(ProxyHealth, QueuedButNotAppliedWithinTwoSyncPeriodsIsUnhealthy) {
  ProxyHealth h(30s);
  h.updated(t0());
  h.queued(t0() + 1s);
  EXPECT_TRUE(h.healthy(t0() + 60s));  // 59 s pending: not late yet
  // Later changes do not move the oldest pending one.
  h.queued(t0() + 50s);
  EXPECT_FALSE(h.healthy(t0() + 61s));  // 60 s pending
  const auto hz = h.healthz(t0() + 61s);
  EXPECT_EQ(hz.status, 503);
  EXPECT_EQ(hz.body,
            "{\"lastUpdated\":\"2025-11-28T12:00:00Z\",\"currentTime\":\"2025-11-28T12:01:01Z\","
            "\"healthy\":false,\"nodeEligible\":true}");
  const auto lz = h.livez(t0() + 61s);
  EXPECT_EQ(lz.status, 503);
  EXPECT_EQ(lz.body,
            "{\"lastUpdated\":\"2025-11-28T12:00:00Z\",\"currentTime\":\"2025-11-28T12:01:01Z\",\"healthy\":false}");

  // The sync lands: healthy again, and lastUpdated reads "now" (kube-proxy's
  // compatibility behaviour).
  h.updated(t0() + 62s);
  EXPECT_TRUE(h.healthy(t0() + 63s));
  const auto ok = h.healthz(t0() + 63s);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body,
            "{\"lastUpdated\":\"2025-11-28T12:01:03Z\",\"currentTime\":\"2025-11-28T12:01:03Z\","
            "\"healthy\":true,\"nodeEligible\":true}");
  // A new change starts a new clock.
  h.queued(t0() + 100s);
  EXPECT_TRUE(h.healthy(t0() + 159s));
  EXPECT_FALSE(h.healthy(t0() + 160s));
}

TEST(ProxyHealth, NeverUpdatedReportsGoZeroTime) {
  ProxyHealth h(1s);
  h.queued(t0());
  const auto a = h.livez(t0() + 5s);
  EXPECT_EQ(a.status, 503);
  EXPECT_NE(a.body.find("\"lastUpdated\":\"0001-01-01T00:00:00Z\""), std::string::npos) << a.body;
}

TEST(ProxyHealth, DecidesOnTheMonotonicClock) {
  ProxyHealth h(30s);
  h.queued(t0());
  // The wall clock steps forward an hour; the monotonic one moved 1 s.
  Instant later = t0() + 1s;
  later.wall += 1h;
  EXPECT_TRUE(h.healthy(later));
}

TEST(ProxyHealth, NodeBeingDeletedFailsHealthzButNotLivez) {
  ProxyHealth h(30s);
  h.updated(t0());
  model::Node node;
  node.name = "n1";
  node.being_deleted = true;
  h.set_node(node);
  EXPECT_FALSE(h.node_is_eligible());
  EXPECT_TRUE(h.healthy(t0() + 1s));
  const auto hz = h.healthz(t0() + 1s);
  EXPECT_EQ(hz.status, 503);
  EXPECT_NE(hz.body.find("\"nodeEligible\":false"), std::string::npos);
  EXPECT_EQ(h.livez(t0() + 1s).status, 200);

  node.being_deleted = false;
  h.set_node(node);
  EXPECT_EQ(h.healthz(t0() + 2s).status, 200);
}

// A source that cannot be read completely: the kernel keeps a possibly
// stale state, /healthz says so (with the reason), /livez does not (a restart
// would not help), and the health-check node ports keep answering.
TEST(ProxyHealth, SourceProblemFailsHealthzWithItsReasonButNotLivez) {
  ProxyHealth h(30s);
  h.updated(t0());
  h.set_source_problem("/etc/m: cannot read: No such file or directory; keeping \"it\"");
  const auto hz = h.healthz(t0() + 1s);
  EXPECT_EQ(hz.status, 503);
  EXPECT_EQ(hz.body,
            "{\"lastUpdated\":\"2025-11-28T12:00:00Z\",\"currentTime\":\"2025-11-28T12:00:01Z\","
            "\"healthy\":false,\"nodeEligible\":true,"
            "\"reason\":\"/etc/m: cannot read: No such file or directory; keeping \\\"it\\\"\"}");
  EXPECT_TRUE(h.healthy(t0() + 1s));
  EXPECT_EQ(h.livez(t0() + 1s).status, 200);

  h.set_source_problem("");
  const auto ok = h.healthz(t0() + 2s);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body.find("reason"), std::string::npos) << ok.body;
}

TEST(ProxyHealth, AutoscalerTaintFailsHealthz) {
  ProxyHealth h(30s);
  model::Node node;
  node.taints.push_back({"node.kubernetes.io/unschedulable", "NoSchedule"});
  EXPECT_TRUE(node_eligible(node));
  node.taints.push_back({"ToBeDeletedByClusterAutoscaler", "NoSchedule"});
  EXPECT_FALSE(node_eligible(node));
  h.set_node(node);
  EXPECT_EQ(h.healthz(t0()).status, 503);
  EXPECT_EQ(h.livez(t0()).status, 200);
}

model::ServicePortState hc_port(const std::string& ns, const std::string& name, const std::string& port_name,
                                model::IPFamily family, uint16_t hc, std::vector<model::EndpointAddress> local,
                                size_t ready) {
  model::ServicePortState p;
  p.name.service = {ns, name};
  p.name.port_name = port_name;
  p.name.family = family;
  p.health_check_node_port = hc;
  p.local_endpoints = std::move(local);
  p.local_ready_count = ready;
  return p;
}

TEST(HealthCheckServices, CountDistinctReadyLocalIPsPerService) {
  const auto a = model::IPAddress::v4(10, 0, 1, 1);
  const auto b = model::IPAddress::v4(10, 0, 1, 2);
  const auto a6 = *model::IPAddress::parse("fd00::1");
  const std::vector<model::ServicePortState> ports = {
      // web: one pod serving 80 and 443 and another serving 80: 2 endpoints.
      hc_port("default", "web", "http", model::IPFamily::V4, 30001, {{a, 80}, {b, 80}}, 2),
      hc_port("default", "web", "https", model::IPFamily::V4, 30001, {{a, 443}}, 1),
      hc_port("default", "web", "http", model::IPFamily::V6, 30001, {{a6, 80}}, 1),
      // draining: only serving-terminating local endpoints: 0.
      hc_port("default", "draining", "", model::IPFamily::V4, 30002, {{a, 8080}}, 0),
      // no health check port: not served.
      hc_port("default", "plain", "", model::IPFamily::V4, 0, {{a, 80}}, 1),
  };
  const auto services = health_check_services(ports);
  ASSERT_EQ(services.size(), 2u);
  EXPECT_EQ(services.at(30001), (HealthCheckService{"default", "web", 2}));
  EXPECT_EQ(services.at(30002), (HealthCheckService{"default", "draining", 0}));
}

TEST(HealthCheckServices, AnswersAsKubeProxy) {
  const HealthCheckService web{"default", "web", 2};
  const auto ok = service_health(web, true);
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n"
            "\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}");
  EXPECT_EQ(service_health(web, false).status, 503);
  EXPECT_EQ(service_health({"default", "web", 0}, true).status, 503);
}

}  // namespace
}  // namespace svcproxy::proxy
