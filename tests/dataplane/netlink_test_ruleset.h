// A compiled ruleset that uses every construct of the IR (both families,
// NodePorts, external and LB IPs with source ranges, eTP=Local, iTP=Local,
// ClientIP affinity, services without endpoints, UDP and SCTP), for the
// netlink backend's tests. Plus a synthetic cluster generator for timing.
#pragma once

#include <string>
#include <vector>

#include "dataplane/compile.h"
#include "model/node_config.h"
#include "model/service_ports.h"
#include "tests/support/ip.h"

namespace svcproxy::dataplane::testing {

using test_support::cidr;
using test_support::ip;
inline model::EndpointAddress ep(const char* addr, uint16_t port) { return {ip(addr), port}; }

inline model::NodeConfig rich_node() {
  model::NodeConfig node;
  node.node_name = "node-a";
  node.node_ips = {ip("203.0.113.1"), ip("2001:db8::1")};
  node.nodeport_ips = node.node_ips;
  node.cluster_cidrs = {cidr("10.244.0.0/16"), cidr("fd00:10:244::/56")};
  node.service_cidrs = {cidr("10.96.0.0/16"), cidr("fd00:10:96::/112")};
  return node;
}

inline model::ServicePortState service_port(const char* name, const char* cluster_ip, uint16_t port,
                                            std::vector<model::EndpointAddress> cluster,
                                            std::vector<model::EndpointAddress> local = {},
                                            model::Protocol proto = model::Protocol::TCP) {
  model::ServicePortState sp;
  sp.name.service = {"default", name};
  sp.name.port_name = "p";
  sp.name.protocol = proto;
  sp.cluster_ip = ip(cluster_ip);
  sp.name.family = sp.cluster_ip.family;
  sp.port = port;
  sp.cluster_endpoints = std::move(cluster);
  sp.local_endpoints = std::move(local);
  return sp;
}

inline std::vector<model::ServicePortState> rich_ports() {
  using model::Protocol;
  using model::TrafficPolicy;
  const std::vector<model::EndpointAddress> three = {ep("10.244.1.2", 8080), ep("10.244.1.3", 8080),
                                                     ep("10.244.2.4", 8080)};
  const std::vector<model::EndpointAddress> local_one = {ep("10.244.1.2", 8080)};
  std::vector<model::ServicePortState> ports;
  ports.push_back(service_port("web", "10.96.0.10", 80, three, local_one));

  auto np = service_port("nodeport", "10.96.0.11", 80, three, local_one);
  np.node_port = 30080;
  np.external_ips = {ip("198.51.100.50")};
  ports.push_back(np);

  auto lb = service_port("lb-local", "10.96.0.12", 443, three, local_one);
  lb.external_traffic_policy = TrafficPolicy::Local;
  lb.node_port = 30443;
  lb.load_balancer_ips = {ip("198.51.100.60")};
  lb.load_balancer_source_ranges = {cidr("198.51.100.0/28"), cidr("203.0.113.0/24")};
  ports.push_back(lb);

  auto lb_none = service_port("lb-nolocal", "10.96.0.13", 443, three, {});
  lb_none.external_traffic_policy = TrafficPolicy::Local;
  lb_none.load_balancer_ips = {ip("198.51.100.61")};
  ports.push_back(lb_none);

  auto itp = service_port("itp", "10.96.0.14", 80, three, {});
  itp.internal_traffic_policy = TrafficPolicy::Local;
  ports.push_back(itp);

  ports.push_back(service_port("empty", "10.96.0.15", 53, {}, {}, Protocol::UDP));

  auto sticky = service_port("sticky", "10.96.0.16", 80, three, local_one);
  sticky.affinity_timeout_seconds = 600;
  sticky.node_port = 30016;
  ports.push_back(sticky);

  ports.push_back(service_port("sctp", "10.96.0.17", 9000, {ep("10.244.3.3", 9000)}, {}, Protocol::SCTP));
  ports.push_back(service_port("dns", "10.96.0.18", 53, three, {}, Protocol::UDP));

  // IPv6
  const std::vector<model::EndpointAddress> v6 = {ep("fd00:10:244:1::2", 8080), ep("fd00:10:244:2::2", 8080)};
  ports.push_back(service_port("web6", "fd00:10:96::10", 80, v6, {v6[0]}));
  auto np6 = service_port("nodeport6", "fd00:10:96::11", 80, v6, {});
  np6.node_port = 30081;
  np6.external_traffic_policy = TrafficPolicy::Local;
  np6.load_balancer_ips = {ip("2001:db8:5::1")};
  np6.load_balancer_source_ranges = {cidr("2001:db8::/32")};
  ports.push_back(np6);
  auto sticky6 = service_port("sticky6", "fd00:10:96::12", 80, v6, {});
  sticky6.affinity_timeout_seconds = 10800;
  ports.push_back(sticky6);
  ports.push_back(service_port("empty6", "fd00:10:96::13", 80, {}, {}));
  return ports;
}

inline ir::Ruleset rich_ruleset() { return compile(rich_ports(), rich_node()).ruleset; }

inline model::IPAddress v4_from(uint32_t n) {
  return model::IPAddress::v4(static_cast<uint8_t>(n >> 24), static_cast<uint8_t>(n >> 16),
                              static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n));
}

// `services` ClusterIP TCP services with `endpoints` endpoints each (a quarter
// local); every third has a NodePort.
inline std::vector<model::ServicePortState> synthetic_ports(int services, int endpoints) {
  std::vector<model::ServicePortState> ports;
  ports.reserve(static_cast<size_t>(services));
  uint32_t pod = (10u << 24) | (244u << 16);
  for (int s = 0; s < services; ++s) {
    model::ServicePortState sp;
    sp.name.service = {"bench", "svc-" + std::to_string(s)};
    sp.name.port_name = "http";
    sp.cluster_ip = v4_from((10u << 24) | (96u << 16) | static_cast<uint32_t>(s + 10));
    sp.port = 80;
    if (s % 3 == 0) sp.node_port = static_cast<uint16_t>(30000 + s % 30000);
    for (int e = 0; e < endpoints; ++e) {
      model::EndpointAddress a{v4_from(pod++), 8080};
      sp.cluster_endpoints.push_back(a);
      if (e % 4 == 0) sp.local_endpoints.push_back(a);
    }
    ports.push_back(std::move(sp));
  }
  return ports;
}

inline model::NodeConfig synthetic_node() {
  model::NodeConfig node;
  node.node_name = "node-a";
  node.node_ips = {model::IPAddress::v4(192, 0, 2, 10)};
  node.nodeport_ips = node.node_ips;
  node.cluster_cidrs = {cidr("10.244.0.0/16")};
  node.service_cidrs = {cidr("10.96.0.0/12")};
  return node;
}

}  // namespace svcproxy::dataplane::testing
