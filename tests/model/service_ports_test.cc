#include "model/service_ports.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "tests/model/printers.h"
#include "tests/support/ip.h"

namespace svcproxy::model {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// ---------------------------------------------------------------------------
// Builders: a test states only what it is about.

using test_support::ip;

using test_support::cidr;

ServicePort port(std::string name, uint16_t number, Protocol protocol = Protocol::TCP, uint16_t node_port = 0) {
  ServicePort p;
  p.name = std::move(name);
  p.protocol = protocol;
  p.port = number;
  p.target_port.number = number;
  p.node_port = node_port;
  return p;
}

Service service(std::string ns, std::string name, std::vector<std::string_view> cluster_ips = {"10.96.0.1"},
                std::vector<ServicePort> ports = {port("http", 80)}) {
  Service s;
  s.ref = {std::move(ns), std::move(name)};
  for (auto text : cluster_ips) s.cluster_ips.push_back(ip(text));
  s.ports = std::move(ports);
  return s;
}

EndpointPort slice_port(std::string name, std::optional<uint16_t> number, Protocol protocol = Protocol::TCP) {
  return {std::move(name), protocol, number};
}

struct Conditions {
  bool ready = true;
  bool serving = true;
  bool terminating = false;
};
constexpr Conditions kReady{};
constexpr Conditions kNotReady{false, false, false};
constexpr Conditions kServingTerminating{false, true, true};
constexpr Conditions kTerminatingNotServing{false, false, true};

Endpoint endpoint(std::string_view address, std::string node = "", Conditions c = kReady) {
  Endpoint e;
  e.address = ip(address);
  e.node_name = std::move(node);
  e.conditions = {c.ready, c.serving, c.terminating};
  return e;
}

Endpoint hinted(Endpoint e, std::vector<std::string> zones, std::vector<std::string> nodes = {}) {
  e.hint_zones = std::move(zones);
  e.hint_nodes = std::move(nodes);
  return e;
}

EndpointSlice slice(std::string ns, std::string name, std::string service_name, std::vector<Endpoint> endpoints,
                    std::vector<EndpointPort> ports = {slice_port("http", 8080)},
                    AddressType type = AddressType::IPv4) {
  EndpointSlice s;
  s.ref = {std::move(ns), std::move(name)};
  s.service_name = std::move(service_name);
  s.address_type = type;
  s.endpoints = std::move(endpoints);
  s.ports = std::move(ports);
  return s;
}

NodeConfig this_node(std::string name = "node-a", std::string zone = "zone-a") {
  NodeConfig node;
  node.node_name = std::move(name);
  node.zone = std::move(zone);
  return node;
}

std::vector<std::string> strs(const std::vector<EndpointAddress>& endpoints) {
  std::vector<std::string> out;
  for (const auto& e : endpoints) out.push_back(e.str());
  return out;
}

std::vector<std::string> names(const ProxyState& state) {
  std::vector<std::string> out;
  for (const auto& p : state.ports) {
    out.push_back(p.name.str() + (p.name.family == IPFamily::V4 ? " v4" : " v6"));
  }
  return out;
}

std::vector<std::string> reasons(const ProxyState& state) {
  std::vector<std::string> out;
  for (const auto& s : state.skipped) out.push_back(s.object.str() + ": " + s.reason);
  return out;
}

// The one port of a single-port, single-family result (a copy: the state is
// usually a temporary).
ServicePortState only_port(const ProxyState& state) {
  EXPECT_EQ(state.ports.size(), 1u) << ::testing::PrintToString(names(state));
  return state.ports.empty() ? ServicePortState{} : state.ports.front();
}

ProxyState build(std::vector<Service> services, std::vector<EndpointSlice> slices = {},
                 const NodeConfig& node = this_node()) {
  ClusterState cluster;
  cluster.services = std::move(services);
  cluster.endpoint_slices = std::move(slices);
  return build_proxy_state(cluster, node);
}

// ---------------------------------------------------------------------------
// ServicePortName

TEST(ServicePortNameTest, Str) {
  EXPECT_EQ((ServicePortName{{"ns", "web"}, "http", Protocol::TCP, IPFamily::V4}).str(), "ns/web/tcp/http");
  EXPECT_EQ((ServicePortName{{"ns", "dns"}, "dns", Protocol::UDP, IPFamily::V6}).str(), "ns/dns/udp/dns");
  EXPECT_EQ((ServicePortName{{"ns", "x"}, "", Protocol::SCTP, IPFamily::V4}).str(), "ns/x/sctp");
}

// ---------------------------------------------------------------------------
// Which services are proxied

TEST(BuildProxyStateTest, EmptyCluster) {
  const ProxyState state = build({});
  EXPECT_THAT(state.ports, IsEmpty());
  EXPECT_THAT(state.skipped, IsEmpty());
}

TEST(BuildProxyStateTest, ClusterIPServiceProducesOnePortState) {
  const ServicePortState p = only_port(build({service("ns", "web")}));
  EXPECT_EQ(p.name.str(), "ns/web/tcp/http");
  EXPECT_EQ(p.name.service, (ObjectRef{"ns", "web"}));
  EXPECT_EQ(p.name.family, IPFamily::V4);
  EXPECT_EQ(p.port, 80);
  EXPECT_EQ(p.cluster_ip, ip("10.96.0.1"));
  EXPECT_EQ(p.node_port, 0);
  EXPECT_FALSE(p.has_external_addresses());
  EXPECT_THAT(p.cluster_endpoints, IsEmpty());
  EXPECT_THAT(p.local_endpoints, IsEmpty());
}

TEST(BuildProxyStateTest, HeadlessServiceIsSkippedSilently) {
  Service s = service("ns", "headless");
  s.headless = true;
  const ProxyState state = build({s}, {slice("ns", "headless-1", "headless", {endpoint("10.0.0.1")})});
  EXPECT_THAT(state.ports, IsEmpty());
  EXPECT_THAT(state.skipped, IsEmpty());
}

TEST(BuildProxyStateTest, ServiceWithoutClusterIPIsSkippedSilently) {
  const ProxyState state = build({service("ns", "none", {})});
  EXPECT_THAT(state.ports, IsEmpty());
  EXPECT_THAT(state.skipped, IsEmpty());
}

TEST(BuildProxyStateTest, ExternalNameServiceIsSkippedSilently) {
  Service s = service("ns", "ext");
  s.type = ServiceType::ExternalName;
  const ProxyState state = build({s});
  EXPECT_THAT(state.ports, IsEmpty());
  EXPECT_THAT(state.skipped, IsEmpty());
}

TEST(BuildProxyStateTest, ServiceOfAnotherProxyIsSkippedSilently) {
  Service s = service("ns", "other");
  s.has_service_proxy_name = true;
  const ProxyState state = build({s});
  EXPECT_THAT(state.ports, IsEmpty());
  EXPECT_THAT(state.skipped, IsEmpty());
}

TEST(BuildProxyStateTest, ServiceWithoutPortsProducesNothing) {
  const ProxyState state = build({service("ns", "noports", {"10.96.0.1"}, {})});
  EXPECT_THAT(state.ports, IsEmpty());
  EXPECT_THAT(state.skipped, IsEmpty());
}

// ---------------------------------------------------------------------------
// Ports and families

TEST(BuildProxyStateTest, OneStatePerServicePort) {
  const ProxyState state = build({service("ns", "web", {"10.96.0.1"},
                                          {port("http", 80), port("https", 443), port("dns", 53, Protocol::UDP),
                                           port("dns", 53, Protocol::TCP), port("assoc", 9, Protocol::SCTP)})});
  // Sorted by ServicePortName: port name, then protocol (by its IP number).
  EXPECT_THAT(names(state), ElementsAre("ns/web/sctp/assoc v4", "ns/web/tcp/dns v4", "ns/web/udp/dns v4",
                                        "ns/web/tcp/http v4", "ns/web/tcp/https v4"));
}

TEST(BuildProxyStateTest, UnnamedPort) {
  const ServicePortState p = only_port(build({service("ns", "web", {"10.96.0.1"}, {port("", 80)})}));
  EXPECT_EQ(p.name.str(), "ns/web/tcp");
  EXPECT_EQ(p.name.port_name, "");
}

TEST(BuildProxyStateTest, DualStackProducesOneStatePerFamily) {
  const ProxyState state =
      build({service("ns", "web", {"fd00:96::1", "10.96.0.1"}, {port("http", 80), port("https", 443)})});
  EXPECT_THAT(names(state),
              ElementsAre("ns/web/tcp/http v4", "ns/web/tcp/http v6", "ns/web/tcp/https v4", "ns/web/tcp/https v6"));
  EXPECT_EQ(state.ports[0].cluster_ip, ip("10.96.0.1"));
  EXPECT_EQ(state.ports[1].cluster_ip, ip("fd00:96::1"));
  EXPECT_EQ(state.ports[1].port, 80);
  EXPECT_THAT(state.skipped, IsEmpty());
}

TEST(BuildProxyStateTest, SingleStackIPv6) {
  const ServicePortState p = only_port(build({service("ns", "web", {"fd00:96::1"})}));
  EXPECT_EQ(p.name.family, IPFamily::V6);
  EXPECT_EQ(p.cluster_ip, ip("fd00:96::1"));
}

TEST(BuildProxyStateTest, SecondClusterIPOfSameFamilyIsIgnoredAndReported) {
  const ProxyState state = build({service("ns", "web", {"10.96.0.1", "10.96.0.2"})});
  EXPECT_EQ(only_port(state).cluster_ip, ip("10.96.0.1"));
  EXPECT_THAT(reasons(state), ElementsAre("ns/web: clusterIPs: ignoring 10.96.0.2, a second IPv4 address"));
}

TEST(BuildProxyStateTest, PortZeroIsSkippedAndReported) {
  const ProxyState state = build({service("ns", "web", {"10.96.0.1"}, {port("bad", 0), port("http", 80)})});
  EXPECT_EQ(only_port(state).name.port_name, "http");
  EXPECT_THAT(reasons(state), ElementsAre("ns/web: port bad/TCP: port number 0"));
}

TEST(BuildProxyStateTest, DuplicatePortNameAndProtocolKeepsTheLastLikeKubeProxy) {
  const ProxyState state = build({service("ns", "web", {"10.96.0.1"}, {port("http", 80), port("http", 8000)})});
  EXPECT_EQ(only_port(state).port, 8000);
  EXPECT_THAT(reasons(state), ElementsAre("ns/web: port http/TCP: duplicate name and protocol; using the last"));
}

// ---------------------------------------------------------------------------
// Per-port attributes

TEST(BuildProxyStateTest, ExternalAndLoadBalancerAddressesFilteredByFamilySortedDeduped) {
  Service s = service("ns", "web", {"10.96.0.1", "fd00:96::1"});
  s.type = ServiceType::LoadBalancer;
  s.external_ips = {ip("192.0.2.9"), ip("2001:db8::2"), ip("192.0.2.1"), ip("192.0.2.9"), ip("2001:db8::1")};
  s.load_balancer_ips = {ip("198.51.100.2"), ip("2001:db8:1::1"), ip("198.51.100.1"), ip("198.51.100.2")};
  s.load_balancer_source_ranges = {cidr("10.0.0.0/8"), cidr("fd00::/8"), cidr("1.2.3.0/24"), cidr("10.0.0.0/8"),
                                   cidr("10.0.0.0/16")};
  const ProxyState state = build({s});
  ASSERT_EQ(state.ports.size(), 2u);
  const ServicePortState& v4 = state.ports[0];
  const ServicePortState& v6 = state.ports[1];
  EXPECT_THAT(v4.external_ips, ElementsAre(ip("192.0.2.1"), ip("192.0.2.9")));
  EXPECT_THAT(v6.external_ips, ElementsAre(ip("2001:db8::1"), ip("2001:db8::2")));
  EXPECT_THAT(v4.load_balancer_ips, ElementsAre(ip("198.51.100.1"), ip("198.51.100.2")));
  EXPECT_THAT(v6.load_balancer_ips, ElementsAre(ip("2001:db8:1::1")));
  EXPECT_THAT(v4.load_balancer_source_ranges,
              ElementsAre(cidr("1.2.3.0/24"), cidr("10.0.0.0/8"), cidr("10.0.0.0/16")));
  EXPECT_THAT(v6.load_balancer_source_ranges, ElementsAre(cidr("fd00::/8")));
  EXPECT_TRUE(v4.has_external_addresses());
}

TEST(BuildProxyStateTest, AffinityTimeoutOnlyWithClientIPAffinity) {
  Service sticky = service("ns", "sticky");
  sticky.session_affinity_client_ip = true;
  sticky.session_affinity_timeout_seconds = 600;
  Service plain = service("ns", "plain");
  plain.session_affinity_timeout_seconds = 600;
  const ProxyState state = build({sticky, plain});
  ASSERT_EQ(state.ports.size(), 2u);
  EXPECT_EQ(state.ports[0].name.service.name, "plain");
  EXPECT_EQ(state.ports[0].affinity_timeout_seconds, std::nullopt);
  EXPECT_EQ(state.ports[1].affinity_timeout_seconds, 600u);
}

TEST(BuildProxyStateTest, DefaultAffinityTimeout) {
  Service s = service("ns", "sticky");
  s.session_affinity_client_ip = true;
  EXPECT_EQ(only_port(build({s})).affinity_timeout_seconds, 10800u);
}

TEST(BuildProxyStateTest, NodePortOnlyForNodePortAndLoadBalancerTypes) {
  auto with_type = [](std::string name, ServiceType type, uint16_t node_port) {
    Service s = service("ns", std::move(name), {"10.96.0.1"}, {port("http", 80, Protocol::TCP, node_port)});
    s.type = type;
    return s;
  };
  const ProxyState state = build({with_type("a-clusterip", ServiceType::ClusterIP, 30001),
                                  with_type("b-nodeport", ServiceType::NodePort, 30002),
                                  with_type("c-lb", ServiceType::LoadBalancer, 30003),
                                  with_type("d-lb-no-nodeport", ServiceType::LoadBalancer, 0)});
  ASSERT_EQ(state.ports.size(), 4u);
  EXPECT_EQ(state.ports[0].node_port, 0);
  EXPECT_FALSE(state.ports[0].has_external_addresses());
  EXPECT_EQ(state.ports[1].node_port, 30002);
  EXPECT_TRUE(state.ports[1].has_external_addresses());
  EXPECT_EQ(state.ports[2].node_port, 30003);
  EXPECT_EQ(state.ports[3].node_port, 0);
}

TEST(BuildProxyStateTest, NodePortIsPerPort) {
  Service s = service("ns", "web", {"10.96.0.1"},
                      {port("http", 80, Protocol::TCP, 30080), port("https", 443, Protocol::TCP, 30443)});
  s.type = ServiceType::NodePort;
  const ProxyState state = build({s});
  ASSERT_EQ(state.ports.size(), 2u);
  EXPECT_EQ(state.ports[0].node_port, 30080);
  EXPECT_EQ(state.ports[1].node_port, 30443);
}

TEST(BuildProxyStateTest, TrafficPoliciesPassThrough) {
  Service s = service("ns", "web");
  s.type = ServiceType::NodePort;
  s.external_traffic_policy = TrafficPolicy::Local;
  s.internal_traffic_policy = TrafficPolicy::Local;
  const ServicePortState p = only_port(build({s}));
  EXPECT_EQ(p.external_traffic_policy, TrafficPolicy::Local);
  EXPECT_EQ(p.internal_traffic_policy, TrafficPolicy::Local);

  Service c = service("ns", "web");
  const ServicePortState q = only_port(build({c}));
  EXPECT_EQ(q.external_traffic_policy, TrafficPolicy::Cluster);
  EXPECT_EQ(q.internal_traffic_policy, TrafficPolicy::Cluster);
}

TEST(BuildProxyStateTest, ExternalPolicyLocalOnlyForExternallyAccessibleServices) {
  // apiservice.ExternalPolicyLocal: a ClusterIP service without externalIPs
  // is never external-Local, whatever the field says.
  Service internal = service("ns", "a-internal");
  internal.external_traffic_policy = TrafficPolicy::Local;
  Service with_external_ip = service("ns", "b-external-ip");
  with_external_ip.external_traffic_policy = TrafficPolicy::Local;
  with_external_ip.external_ips = {ip("192.0.2.1")};
  const ProxyState state = build({internal, with_external_ip});
  ASSERT_EQ(state.ports.size(), 2u);
  EXPECT_EQ(state.ports[0].external_traffic_policy, TrafficPolicy::Cluster);
  EXPECT_EQ(state.ports[1].external_traffic_policy, TrafficPolicy::Local);
}

TEST(BuildProxyStateTest, HealthCheckNodePortForLocalLoadBalancers) {
  auto make = [](std::string name, ServiceType type, TrafficPolicy policy) {
    Service s = service("ns", std::move(name));
    s.type = type;
    s.external_traffic_policy = policy;
    s.health_check_node_port = 32000;
    return s;
  };
  const ProxyState state = build({make("a-lb-local", ServiceType::LoadBalancer, TrafficPolicy::Local),
                                  make("b-lb-cluster", ServiceType::LoadBalancer, TrafficPolicy::Cluster),
                                  make("c-nodeport-local", ServiceType::NodePort, TrafficPolicy::Local)});
  ASSERT_EQ(state.ports.size(), 3u);
  EXPECT_EQ(state.ports[0].health_check_node_port, 32000);
  // kube-proxy (NeedsHealthCheck) ignores a stale value on other services.
  EXPECT_EQ(state.ports[1].health_check_node_port, 0);
  EXPECT_EQ(state.ports[2].health_check_node_port, 0);
}

// ---------------------------------------------------------------------------
// EndpointSlice selection

TEST(EndpointsTest, SliceEndpointsFeedTheMatchingPortWithTheSlicePortNumber) {
  const ServicePortState p = only_port(build({service("ns", "web")},
                                              {slice("ns", "web-1", "web", {endpoint("10.0.0.2"), endpoint("10.0.0.1")})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080", "10.0.0.2:8080"));
}

TEST(EndpointsTest, SlicesAreGroupedByNamespaceAndServiceLabel) {
  const ProxyState state =
      build({service("ns", "web"), service("other", "web")},
            {slice("ns", "web-1", "web", {endpoint("10.0.0.1")}), slice("other", "web-1", "web", {endpoint("10.0.1.1")}),
             slice("ns", "api-1", "api", {endpoint("10.0.2.1")}), slice("ns", "web", "", {endpoint("10.0.3.1")})});
  ASSERT_EQ(state.ports.size(), 2u);
  EXPECT_EQ(state.ports[0].name.service.ns, "ns");
  EXPECT_THAT(strs(state.ports[0].cluster_endpoints), ElementsAre("10.0.0.1:8080"));
  EXPECT_THAT(strs(state.ports[1].cluster_endpoints), ElementsAre("10.0.1.1:8080"));
}

TEST(EndpointsTest, SliceWithoutServiceNameIsIgnored) {
  // Even when named after the service: only the label counts.
  const ServicePortState& p =
      only_port(build({service("ns", "web")}, {slice("ns", "web", "", {endpoint("10.0.0.1")})}));
  EXPECT_THAT(p.cluster_endpoints, IsEmpty());
}

TEST(EndpointsTest, FQDNSlicesAreIgnored) {
  EndpointSlice fqdn = slice("ns", "web-fqdn", "web", {}, {slice_port("http", 8080)}, AddressType::FQDN);
  Endpoint e;  // FQDN endpoints carry no IP address
  fqdn.endpoints.push_back(e);
  const ServicePortState p = only_port(build({service("ns", "web")}, {fqdn}));
  EXPECT_THAT(p.cluster_endpoints, IsEmpty());
}

TEST(EndpointsTest, SliceAddressTypeDecidesTheFamily) {
  const ProxyState state =
      build({service("ns", "web", {"10.96.0.1", "fd00:96::1"})},
            {slice("ns", "web-v4", "web", {endpoint("10.0.0.1")}),
             slice("ns", "web-v6", "web", {endpoint("fd00::1")}, {slice_port("http", 8080)}, AddressType::IPv6)});
  ASSERT_EQ(state.ports.size(), 2u);
  EXPECT_THAT(strs(state.ports[0].cluster_endpoints), ElementsAre("10.0.0.1:8080"));
  EXPECT_THAT(strs(state.ports[1].cluster_endpoints), ElementsAre("[fd00::1]:8080"));
}

TEST(EndpointsTest, SliceOfTheOtherFamilyDoesNotFeedASingleStackService) {
  const ServicePortState p = only_port(
      build({service("ns", "web", {"10.96.0.1"})},
            {slice("ns", "web-v6", "web", {endpoint("fd00::1")}, {slice_port("http", 8080)}, AddressType::IPv6)}));
  EXPECT_THAT(p.cluster_endpoints, IsEmpty());
}

TEST(EndpointsTest, AddressOfTheWrongFamilyForItsSliceIsIgnored) {
  const ServicePortState p = only_port(
      build({service("ns", "web")}, {slice("ns", "web-1", "web", {endpoint("fd00::1"), endpoint("10.0.0.1")})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080"));
}

TEST(EndpointsTest, EndpointWithoutAddressIsIgnored) {
  Endpoint no_address = endpoint("10.0.0.9");
  no_address.address.reset();
  const ServicePortState& p =
      only_port(build({service("ns", "web")}, {slice("ns", "web-1", "web", {no_address, endpoint("10.0.0.1")})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080"));
}

TEST(EndpointsTest, PortsMatchByNameAndProtocol) {
  Service s = service("ns", "dns", {"10.96.0.10"},
                      {port("dns", 53, Protocol::UDP), port("dns-tcp", 53, Protocol::TCP), port("metrics", 9153)});
  const ProxyState state =
      build({s}, {slice("ns", "dns-1", "dns", {endpoint("10.0.0.1")},
                        {slice_port("dns", 1053, Protocol::UDP), slice_port("dns-tcp", 1054, Protocol::TCP),
                         slice_port("metrics", 9999, Protocol::UDP), slice_port("other", 7000)})});
  EXPECT_THAT(names(state), ElementsAre("ns/dns/udp/dns v4", "ns/dns/tcp/dns-tcp v4", "ns/dns/tcp/metrics v4"));
  EXPECT_THAT(strs(state.ports[0].cluster_endpoints), ElementsAre("10.0.0.1:1053"));
  EXPECT_THAT(strs(state.ports[1].cluster_endpoints), ElementsAre("10.0.0.1:1054"));
  EXPECT_THAT(state.ports[2].cluster_endpoints, IsEmpty());  // slice has metrics over UDP only
}

TEST(EndpointsTest, UnnamedPortMatchesUnnamedSlicePort) {
  const ServicePortState& p =
      only_port(build({service("ns", "web", {"10.96.0.1"}, {port("", 80)})},
                      {slice("ns", "web-1", "web", {endpoint("10.0.0.1")}, {slice_port("", 8080), slice_port("x", 1)})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080"));
}

TEST(EndpointsTest, NamedTargetPortUsesTheSlicePortNumber) {
  Service s = service("ns", "web");
  s.ports[0].target_port = {0, "web-port"};
  const ServicePortState& p =
      only_port(build({s}, {slice("ns", "web-1", "web", {endpoint("10.0.0.1")}, {slice_port("http", 3000)})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:3000"));
}

TEST(EndpointsTest, SlicePortWithoutNumberOrZeroIsIgnored) {
  const ServicePortState p = only_port(
      build({service("ns", "web")}, {slice("ns", "web-1", "web", {endpoint("10.0.0.1")}, {slice_port("http", std::nullopt)}),
                                     slice("ns", "web-2", "web", {endpoint("10.0.0.2")}, {slice_port("http", 0)}),
                                     slice("ns", "web-3", "web", {endpoint("10.0.0.3")}, {slice_port("http", 8080)})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.3:8080"));
}

TEST(EndpointsTest, EndpointsFromAllSlicesAreMergedAndSorted) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-b", "web", {endpoint("10.0.0.10"), endpoint("10.0.0.3")}),
                               slice("ns", "web-a", "web", {endpoint("10.0.0.2"), endpoint("9.0.0.1")})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("9.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.10:8080"));
}

TEST(EndpointsTest, SameAddressOnDifferentPortsIsKept) {
  // A rolling change of the target port: two slices, same pod IP, two ports.
  const ServicePortState& p =
      only_port(build({service("ns", "web")}, {slice("ns", "web-1", "web", {endpoint("10.0.0.1")}, {slice_port("http", 8080)}),
                                               slice("ns", "web-2", "web", {endpoint("10.0.0.1")}, {slice_port("http", 9090)})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080", "10.0.0.1:9090"));
}

TEST(EndpointsTest, DuplicateEndpointFirstSliceByNameWins) {
  // web-a says ready, web-b says not ready: web-a wins whatever the input order.
  std::vector<EndpointSlice> slices = {slice("ns", "web-b", "web", {endpoint("10.0.0.1", "", kNotReady)}),
                                       slice("ns", "web-a", "web", {endpoint("10.0.0.1", "", kReady)})};
  EXPECT_THAT(strs(only_port(build({service("ns", "web")}, slices)).cluster_endpoints), ElementsAre("10.0.0.1:8080"));
  std::reverse(slices.begin(), slices.end());
  EXPECT_THAT(strs(only_port(build({service("ns", "web")}, slices)).cluster_endpoints), ElementsAre("10.0.0.1:8080"));

  // And the other way round: the first one is not ready, so nothing is usable.
  slices[0].ref.name = "web-z";
  EXPECT_THAT(only_port(build({service("ns", "web")}, slices)).cluster_endpoints, IsEmpty());
}

TEST(EndpointsTest, DuplicateEndpointWithinOneSliceIsDeduplicated) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web", {endpoint("10.0.0.1"), endpoint("10.0.0.1", "", kNotReady)})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080"));
}

TEST(EndpointsTest, DuplicateEndpointNotTerminatingBeatsTerminating) {
  // kube-proxy 1.36+ (PR 135593): a pod IP reused while the old Pod is still
  // terminating; the running pod's copy wins whichever slice comes first.
  for (const auto& [first, second] : {std::pair{"web-a", "web-b"}, std::pair{"web-b", "web-a"}}) {
    const ServicePortState p = only_port(
        build({service("ns", "web")}, {slice("ns", first, "web", {endpoint("10.0.0.1", "node-a", kServingTerminating)}),
                                       slice("ns", second, "web", {endpoint("10.0.0.1", "node-b", kReady)})}));
    EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080")) << first;
    EXPECT_THAT(p.local_endpoints, IsEmpty()) << first << ": the node-a copy lost";
  }
}

TEST(EndpointsTest, DuplicateEndpointLocalCopyNoLongerBeatsRemote) {
  // Before 1.36 kube-proxy preferred a local duplicate; now the first wins.
  const ServicePortState p =
      only_port(build({service("ns", "web")}, {slice("ns", "web-a", "web", {endpoint("10.0.0.1", "node-b", kNotReady)}),
                                               slice("ns", "web-b", "web", {endpoint("10.0.0.1", "node-a", kReady)})}));
  EXPECT_THAT(p.cluster_endpoints, IsEmpty());
  EXPECT_THAT(p.local_endpoints, IsEmpty());
}

TEST(EndpointsTest, DuplicateEndpointHintsComeFromTheWinningCopy) {
  // The copy that wins brings its hints: the terminating copy's zone-a hint
  // is not this endpoint's.
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-a", "web",
                                     {hinted(endpoint("10.0.0.1", "node-b", kServingTerminating), {"zone-a"}),
                                      hinted(endpoint("10.0.0.2"), {"zone-a"})}),
                               slice("ns", "web-b", "web", {hinted(endpoint("10.0.0.1", "node-c"), {"zone-b"})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.2:8080"));
}

TEST(EndpointsTest, DuplicateSliceRefIsReported) {
  const ProxyState state = build({service("ns", "web")}, {slice("ns", "web-1", "web", {endpoint("10.0.0.2")}),
                                                          slice("ns", "web-1", "web", {endpoint("10.0.0.1")})});
  // The first by value (10.0.0.1 < 10.0.0.2) is kept.
  EXPECT_THAT(strs(only_port(state).cluster_endpoints), ElementsAre("10.0.0.1:8080"));
  EXPECT_THAT(reasons(state), ElementsAre("ns/web-1: duplicate EndpointSlice; using the first by value"));
}

TEST(EndpointsTest, DuplicateServiceRefIsReported) {
  const ProxyState state = build({service("ns", "web", {"10.96.0.2"}), service("ns", "web", {"10.96.0.1"})});
  EXPECT_EQ(only_port(state).cluster_ip, ip("10.96.0.1"));
  EXPECT_THAT(reasons(state), ElementsAre("ns/web: duplicate Service; using the first by value"));
}

TEST(EndpointsTest, SlicesOfASkippedServiceDoNotLeakToTheNext) {
  Service headless = service("ns", "a");
  headless.headless = true;
  const ProxyState state = build({headless, service("ns", "b")}, {slice("ns", "a-1", "a", {endpoint("10.0.0.1")}),
                                                                   slice("ns", "b-1", "b", {endpoint("10.0.0.2")})});
  EXPECT_THAT(strs(only_port(state).cluster_endpoints), ElementsAre("10.0.0.2:8080"));
}

// ---------------------------------------------------------------------------
// Conditions (CategorizeEndpoints)

TEST(ConditionsTest, ClusterSetIsReadyEndpoints) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {endpoint("10.0.0.1", "", kReady), endpoint("10.0.0.2", "", kNotReady),
                                      endpoint("10.0.0.3", "", kServingTerminating),
                                      endpoint("10.0.0.4", "", kTerminatingNotServing)})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080"));
}

TEST(ConditionsTest, WithoutReadyEndpointsClusterSetIsServingTerminating) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {endpoint("10.0.0.2", "", kNotReady), endpoint("10.0.0.3", "", kServingTerminating),
                                      endpoint("10.0.0.4", "", kTerminatingNotServing),
                                      endpoint("10.0.0.5", "", {false, true, false})})}));
  // Serving but not terminating (not ready for another reason) is not used either.
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.3:8080"));
}

TEST(ConditionsTest, NonServingEndpointsAreNeverUsed) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {endpoint("10.0.0.1", "node-a", kNotReady),
                                      endpoint("10.0.0.2", "node-a", kTerminatingNotServing)})}));
  EXPECT_THAT(p.cluster_endpoints, IsEmpty());
  EXPECT_THAT(p.local_endpoints, IsEmpty());
  EXPECT_EQ(p.local_ready_count, 0u);
}

TEST(ConditionsTest, LocalSetIsReadyEndpointsOnThisNode) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {endpoint("10.0.0.1", "node-a"), endpoint("10.0.0.2", "node-b"),
                                      endpoint("10.0.0.3", "node-a"), endpoint("10.0.0.4", ""),
                                      endpoint("10.0.0.5", "node-a", kServingTerminating),
                                      endpoint("10.0.0.6", "node-a", kNotReady)})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080", "10.0.0.4:8080"));
  EXPECT_THAT(strs(p.local_endpoints), ElementsAre("10.0.0.1:8080", "10.0.0.3:8080"));
  EXPECT_EQ(p.local_ready_count, 2u);
}

TEST(ConditionsTest, LocalSetFallsBackToLocalServingTerminatingIndependently) {
  // Remote endpoints are ready, so the cluster set does not fall back; the
  // local set does, because no local endpoint is ready.
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {endpoint("10.0.0.1", "node-b"), endpoint("10.0.0.2", "node-a", kServingTerminating),
                                      endpoint("10.0.0.3", "node-b", kServingTerminating),
                                      endpoint("10.0.0.4", "node-a", kTerminatingNotServing)})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080"));
  EXPECT_THAT(strs(p.local_endpoints), ElementsAre("10.0.0.2:8080"));
  EXPECT_EQ(p.local_ready_count, 0u);
}

TEST(ConditionsTest, NoNodeNameMeansNothingIsLocal) {
  const ServicePortState p = only_port(build({service("ns", "web")},
                                              {slice("ns", "web-1", "web", {endpoint("10.0.0.1", "")})}, this_node("", "")));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080"));
  EXPECT_THAT(p.local_endpoints, IsEmpty());
  EXPECT_EQ(p.local_ready_count, 0u);
}

TEST(ConditionsTest, PolicyAccessorsPickTheRightSet) {
  Service s = service("ns", "web");
  s.type = ServiceType::NodePort;
  s.internal_traffic_policy = TrafficPolicy::Local;
  const ServicePortState p = only_port(
      build({s}, {slice("ns", "web-1", "web", {endpoint("10.0.0.1", "node-a"), endpoint("10.0.0.2", "node-b")})}));
  EXPECT_THAT(strs(p.internal_endpoints()), ElementsAre("10.0.0.1:8080"));
  EXPECT_THAT(strs(p.external_endpoints()), ElementsAre("10.0.0.1:8080", "10.0.0.2:8080"));
}

// ---------------------------------------------------------------------------
// Topology hints

TEST(TopologyTest, ZoneHintsNarrowTheClusterSet) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {hinted(endpoint("10.0.0.1", "node-x"), {"zone-a"}),
                                      hinted(endpoint("10.0.0.2", "node-y"), {"zone-b"}),
                                      hinted(endpoint("10.0.0.3", "node-z"), {"zone-b", "zone-a"})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080", "10.0.0.3:8080"));
}

TEST(TopologyTest, OneReadyEndpointWithoutHintsDisablesTopology) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {hinted(endpoint("10.0.0.1"), {"zone-a"}), hinted(endpoint("10.0.0.2"), {"zone-b"}),
                                      endpoint("10.0.0.3")})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"));
}

TEST(TopologyTest, UnhintedEndpointsThatAreNotReadyDoNotDisableTopology) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {hinted(endpoint("10.0.0.1"), {"zone-a"}), hinted(endpoint("10.0.0.2"), {"zone-b"}),
                                      endpoint("10.0.0.3", "", kNotReady), endpoint("10.0.0.4", "", kServingTerminating)})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080"));
}

