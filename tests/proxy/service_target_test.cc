// Service targets of `loadtest`: the address each --via picks, the errors
// that name the target, and the expected endpoint set read from the compiled
// rules (the reasons for the endpoints left out).
#include "proxy/service_target.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "dataplane/compile.h"
#include "watch/manifests.h"

namespace svcproxy::proxy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

// web: 3 endpoints (p3 unready, p4 on another node), NodePort, LB, external IP.
constexpr const char* kCluster = R"(
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: LoadBalancer
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10, "fd00:10:96::10"]
  ipFamilies: [IPv4, IPv6]
  externalIPs: [192.0.2.7]
  externalTrafficPolicy: Local
  ports:
  - {name: http, port: 80, targetPort: 8080, nodePort: 30080, protocol: TCP}
  - {name: dns, port: 53, targetPort: 53, protocol: UDP}
  - {name: admin, port: 9090, targetPort: 9090, protocol: TCP}
status:
  loadBalancer:
    ingress: [{ip: 192.0.2.9}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-a
  namespace: shop
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports: [{name: http, port: 8080, protocol: TCP}, {name: dns, port: 53, protocol: UDP}]
endpoints:
- {addresses: [10.244.1.2], nodeName: node-a, conditions: {ready: true}}
- {addresses: [10.244.2.2], nodeName: node-a, conditions: {ready: true}}
- {addresses: [10.244.3.2], nodeName: node-a, conditions: {ready: false}}
- {addresses: [10.244.4.2], nodeName: node-b, conditions: {ready: true}}
)";

struct Fixture {
  model::ClusterState cluster;
  model::NodeConfig node;
  std::vector<model::ServicePortState> ports;
  dataplane::ir::Ruleset ruleset;
  dataplane::TraceEnvironment env;
};

Fixture build(const char* yaml = kCluster) {
  watch::DecodeResult decoded;
  watch::decode_manifests(yaml, "test.yaml", decoded, watch::ManifestFormat::Yaml);
  EXPECT_TRUE(decoded.diagnostics.empty()) << decoded.diagnostics.front().str();
  Fixture f;
  f.cluster = decoded.state;
  f.node.node_name = "node-a";
  f.node.node_ips = {*model::IPAddress::parse("203.0.113.1")};
  f.node.nodeport_ips = f.node.node_ips;
  f.node.cluster_cidrs = {*model::CIDR::parse("10.244.0.0/16")};
  f.ports = model::build_proxy_state(f.cluster, f.node).ports;
  f.ruleset = dataplane::compile(f.ports, f.node).ruleset;
  f.env.local_addresses = f.node.node_ips;
  return f;
}

ServiceAddress resolve(const Fixture& f, const std::string& text, Via via,
                       model::Protocol protocol = model::Protocol::TCP,
                       std::optional<model::IPFamily> family = std::nullopt) {
  return resolve_service(*parse_service_target(text), via, protocol, family, f.cluster, f.ports, f.node);
}

std::string resolve_error(const Fixture& f, const std::string& text, Via via) {
  try {
    resolve(f, text, via);
  } catch (const TargetError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ServiceTarget, ParsesNamespaceServiceAndPort) {
  auto t = parse_service_target("shop/web:http");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->service.str(), "shop/web");
  EXPECT_EQ(t->port, "http");
  EXPECT_EQ(parse_service_target("shop/web")->port, "");
  EXPECT_FALSE(parse_service_target("10.0.0.1:80"));
  EXPECT_FALSE(parse_service_target("[fd00::1]:80"));
  EXPECT_FALSE(parse_service_target("shop/web:"));
  EXPECT_FALSE(parse_service_target("a/b/c"));
  EXPECT_FALSE(parse_service_target("Shop/web"));
}

TEST(ServiceTarget, EachViaPicksItsAddress) {
  const auto f = build();
  EXPECT_EQ(resolve(f, "shop/web:http", Via::Cluster).str(), "10.96.0.10:80");
  EXPECT_EQ(resolve(f, "shop/web:80", Via::NodePort).str(), "203.0.113.1:30080");
  EXPECT_EQ(resolve(f, "shop/web:http", Via::LoadBalancer).str(), "192.0.2.9:80");
  EXPECT_EQ(resolve(f, "shop/web:http", Via::External).str(), "192.0.2.7:80");
  EXPECT_EQ(resolve(f, "shop/web:http", Via::Cluster, model::Protocol::TCP, model::IPFamily::V6).str(),
            "[fd00:10:96::10]:80");
  EXPECT_EQ(resolve(f, "shop/web:53", Via::Cluster, model::Protocol::UDP).str(), "10.96.0.10:53");
  // No port named: the only one of the protocol the load test speaks.
  EXPECT_EQ(resolve(f, "shop/web", Via::Cluster, model::Protocol::UDP).str(), "10.96.0.10:53");
}

