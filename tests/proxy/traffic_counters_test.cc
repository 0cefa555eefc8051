// The join of the counters' values with the service ports (what /metrics and
// /debug show), and the metric families made of it. The kernel side is
// proven by tests/e2e/test_counters.py with real packets.
#include <gtest/gtest.h>

#include "dataplane/compile.h"
#include "proxy/nftables_traffic_counters.h"
#include "proxy/service_counters_collector.h"
#include "tests/support/ip.h"

namespace svcproxy::proxy {
namespace {

using test_support::ip;

model::ServicePortState port(model::IPFamily family, const char* cluster_ip, std::vector<model::EndpointAddress> eps) {
  model::ServicePortState sp;
  sp.name = {{"ns", "web"}, "http", model::Protocol::TCP, family};
  sp.cluster_ip = ip(cluster_ip);
  sp.port = 80;
  sp.cluster_endpoints = std::move(eps);
  return sp;
}

TEST(TrafficCounters, JoinsValuesWithPortsAcrossFamilies) {
  const auto v4 = port(model::IPFamily::V4, "10.96.0.1", {{ip("10.244.0.2"), 8080}, {ip("10.244.0.3"), 8080}});
  const auto v6 = port(model::IPFamily::V6, "fd00::1", {{ip("fd00:244::2"), 8080}});
  std::map<model::ObjectRef, NftablesTrafficCounters::Ports> services;
  services[{"ns", "web"}] =
      std::make_shared<const std::vector<model::ServicePortState>>(std::vector<model::ServicePortState>{v4, v6});
  const auto n4 = dataplane::port_counter_names(v4.name);
  const auto n6 = dataplane::port_counter_names(v6.name);
  using V = dataplane::CounterValue;
  const std::vector<V> values{
      {model::IPFamily::V4, n4.service, 10, 1000},
      {model::IPFamily::V4, n4.rejected, 2, 100},
      {model::IPFamily::V4, n4.dropped, 1, 60},
      {model::IPFamily::V6, n6.service, 5, 500},
      {model::IPFamily::V4, dataplane::endpoint_counter_name({ip("10.244.0.2"), 8080}, model::Protocol::TCP), 4, 0},
      {model::IPFamily::V6, dataplane::endpoint_counter_name({ip("fd00:244::2"), 8080}, model::Protocol::TCP), 5, 0},
  };
  const TrafficSnapshot snap = join_counters(services, values);
  ASSERT_EQ(snap.ports.size(), 1u);
  const auto& p = snap.ports[0];
  EXPECT_EQ(p.ns, "ns");
  EXPECT_EQ(p.service, "web");
  EXPECT_EQ(p.port, "http");
  EXPECT_EQ(p.protocol, "TCP");
  EXPECT_EQ(p.accepted.packets, 7u + 5u);  // 10 - 2 - 1, plus v6's 5
  EXPECT_EQ(p.accepted.bytes, 840u + 500u);
  EXPECT_EQ(p.rejected.packets, 2u);
  EXPECT_EQ(p.dropped.packets, 1u);
  ASSERT_EQ(p.endpoints.size(), 3u);
  EXPECT_EQ(p.endpoints[0].endpoint, "10.244.0.2:8080");
  EXPECT_EQ(p.endpoints[0].count.packets, 4u);
  EXPECT_EQ(p.endpoints[1].endpoint, "10.244.0.3:8080");
  EXPECT_EQ(p.endpoints[1].count.packets, 0u);  // no counter read: 0
  EXPECT_EQ(p.endpoints[2].endpoint, "[fd00:244::2]:8080");
  EXPECT_EQ(p.endpoints[2].count.packets, 5u);

  const auto families = counter_families(snap);
  ASSERT_EQ(families.size(), 5u);
  EXPECT_EQ(families[0].name, "svcproxy_service_packets_total");
  ASSERT_EQ(families[0].metric.size(), 1u);
  EXPECT_EQ(families[0].metric[0].counter.value, 15.0);  // everything to the port
  EXPECT_EQ(families[2].name, "svcproxy_service_rejected_packets_total");
  EXPECT_EQ(families[2].metric[0].counter.value, 2.0);
  EXPECT_EQ(families[4].name, "svcproxy_endpoint_packets_total");
  EXPECT_EQ(families[4].metric.size(), 3u);
}

TEST(TrafficCounters, AFailedReadIsAnErrorAndTheCollectorExportsNothing) {
  auto counters = std::make_shared<NftablesTrafficCounters>(
      []() -> std::vector<dataplane::CounterValue> { throw std::runtime_error("netlink: no"); });
  auto r = counters->read();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().find("netlink: no"), std::string::npos);
  ServiceCountersCollector collector;
  EXPECT_TRUE(collector.Collect().empty());  // no source yet
  collector.set_source(counters);
  EXPECT_TRUE(collector.Collect().empty());
}

}  // namespace
}  // namespace svcproxy::proxy
