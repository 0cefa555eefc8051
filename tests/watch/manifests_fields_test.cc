// Every field svcproxy reads from each kind, including the defaults of absent
// fields, decoded from kubectl-shaped input.
#include <gtest/gtest.h>

#include "tests/watch/manifests_test_util.h"

namespace svcproxy::watch {
namespace {

using model::AddressType;
using model::Protocol;
using model::ServiceType;
using model::TrafficPolicy;
using testing::cidr;
using testing::decode;
using testing::ip;

// ---- Service ----------------------------------------------------------------

TEST(ManifestsService, EveryField) {
  const auto result = decode(R"(apiVersion: v1
kind: Service
metadata:
  labels:
    app: web
    service.kubernetes.io/service-proxy-name: other-proxy
  name: web
  namespace: shop
  resourceVersion: "48213"
spec:
  clusterIP: 10.96.12.34
  clusterIPs:
  - 10.96.12.34
  - fd00:10:96::1234
  externalIPs:
  - 192.0.2.10
  - 2001:db8::10
  externalTrafficPolicy: Local
  healthCheckNodePort: 31999
  internalTrafficPolicy: Local
  loadBalancerSourceRanges:
  - 203.0.113.0/24
  - ' 198.51.100.0/25 '
  ports:
  - name: http
    nodePort: 30080
    port: 80
    protocol: TCP
    targetPort: http
  - name: dns
    nodePort: 30053
    port: 53
    protocol: UDP
    targetPort: 5353
  - name: sctp
    port: 9999
    protocol: SCTP
    targetPort: 9998
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: 600
  type: LoadBalancer
status:
  loadBalancer:
    ingress:
    - ip: 198.51.100.7
      ipMode: VIP
    - ip: 198.51.100.8
      ipMode: Proxy
    - hostname: lb.example.com
    - ip: 2001:db8::7
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.services.size(), 1u);
  const model::Service& s = result.state.services[0];
  EXPECT_EQ(s.ref, (model::ObjectRef{"shop", "web"}));
  EXPECT_EQ(s.resource_version, "48213");
  EXPECT_TRUE(s.has_service_proxy_name);
  EXPECT_EQ(s.type, ServiceType::LoadBalancer);
  EXPECT_FALSE(s.headless);
  EXPECT_EQ(s.cluster_ips, (std::vector{ip("10.96.12.34"), ip("fd00:10:96::1234")}));
  EXPECT_EQ(s.external_ips, (std::vector{ip("192.0.2.10"), ip("2001:db8::10")}));
  EXPECT_EQ(s.load_balancer_ips, (std::vector{ip("198.51.100.7"), ip("2001:db8::7")}));
  EXPECT_EQ(s.load_balancer_source_ranges, (std::vector{cidr("203.0.113.0/24"), cidr("198.51.100.0/25")}));
  EXPECT_EQ(s.external_traffic_policy, TrafficPolicy::Local);
  EXPECT_EQ(s.internal_traffic_policy, TrafficPolicy::Local);
  EXPECT_TRUE(s.session_affinity_client_ip);
  EXPECT_EQ(s.session_affinity_timeout_seconds, 600u);
  EXPECT_EQ(s.health_check_node_port, 31999);

  ASSERT_EQ(s.ports.size(), 3u);
  EXPECT_EQ(s.ports[0], (model::ServicePort{.name = "http",
                                            .protocol = Protocol::TCP,
                                            .port = 80,
                                            .target_port = {.number = 0, .name = "http"},
                                            .node_port = 30080}));
  EXPECT_EQ(s.ports[1], (model::ServicePort{.name = "dns",
                                            .protocol = Protocol::UDP,
                                            .port = 53,
                                            .target_port = {.number = 5353, .name = ""},
                                            .node_port = 30053}));
  EXPECT_EQ(s.ports[2].protocol, Protocol::SCTP);
  EXPECT_EQ(s.ports[2].target_port.number, 9998);
  EXPECT_EQ(s.ports[2].node_port, 0);
}

TEST(ManifestsService, Defaults) {
  const auto result = decode(R"(apiVersion: v1
kind: Service
metadata:
  name: minimal
spec:
  ports:
  - port: 8080
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.services.size(), 1u);
  const model::Service& s = result.state.services[0];
  EXPECT_EQ(s.ref, (model::ObjectRef{"default", "minimal"}));
  EXPECT_EQ(s.resource_version, "");
  EXPECT_EQ(s.type, ServiceType::ClusterIP);
  EXPECT_TRUE(s.headless);  // no clusterIP at all
  EXPECT_TRUE(s.cluster_ips.empty());
  ASSERT_EQ(s.ports.size(), 1u);
  EXPECT_EQ(s.ports[0], (model::ServicePort{.name = "",
                                            .protocol = Protocol::TCP,
                                            .port = 8080,
                                            .target_port = {.number = 8080, .name = ""},
                                            .node_port = 0}));
  EXPECT_TRUE(s.external_ips.empty());
  EXPECT_TRUE(s.load_balancer_ips.empty());
  EXPECT_TRUE(s.load_balancer_source_ranges.empty());
  EXPECT_EQ(s.external_traffic_policy, TrafficPolicy::Cluster);
  EXPECT_EQ(s.internal_traffic_policy, TrafficPolicy::Cluster);
  EXPECT_FALSE(s.session_affinity_client_ip);
  EXPECT_EQ(s.session_affinity_timeout_seconds, 10800u);
  EXPECT_EQ(s.health_check_node_port, 0);
  EXPECT_FALSE(s.has_service_proxy_name);
}

TEST(ManifestsService, ClusterIPFallsBackToSingularField) {
  const auto result = decode(R"(apiVersion: v1
kind: Service
metadata:
  name: old
  namespace: default
spec:
  clusterIP: 10.96.0.50
  ports:
  - port: 80
    protocol: TCP
    targetPort: 80
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.services.size(), 1u);
  EXPECT_FALSE(result.state.services[0].headless);
  EXPECT_EQ(result.state.services[0].cluster_ips, std::vector{ip("10.96.0.50")});
}

TEST(ManifestsService, ClusterIPsWinsOverClusterIP) {
  const auto result = decode(R"(apiVersion: v1
kind: Service
metadata:
  name: both
spec:
  clusterIP: 10.96.0.50
  clusterIPs:
  - 10.96.0.60
  ports:
  - port: 80
)");
  ASSERT_EQ(result.state.services.size(), 1u);
  EXPECT_EQ(result.state.services[0].cluster_ips, std::vector{ip("10.96.0.60")});
}

TEST(ManifestsService, HeadlessWhenNoneOrEmpty) {
  const auto result = decode(R"(apiVersion: v1
kind: Service
metadata:
  name: none
  namespace: db
spec:
  clusterIP: None
  clusterIPs:
  - None
  ports:
  - name: pg
    port: 5432
    protocol: TCP
    targetPort: 5432
---
apiVersion: v1
kind: Service
metadata:
  name: none-singular
  namespace: db
spec:
  clusterIP: None
  ports:
  - port: 5432
---
apiVersion: v1
kind: Service
metadata:
  name: empty
  namespace: db
spec:
  clusterIP: ""
  ports:
  - port: 5432
---
apiVersion: v1
kind: Service
metadata:
  name: external
  namespace: db
spec:
  externalName: db.example.com
  sessionAffinity: None
  type: ExternalName
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.services.size(), 4u);
  for (const model::Service& s : result.state.services) {
    EXPECT_TRUE(s.headless) << s.ref.str();
    EXPECT_TRUE(s.cluster_ips.empty()) << s.ref.str();
  }
  EXPECT_EQ(result.state.services[1].ref.name, "external");
  EXPECT_EQ(result.state.services[1].type, ServiceType::ExternalName);
}

TEST(ManifestsService, TypesAndPolicies) {
  const auto result = decode(R"(apiVersion: v1
kind: Service
metadata:
  name: np
spec:
  clusterIP: 10.96.0.2
  externalTrafficPolicy: Cluster
  internalTrafficPolicy: Cluster
  ports:
  - nodePort: 30000
    port: 80
  sessionAffinity: None
  type: NodePort
---
apiVersion: v1
kind: Service
metadata:
  name: legacy
spec:
  clusterIP: 10.96.0.3
  externalTrafficPolicy: Global
  ports:
  - port: 80
  type: ClusterIP
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.services.size(), 2u);
  const model::Service& legacy = result.state.services[0];
  const model::Service& np = result.state.services[1];
  EXPECT_EQ(np.type, ServiceType::NodePort);
  EXPECT_EQ(np.ports[0].node_port, 30000);
  EXPECT_EQ(np.external_traffic_policy, TrafficPolicy::Cluster);
  EXPECT_FALSE(np.session_affinity_client_ip);
  EXPECT_EQ(legacy.type, ServiceType::ClusterIP);
  EXPECT_EQ(legacy.external_traffic_policy, TrafficPolicy::Cluster);
}

TEST(ManifestsService, ClientIPAffinityDefaultTimeoutAndBounds) {
  const auto result = decode(R"(apiVersion: v1
kind: Service
metadata:
  name: sticky
spec:
  clusterIP: 10.96.0.4
  ports:
  - port: 80
  sessionAffinity: ClientIP
---
apiVersion: v1
kind: Service
metadata:
  name: sticky-max
spec:
  clusterIP: 10.96.0.5
  ports:
  - port: 80
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: 86400
---
apiVersion: v1
kind: Service
metadata:
  name: sticky-min
spec:
  clusterIP: 10.96.0.6
  ports:
  - port: 80
  sessionAffinity: ClientIP
  sessionAffinityConfig:
    clientIP:
      timeoutSeconds: 1
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.services.size(), 3u);
  EXPECT_TRUE(result.state.services[0].session_affinity_client_ip);
  EXPECT_EQ(result.state.services[0].session_affinity_timeout_seconds, 10800u);
  EXPECT_EQ(result.state.services[1].session_affinity_timeout_seconds, 86400u);
  EXPECT_EQ(result.state.services[2].session_affinity_timeout_seconds, 1u);
}

TEST(ManifestsService, PortBoundaries) {
  const auto result = decode(R"(apiVersion: v1
kind: Service
metadata:
  name: edges
spec:
  clusterIP: 10.96.0.7
  healthCheckNodePort: 65535
  ports:
  - name: low
    nodePort: 0
    port: 1
    targetPort: 1
  - name: high
    nodePort: 65535
    port: 65535
    targetPort: 65535
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.services.size(), 1u);
  const auto& ports = result.state.services[0].ports;
  ASSERT_EQ(ports.size(), 2u);
  EXPECT_EQ(ports[0].port, 1);
  EXPECT_EQ(ports[0].target_port.number, 1);
  EXPECT_EQ(ports[0].node_port, 0);
  EXPECT_EQ(ports[1].port, 65535);
  EXPECT_EQ(ports[1].target_port.number, 65535);
  EXPECT_EQ(ports[1].node_port, 65535);
  EXPECT_EQ(result.state.services[0].health_check_node_port, 65535);
}

TEST(ManifestsService, LoadBalancerIngressHostnameOnlyAndProxyModeAreIgnored) {
  const auto result = decode(R"(apiVersion: v1
kind: Service
metadata:
  name: aws
spec:
  clusterIP: 10.96.0.8
  ports:
  - nodePort: 31000
    port: 443
  type: LoadBalancer
status:
  loadBalancer:
    ingress:
    - hostname: a1b2c3.elb.amazonaws.com
    - ip: 198.51.100.9
      ipMode: Proxy
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.services.size(), 1u);
  EXPECT_TRUE(result.state.services[0].load_balancer_ips.empty());
}

TEST(ManifestsService, ServiceProxyNameLabelWithEmptyValueCounts) {
  const auto result = decode(R"(apiVersion: v1
kind: Service
metadata:
  labels:
    service.kubernetes.io/service-proxy-name: ""
  name: delegated
spec:
  clusterIP: 10.96.0.9
  ports:
  - port: 80
)");
  ASSERT_EQ(result.state.services.size(), 1u);
  EXPECT_TRUE(result.state.services[0].has_service_proxy_name);
}

// ---- EndpointSlice ----------------------------------------------------------

TEST(ManifestsEndpointSlice, EveryField) {
  const auto result = decode(R"(addressType: IPv6
apiVersion: discovery.k8s.io/v1
endpoints:
- addresses:
  - fd00:10:244:1::5
  - fd00:10:244:1::6
  conditions:
    ready: false
    serving: true
    terminating: true
  hints:
    forNodes:
    - name: node-a
    forZones:
    - name: zone-a
    - name: zone-b
  nodeName: node-a
  targetRef:
    kind: Pod
    name: web-1
    namespace: shop
  zone: zone-a
kind: EndpointSlice
metadata:
  annotations:
    endpoints.kubernetes.io/last-change-trigger-time: "2024-05-03T11:21:02Z"
  labels:
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
    kubernetes.io/service-name: web
  name: web-v6-abcde
  namespace: shop
  resourceVersion: "48251"
ports:
- name: http
  port: 8080
  protocol: TCP
- name: dns
  port: 5353
  protocol: UDP
- name: assoc
  port: 3868
  protocol: SCTP
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.endpoint_slices.size(), 1u);
  const model::EndpointSlice& slice = result.state.endpoint_slices[0];
  EXPECT_EQ(slice.ref, (model::ObjectRef{"shop", "web-v6-abcde"}));
  EXPECT_EQ(slice.resource_version, "48251");
  EXPECT_EQ(slice.service_name, "web");
  EXPECT_EQ(slice.last_change_trigger_time, "2024-05-03T11:21:02Z");
  EXPECT_EQ(slice.address_type, AddressType::IPv6);
  ASSERT_EQ(slice.endpoints.size(), 1u);
  const model::Endpoint& e = slice.endpoints[0];
  EXPECT_EQ(e.address, ip("fd00:10:244:1::5"));
  EXPECT_EQ(e.conditions, (model::EndpointConditions{.ready = false, .serving = true, .terminating = true}));
  EXPECT_EQ(e.node_name, "node-a");
  EXPECT_EQ(e.zone, "zone-a");
  EXPECT_EQ(e.hint_zones, (std::vector<std::string>{"zone-a", "zone-b"}));
  EXPECT_EQ(e.hint_nodes, std::vector<std::string>{"node-a"});
  ASSERT_EQ(slice.ports.size(), 3u);
  EXPECT_EQ(slice.ports[0], (model::EndpointPort{.name = "http", .protocol = Protocol::TCP, .port = 8080}));
  EXPECT_EQ(slice.ports[1], (model::EndpointPort{.name = "dns", .protocol = Protocol::UDP, .port = 5353}));
  EXPECT_EQ(slice.ports[2], (model::EndpointPort{.name = "assoc", .protocol = Protocol::SCTP, .port = 3868}));
}

TEST(ManifestsEndpointSlice, Defaults) {
  const auto result = decode(R"(addressType: IPv4
apiVersion: discovery.k8s.io/v1
endpoints:
- addresses:
  - 10.244.1.5
- addresses:
  - 10.244.1.6
  conditions: {}
- addresses:
  - 10.244.1.7
  conditions:
    ready: null
    serving: null
    terminating: null
- addresses:
  - 10.244.1.8
  conditions:
    ready: yes
    serving: "true"
    terminating: False
kind: EndpointSlice
metadata:
  name: bare
ports:
- port: 80
- name: ""
  port: null
  protocol: TCP
- name: unset
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.endpoint_slices.size(), 1u);
  const model::EndpointSlice& slice = result.state.endpoint_slices[0];
  EXPECT_EQ(slice.ref, (model::ObjectRef{"default", "bare"}));
  EXPECT_EQ(slice.service_name, "");
  EXPECT_EQ(slice.last_change_trigger_time, "");
  EXPECT_EQ(slice.resource_version, "");
  // YAML 1.1 spellings and quoted booleans read as the Kubernetes YAML reader
  // reads them.
  ASSERT_EQ(slice.endpoints.size(), 4u);
  for (const model::Endpoint& e : slice.endpoints) {
    EXPECT_EQ(e.conditions, (model::EndpointConditions{.ready = true, .serving = true, .terminating = false}));
    EXPECT_EQ(e.node_name, "");
    EXPECT_EQ(e.zone, "");
    EXPECT_TRUE(e.hint_zones.empty());
    EXPECT_TRUE(e.hint_nodes.empty());
  }
  EXPECT_EQ(slice.endpoints[2].address, ip("10.244.1.7"));
  ASSERT_EQ(slice.ports.size(), 3u);
  EXPECT_EQ(slice.ports[0], (model::EndpointPort{.name = "", .protocol = Protocol::TCP, .port = 80}));
  EXPECT_EQ(slice.ports[1], (model::EndpointPort{.name = "", .protocol = Protocol::TCP, .port = std::nullopt}));
  EXPECT_EQ(slice.ports[2], (model::EndpointPort{.name = "unset", .protocol = Protocol::TCP, .port = std::nullopt}));
}

// The endpoint slice controller writes `endpoints: null` and `ports: null` for
// services without pods or ports (headless services without ports, say).
TEST(ManifestsEndpointSlice, NullEndpointsAndPorts) {
  const auto result = decode(R"(addressType: IPv4
apiVersion: discovery.k8s.io/v1
endpoints: null
kind: EndpointSlice
metadata:
  labels:
    kubernetes.io/service-name: empty
  name: empty-x7k2d
  namespace: default
ports: null
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.endpoint_slices.size(), 1u);
  EXPECT_TRUE(result.state.endpoint_slices[0].endpoints.empty());
  EXPECT_TRUE(result.state.endpoint_slices[0].ports.empty());
  EXPECT_EQ(result.state.endpoint_slices[0].service_name, "empty");
}

TEST(ManifestsEndpointSlice, FQDNLeavesAddressEmpty) {
  const auto result = decode(R"(addressType: FQDN
apiVersion: discovery.k8s.io/v1
endpoints:
- addresses:
  - db.example.com
  conditions:
    ready: true
kind: EndpointSlice
metadata:
  labels:
    kubernetes.io/service-name: db
  name: db-fqdn
  namespace: default
ports:
- port: 5432
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.endpoint_slices.size(), 1u);
  EXPECT_EQ(result.state.endpoint_slices[0].address_type, AddressType::FQDN);
  ASSERT_EQ(result.state.endpoint_slices[0].endpoints.size(), 1u);
  EXPECT_FALSE(result.state.endpoint_slices[0].endpoints[0].address.has_value());
}

// ---- Node -------------------------------------------------------------------

TEST(ManifestsNode, EveryField) {
  const auto result = decode(R"(apiVersion: v1
kind: Node
metadata:
  creationTimestamp: "2024-05-02T09:13:50Z"
  deletionTimestamp: "2024-05-09T10:00:00Z"
  labels:
    kubernetes.io/hostname: node-a
    topology.kubernetes.io/zone: zone-a
  name: node-a
  resourceVersion: "51002"
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs:
  - 10.244.1.0/24
  - fd00:10:244:1::/64
  taints:
  - effect: NoSchedule
    key: node-role.kubernetes.io/control-plane
  - effect: NoExecute
    key: node.kubernetes.io/unreachable
    timeAdded: "2024-05-09T09:59:00Z"
status:
  addresses:
  - address: 172.18.0.2
    type: InternalIP
  - address: 203.0.113.50
    type: ExternalIP
  - address: fc00:f853:ccd:e793::2
    type: InternalIP
  - address: node-a
    type: Hostname
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.nodes.size(), 1u);
  const model::Node& n = result.state.nodes[0];
  EXPECT_EQ(n.name, "node-a");
  EXPECT_EQ(n.resource_version, "51002");
  EXPECT_EQ(n.zone, "zone-a");
  EXPECT_EQ(n.pod_cidrs, (std::vector{cidr("10.244.1.0/24"), cidr("fd00:10:244:1::/64")}));
  EXPECT_EQ(n.internal_ips, (std::vector{ip("172.18.0.2"), ip("fc00:f853:ccd:e793::2")}));
  EXPECT_TRUE(n.being_deleted);
  EXPECT_EQ(n.taints, (std::vector<model::NodeTaint>{
                          {.key = "node-role.kubernetes.io/control-plane", .effect = "NoSchedule"},
                          {.key = "node.kubernetes.io/unreachable", .effect = "NoExecute"}}));
}

TEST(ManifestsNode, DefaultsAndSingularPodCIDR) {
  const auto result = decode(R"(apiVersion: v1
kind: Node
metadata:
  name: old-node
spec:
  podCIDR: 10.244.7.0/24
---
apiVersion: v1
kind: Node
metadata:
  name: bare-node
spec: {}
status: {}
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.nodes.size(), 2u);
  const model::Node& bare = result.state.nodes[0];
  const model::Node& old = result.state.nodes[1];
  EXPECT_EQ(old.pod_cidrs, std::vector{cidr("10.244.7.0/24")});
  EXPECT_EQ(bare.name, "bare-node");
  EXPECT_EQ(bare.zone, "");
  EXPECT_EQ(bare.resource_version, "");
  EXPECT_TRUE(bare.pod_cidrs.empty());
  EXPECT_TRUE(bare.internal_ips.empty());
  EXPECT_TRUE(bare.taints.empty());
  EXPECT_FALSE(bare.being_deleted);
}

// ---- ServiceCIDR ------------------------------------------------------------

TEST(ManifestsServiceCIDR, Cidrs) {
  const auto result = decode(R"(apiVersion: networking.k8s.io/v1
kind: ServiceCIDR
metadata:
  name: kubernetes
  resourceVersion: "12"
spec:
  cidrs:
  - 10.96.0.0/16
  - fd00:10:96::/112
status:
  conditions:
  - lastTransitionTime: "2024-05-02T09:14:07Z"
    message: Kubernetes Service CIDR is ready
    reason: ""
    status: "True"
    type: Ready
)");
  ASSERT_TRUE(result.diagnostics.empty()) << testing::all_diagnostics(result);
  ASSERT_EQ(result.state.service_cidrs.size(), 1u);
  EXPECT_EQ(result.state.service_cidrs[0].name, "kubernetes");
  EXPECT_EQ(result.state.service_cidrs[0].cidrs, (std::vector{cidr("10.96.0.0/16"), cidr("fd00:10:96::/112")}));
}

}  // namespace
}  // namespace svcproxy::watch