TEST(ServiceTarget, ErrorsNameTheTarget) {
  const auto f = build();
  EXPECT_THAT(resolve_error(f, "shop/nope", Via::Cluster), HasSubstr("shop/nope: no such service"));
  EXPECT_THAT(resolve_error(f, "shop/web:https", Via::Cluster), HasSubstr("shop/web:https: service has no port https"));
  EXPECT_THAT(resolve_error(f, "shop/web", Via::Cluster), HasSubstr("name one"));
  EXPECT_THAT(resolve_error(f, "shop/web:dns", Via::Cluster), HasSubstr("is UDP"));
  EXPECT_THAT(resolve_error(f, "shop/web:dns", Via::NodePort), HasSubstr("is UDP"));
}

TEST(ServiceTarget, NoAddressForVia) {
  auto f = build();
  f.cluster.services.front().external_ips.clear();
  f.ports = model::build_proxy_state(f.cluster, f.node).ports;
  EXPECT_THAT(resolve_error(f, "shop/web:http", Via::External),
              HasSubstr("shop/web:http: no address for --via external"));
  f.node.node_ips.clear();
  EXPECT_THAT(resolve_error(f, "shop/web:http", Via::NodePort), HasSubstr("--node-ip"));
}

TEST(ServiceTarget, ExpectedSetIsWhatTheRulesDoWithReasonsForTheRest) {
  const auto f = build();
  // From the node itself, ClusterIP: every ready endpoint, local or not.
  const auto cluster = resolve(f, "shop/web:http", Via::Cluster);
  auto e = expected_endpoints(f.ruleset, f.env, cluster, *model::IPAddress::parse("203.0.113.1"), f.cluster, f.node);
  EXPECT_TRUE(e.known);
  EXPECT_THAT(e.serving, ElementsAre("10.244.1.2:8080", "10.244.2.2:8080", "10.244.4.2:8080"));
  EXPECT_THAT(e.excluded, ElementsAre(Pair("10.244.3.2:8080", "unready")));
  // From outside, NodePort under externalTrafficPolicy Local: local ones only.
  const auto nodeport = resolve(f, "shop/web:http", Via::NodePort);
  e = expected_endpoints(f.ruleset, f.env, nodeport, *model::IPAddress::parse("198.51.100.7"), f.cluster, f.node);
  EXPECT_THAT(e.serving, ElementsAre("10.244.1.2:8080", "10.244.2.2:8080"));
  EXPECT_THAT(e.excluded, ElementsAre(Pair("10.244.3.2:8080", "unready"),
                                      Pair("10.244.4.2:8080", "remote under externalTrafficPolicy Local")));
}

TEST(ServiceTarget, OtherZoneIsLeftOut) {
  std::string yaml = kCluster;
  auto hint = [&](const std::string& ip, const std::string& zone) {
    const std::string from = "{addresses: [" + ip + "], nodeName: node-a, conditions: {ready: true}}";
    const auto at = yaml.find(from);
    ASSERT_NE(at, std::string::npos) << ip;
    yaml.replace(at, from.size(), "{addresses: [" + ip + "], nodeName: node-a, zone: " + zone +
                                      ", conditions: {ready: true}, hints: {forZones: [{name: " + zone + "}]}}");
  };
  hint("10.244.1.2", "z1");
  hint("10.244.2.2", "z2");
  const std::string remote = "{addresses: [10.244.4.2], nodeName: node-b, conditions: {ready: true}}";
  yaml.replace(yaml.find(remote), remote.size(),
               "{addresses: [10.244.4.2], nodeName: node-b, conditions: {ready: true}, hints: {forZones: [{name: z1}]}}");
  auto f = build(yaml.c_str());
  f.node.zone = "z1";
  f.ports = model::build_proxy_state(f.cluster, f.node).ports;
  f.ruleset = dataplane::compile(f.ports, f.node).ruleset;
  const auto e = expected_endpoints(f.ruleset, f.env, resolve(f, "shop/web:http", Via::Cluster),
                                    *model::IPAddress::parse("203.0.113.1"), f.cluster, f.node);
  EXPECT_THAT(e.serving, ElementsAre("10.244.1.2:8080", "10.244.4.2:8080"));
  EXPECT_THAT(e.excluded, ElementsAre(Pair("10.244.2.2:8080", "other zone"), Pair("10.244.3.2:8080", "unready")));
}

TEST(ServiceTarget, MergedSourcesServeTheUnion) {
  loadtest::ExpectedEndpoints a{.known = true, .serving = {"1.1.1.1:80"}, .excluded = {{"2.2.2.2:80", "x"}}};
  loadtest::ExpectedEndpoints b{.known = true, .serving = {"2.2.2.2:80"}, .excluded = {{"1.1.1.1:80", "x"},
                                                                                       {"3.3.3.3:80", "unready"}}};
  bool differ = false;
  const auto m = merge_expected({a, b}, &differ);
  EXPECT_TRUE(differ);
  EXPECT_THAT(m.serving, ElementsAre("1.1.1.1:80", "2.2.2.2:80"));
  EXPECT_THAT(m.excluded, ElementsAre(Pair("3.3.3.3:80", "unready")));
  merge_expected({a, a}, &differ);
  EXPECT_FALSE(differ);
}

}  // namespace
}  // namespace svcproxy::proxy