TEST(TopologyTest, NoEndpointForThisZoneDisablesTopology) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {hinted(endpoint("10.0.0.1"), {"zone-b"}), hinted(endpoint("10.0.0.2"), {"zone-c"})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080", "10.0.0.2:8080"));
}

TEST(TopologyTest, NodeWithoutZoneIgnoresOrdinaryZoneHints) {
  const ServicePortState p =
      only_port(build({service("ns", "web")},
                      {slice("ns", "web-1", "web",
                             {hinted(endpoint("10.0.0.1"), {"zone-a"}), hinted(endpoint("10.0.0.2"), {"zone-b"})})},
                      this_node("node-a", "")));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080", "10.0.0.2:8080"));
}

TEST(TopologyTest, NodeWithoutZoneMatchesAZoneHintNamedEmpty) {
  // kube-proxy compares hint names literally (sets.Has): the zone of a node
  // without the label is "", and "" is a valid forZones name.
  const ServicePortState p = only_port(build(
      {service("ns", "web")},
      {slice("ns", "web-1", "web", {hinted(endpoint("10.0.0.1"), {"zone-a"}), hinted(endpoint("10.0.0.2"), {""})})},
      this_node("node-a", "")));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.2:8080"));
}

TEST(TopologyTest, AZoneHintNamedEmptyIsNotForANodeWithAZone) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")},
      {slice("ns", "web-1", "web", {hinted(endpoint("10.0.0.1"), {"zone-a"}), hinted(endpoint("10.0.0.2"), {""})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080"));
}

TEST(TopologyTest, NodeWithoutNameIgnoresNodeHints) {
  // Without a node name nothing is local, and no node hint names the node:
  // the zone hints decide.
  const ServicePortState p = only_port(build(
      {service("ns", "web")},
      {slice("ns", "web-1", "web",
             {hinted(endpoint("10.0.0.1"), {"zone-b"}, {""}), hinted(endpoint("10.0.0.2"), {"zone-a"}, {"node-b"})})},
      this_node("", "zone-a")));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.2:8080"));
}

TEST(TopologyTest, HintsOnEndpointsThatAreNotReadyDoNotChooseTheMode) {
  // The only endpoints hinted for this zone (and this node) are not ready:
  // no topology, every ready endpoint is used, and the others never are.
  const ServicePortState p =
      only_port(build({service("ns", "web")},
                      {slice("ns", "web-1", "web",
                             {hinted(endpoint("10.0.0.1"), {"zone-b"}, {"node-b"}),
                              hinted(endpoint("10.0.0.2"), {"zone-c"}, {"node-c"}),
                              hinted(endpoint("10.0.0.3", "node-a", kNotReady), {"zone-a"}, {"node-a"}),
                              hinted(endpoint("10.0.0.4", "node-a", kServingTerminating), {"zone-a"}, {"node-a"})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080", "10.0.0.2:8080"));
}

TEST(TopologyTest, ReadyEndpointsOfThisZoneComeBeforeTerminatingOnes) {
  // A serving-terminating endpoint hinted for this zone is not used while a
  // ready one is.
  const ServicePortState p =
      only_port(build({service("ns", "web")},
                      {slice("ns", "web-1", "web",
                             {hinted(endpoint("10.0.0.1"), {"zone-a"}), hinted(endpoint("10.0.0.2"), {"zone-b"}),
                              hinted(endpoint("10.0.0.3", "", kServingTerminating), {"zone-a"})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080"));
}

TEST(TopologyTest, NodeHintsOnlyOnNotReadyEndpointsFallBackToZoneHints) {
  // The ready endpoints carry zone hints only; a terminating one carries a
  // node hint for this node. Node hints are not "on every ready endpoint".
  const ServicePortState p =
      only_port(build({service("ns", "web")},
                      {slice("ns", "web-1", "web",
                             {hinted(endpoint("10.0.0.1"), {"zone-a"}), hinted(endpoint("10.0.0.2"), {"zone-b"}),
                              hinted(endpoint("10.0.0.3", "node-a", kServingTerminating), {"zone-a"}, {"node-a"})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080"));
}

TEST(TopologyTest, HintsApplyToExternalTrafficUnderClusterPolicy) {
  // kube-proxy's cluster endpoints serve NodePorts with eTP=Cluster too.
  Service s = service("ns", "web", {"10.96.0.1"}, {port("http", 80, Protocol::TCP, 30080)});
  s.type = ServiceType::NodePort;
  const ServicePortState p = only_port(build({s}, {slice("ns", "web-1", "web",
                                                         {hinted(endpoint("10.0.0.1", "node-b"), {"zone-a"}),
                                                          hinted(endpoint("10.0.0.2", "node-c"), {"zone-b"})})}));
  EXPECT_THAT(strs(p.external_endpoints()), ElementsAre("10.0.0.1:8080"));
  EXPECT_THAT(strs(p.internal_endpoints()), ElementsAre("10.0.0.1:8080"));
}

TEST(TopologyTest, LocalPoliciesWinOverHints) {
  // Both policies Local: this node's endpoint is used although every hint
  // (node and zone) sends this node elsewhere.
  Service s = service("ns", "web", {"10.96.0.1"}, {port("http", 80, Protocol::TCP, 30080)});
  s.type = ServiceType::NodePort;
  s.external_traffic_policy = TrafficPolicy::Local;
  s.internal_traffic_policy = TrafficPolicy::Local;
  const ServicePortState p =
      only_port(build({s}, {slice("ns", "web-1", "web",
                                  {hinted(endpoint("10.0.0.1", "node-a"), {"zone-b"}, {"node-b"}),
                                   hinted(endpoint("10.0.0.2", "node-b"), {"zone-a"}, {"node-a"})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.2:8080"));
  EXPECT_THAT(strs(p.internal_endpoints()), ElementsAre("10.0.0.1:8080"));
  EXPECT_THAT(strs(p.external_endpoints()), ElementsAre("10.0.0.1:8080"));
}

TEST(TopologyTest, LocalPolicyFallsBackToLocalTerminatingEndpointsNotToHintedOnes) {
  // iTP=Local, this node's only endpoint is serving and terminating: it is
  // used, not the ready remote endpoint hinted for this node and zone.
  Service s = service("ns", "web");
  s.internal_traffic_policy = TrafficPolicy::Local;
  const ServicePortState p =
      only_port(build({s}, {slice("ns", "web-1", "web",
                                  {hinted(endpoint("10.0.0.1", "node-a", kServingTerminating), {"zone-a"}, {"node-a"}),
                                   hinted(endpoint("10.0.0.2", "node-b"), {"zone-a"}, {"node-a"})})}));
  EXPECT_THAT(strs(p.internal_endpoints()), ElementsAre("10.0.0.1:8080"));
  EXPECT_EQ(p.local_ready_count, 0u);
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.2:8080"));
}

TEST(TopologyTest, NodeHintsAreReadOnEveryFamily) {
  // Dual stack: each family's slice carries its own hints; both narrow.
  Service s = service("ns", "web", {"10.96.0.1", "fd00::1"});
  const ProxyState state = build(
      {s},
      {slice("ns", "web-v4", "web",
             {hinted(endpoint("10.0.0.1"), {"zone-a"}, {"node-a"}),
              hinted(endpoint("10.0.0.2"), {"zone-a"}, {"node-b"})}),
       slice("ns", "web-v6", "web",
             {hinted(endpoint("fd00::a"), {"zone-a"}, {"node-a"}), hinted(endpoint("fd00::b"), {"zone-a"}, {"node-b"})},
             {slice_port("http", 8080)}, AddressType::IPv6)});
  ASSERT_EQ(state.ports.size(), 2u);
  EXPECT_THAT(strs(state.ports[0].cluster_endpoints), ElementsAre("10.0.0.1:8080"));
  EXPECT_THAT(strs(state.ports[1].cluster_endpoints), ElementsAre("[fd00::a]:8080"));
}

TEST(TopologyTest, NodeHintsNarrowToThisNode) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {hinted(endpoint("10.0.0.1", "node-a"), {}, {"node-a"}),
                                      hinted(endpoint("10.0.0.2", "node-b"), {}, {"node-b"})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080"));
}

TEST(TopologyTest, NodeHintsWinOverZoneHints) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {hinted(endpoint("10.0.0.1"), {"zone-a"}, {"node-b"}),
                                      hinted(endpoint("10.0.0.2"), {"zone-a"}, {"node-a"}),
                                      hinted(endpoint("10.0.0.3"), {"zone-b"}, {"node-c"})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.2:8080"));
}

TEST(TopologyTest, NodeHintsForOtherNodesFallBackToZoneHints) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {hinted(endpoint("10.0.0.1"), {"zone-a"}, {"node-b"}),
                                      hinted(endpoint("10.0.0.2"), {"zone-b"}, {"node-c"})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080"));
}

TEST(TopologyTest, IncompleteNodeHintsFallBackToZoneHints) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {hinted(endpoint("10.0.0.1"), {"zone-b"}, {"node-a"}),
                                      hinted(endpoint("10.0.0.2"), {"zone-a"}, {}),
                                      hinted(endpoint("10.0.0.3"), {"zone-b"}, {})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.2:8080"));
}

TEST(TopologyTest, MixedHintKindsWithoutACompleteSetDisableTopology) {
  // Every endpoint has *a* hint, but neither kind is on every endpoint.
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {hinted(endpoint("10.0.0.1"), {}, {"node-a"}),
                                      hinted(endpoint("10.0.0.2"), {"zone-a"}, {})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080", "10.0.0.2:8080"));
}

TEST(TopologyTest, HintsDoNotApplyToTheLocalSet) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {hinted(endpoint("10.0.0.1", "node-a"), {"zone-b"}),
                                      hinted(endpoint("10.0.0.2", "node-b"), {"zone-a"})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.2:8080"));
  EXPECT_THAT(strs(p.local_endpoints), ElementsAre("10.0.0.1:8080"));
  EXPECT_EQ(p.local_ready_count, 1u);
}

TEST(TopologyTest, TerminatingFallbackIgnoresHints) {
  const ServicePortState p = only_port(build(
      {service("ns", "web")}, {slice("ns", "web-1", "web",
                                     {hinted(endpoint("10.0.0.1", "", kServingTerminating), {"zone-b"}),
                                      hinted(endpoint("10.0.0.2", "", kServingTerminating), {"zone-a"})})}));
  EXPECT_THAT(strs(p.cluster_endpoints), ElementsAre("10.0.0.1:8080", "10.0.0.2:8080"));
}

TEST(TopologyTest, HintsAreEvaluatedPerServicePort) {
  // Port http: every endpoint hinted; port admin (separate slice): not.
  Service s = service("ns", "web", {"10.96.0.1"}, {port("http", 80), port("admin", 81)});
  const ProxyState state = build(
      {s}, {slice("ns", "web-1", "web", {hinted(endpoint("10.0.0.1"), {"zone-a"}), hinted(endpoint("10.0.0.2"), {"zone-b"})},
                  {slice_port("http", 8080)}),
            slice("ns", "web-2", "web", {hinted(endpoint("10.0.0.1"), {"zone-a"}), endpoint("10.0.0.2")},
                  {slice_port("admin", 8081)})});
  ASSERT_EQ(state.ports.size(), 2u);
  EXPECT_EQ(state.ports[0].name.port_name, "admin");
  EXPECT_THAT(strs(state.ports[0].cluster_endpoints), ElementsAre("10.0.0.1:8081", "10.0.0.2:8081"));
  EXPECT_THAT(strs(state.ports[1].cluster_endpoints), ElementsAre("10.0.0.1:8080"));
}

// ---------------------------------------------------------------------------
// Determinism and scale

ClusterState mixed_cluster(bool with_duplicates = true) {
  ClusterState cluster;
  for (int i = 0; i < 30; ++i) {
    const std::string ns = "ns" + std::to_string(i % 3);
    const std::string name = "svc" + std::to_string(i);
    Service s = service(ns, name, {"10.96.0." + std::to_string(i + 1)}, {port("http", 80), port("dns", 53, Protocol::UDP)});
    if (i % 4 == 0) s.cluster_ips.push_back(ip("fd00:96::" + std::to_string(i + 1)));
    if (i % 5 == 0) s.headless = true;
    s.external_ips = {ip("192.0.2." + std::to_string(30 - i)), ip("192.0.2.1")};
    cluster.services.push_back(s);
    for (int j = 0; j < 3; ++j) {
      const std::string base = "10." + std::to_string(i) + "." + std::to_string(j) + ".";
      cluster.endpoint_slices.push_back(
          slice(ns, name + "-" + std::to_string(j), name,
                {endpoint(base + "1", "node-a", kReady), endpoint(base + "2", "node-b", j == 1 ? kNotReady : kReady),
                 endpoint("10.200.0." + std::to_string(j), "node-a", j == 0 ? kNotReady : kReady)},
                {slice_port("http", 8080), slice_port("dns", 53, Protocol::UDP)}));
    }
  }
  if (with_duplicates) {
    // Duplicates in the input must not make the output order-dependent.
    cluster.services.push_back(service("ns0", "svc3", {"10.96.9.9"}));
    cluster.endpoint_slices.push_back(slice("ns0", "svc3-0", "svc3", {endpoint("10.99.0.1")}));
  }
  return cluster;
}

TEST(DeterminismTest, OutputIsIndependentOfObjectOrder) {
  ClusterState cluster = mixed_cluster();
  const NodeConfig node = this_node();
  const ProxyState expected = build_proxy_state(cluster, node);
  ASSERT_FALSE(expected.ports.empty());
  ASSERT_EQ(expected.skipped.size(), 2u);
  std::mt19937 rng(7);
  for (int round = 0; round < 10; ++round) {
    std::shuffle(cluster.services.begin(), cluster.services.end(), rng);
    std::shuffle(cluster.endpoint_slices.begin(), cluster.endpoint_slices.end(), rng);
    const ProxyState got = build_proxy_state(cluster, node);
    EXPECT_EQ(got.ports, expected.ports);
    EXPECT_EQ(reasons(got), reasons(expected));
  }
}

TEST(DeterminismTest, OutputIsIndependentOfEndpointOrderWithinSlices) {
  // (Without duplicate slices: which duplicate is kept depends on its value,
  // and the endpoint order is part of that value.)
  ClusterState cluster = mixed_cluster(false);
  const NodeConfig node = this_node();
  const ProxyState expected = build_proxy_state(cluster, node);
  std::mt19937 rng(11);
  for (int round = 0; round < 10; ++round) {
    for (auto& s : cluster.endpoint_slices) std::shuffle(s.endpoints.begin(), s.endpoints.end(), rng);
    EXPECT_EQ(build_proxy_state(cluster, node).ports, expected.ports);
  }
}

TEST(DeterminismTest, PortsAreSortedByNameAndEndpointListsAreSortedAndUnique) {
  const ProxyState state = build_proxy_state(mixed_cluster(), this_node());
  EXPECT_TRUE(std::is_sorted(state.ports.begin(), state.ports.end(),
                             [](const auto& a, const auto& b) { return a.name < b.name; }));
  for (size_t i = 1; i < state.ports.size(); ++i) {
    EXPECT_NE(state.ports[i - 1].name, state.ports[i].name);
  }
  for (const auto& p : state.ports) {
    for (const auto* list : {&p.cluster_endpoints, &p.local_endpoints}) {
      EXPECT_TRUE(std::is_sorted(list->begin(), list->end()));
      EXPECT_EQ(std::adjacent_find(list->begin(), list->end()), list->end());
    }
  }
}

TEST(DeterminismTest, SortedAndUnsortedClusterGiveTheSameResult) {
  ClusterState cluster = mixed_cluster();
  const ProxyState unsorted = build_proxy_state(cluster, this_node());
  cluster.sort();
  const ProxyState sorted = build_proxy_state(cluster, this_node());
  EXPECT_EQ(unsorted.ports, sorted.ports);
  EXPECT_EQ(reasons(unsorted), reasons(sorted));
}

// The daemon recomputes only the services that changed: one service at a
// time must give exactly what the whole cluster gives for it.
TEST(PerServiceTest, PerServiceResultsConcatenatedEqualTheWhole) {
  ClusterState cluster = mixed_cluster(false);
  // Slices the per-service call must ignore: FQDN, unlabelled, another namespace.
  cluster.endpoint_slices.push_back(slice("ns0", "fqdn", "svc0", {}, {slice_port("http", 8080)}, AddressType::FQDN));
  cluster.endpoint_slices.push_back(slice("ns0", "unlabelled", "", {endpoint("10.98.0.1")}));
  cluster.endpoint_slices.push_back(slice("ns1", "svc0-x", "svc0", {endpoint("10.98.0.2")}));
  // A skip reason, kept with its service.
  cluster.services.push_back(service("ns2", "zero", {"10.96.8.1"}, {port("http", 80), port("bad", 0)}));
  const NodeConfig node = this_node();
  const ProxyState whole = build_proxy_state(cluster, node);
  ASSERT_EQ(whole.skipped.size(), 1u);

  std::mt19937 rng(5);
  std::shuffle(cluster.endpoint_slices.begin(), cluster.endpoint_slices.end(), rng);
  ClusterState sorted = cluster;
  sorted.sort();
  ProxyState joined;
  for (const Service& s : sorted.services) {
    // Every slice of the cluster, shuffled: the call picks its own.
    const ProxyState one = build_service_state(s, cluster.endpoint_slices, node);
    for (const auto& p : one.ports) EXPECT_EQ(p.name.service, s.ref);
    joined.ports.insert(joined.ports.end(), one.ports.begin(), one.ports.end());
    joined.skipped.insert(joined.skipped.end(), one.skipped.begin(), one.skipped.end());
  }
  EXPECT_EQ(joined.ports, whole.ports);
  EXPECT_EQ(reasons(joined), reasons(whole));
}

TEST(ScaleTest, ManyServicesEachGetOnlyTheirOwnEndpoints) {
  // 20k services x 2 endpoints; a quadratic pairing would be visibly slow here.
  constexpr int kServices = 20000;
  ClusterState cluster;
  cluster.services.reserve(kServices);
  cluster.endpoint_slices.reserve(kServices);
  for (int i = 0; i < kServices; ++i) {
    const std::string name = "svc" + std::to_string(i);
    Service s;
    s.ref = {"ns" + std::to_string(i % 7), name};
    s.cluster_ips = {IPAddress::v4(10, 96, static_cast<uint8_t>(i / 256), static_cast<uint8_t>(i % 256))};
    s.ports = {port("http", 80)};
    cluster.services.push_back(std::move(s));
    EndpointSlice sl;
    sl.ref = {"ns" + std::to_string(i % 7), name + "-abcde"};
    sl.service_name = name;
    sl.ports = {slice_port("http", 8080)};
    for (uint8_t k = 1; k <= 2; ++k) {
      Endpoint e;
      e.address = IPAddress::v4(10, static_cast<uint8_t>(i / 256), static_cast<uint8_t>(i % 256), k);
      sl.endpoints.push_back(std::move(e));
    }
    cluster.endpoint_slices.push_back(std::move(sl));
  }
  const ProxyState state = build_proxy_state(cluster, this_node());
  ASSERT_EQ(state.ports.size(), static_cast<size_t>(kServices));
  for (const auto& p : state.ports) {
    ASSERT_EQ(p.cluster_endpoints.size(), 2u) << p.name.str();
    const int i = std::stoi(p.name.service.name.substr(3));
    EXPECT_EQ(p.cluster_endpoints[0].ip,
              IPAddress::v4(10, static_cast<uint8_t>(i / 256), static_cast<uint8_t>(i % 256), 1));
  }
}

}  // namespace
}  // namespace svcproxy::model
