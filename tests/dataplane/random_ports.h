// Random service ports for compiler and partial-sync tests: small address
// pools so that address conflicts, shared endpoints and map changes are
// common.
#pragma once

#include <algorithm>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "model/node_config.h"
#include "model/service_ports.h"

namespace svcproxy::dataplane::testing {

using model::EndpointAddress;
using model::IPAddress;
using model::ServicePortState;

inline model::NodeConfig node() {
  model::NodeConfig n;
  n.node_name = "node-a";
  n.node_ips = {IPAddress::v4(203, 0, 113, 1), *IPAddress::parse("2001:db8::1")};
  n.nodeport_ips = n.node_ips;
  n.cluster_cidrs = {*model::CIDR::parse("10.244.0.0/16")};
  n.service_cidrs = {*model::CIDR::parse("10.96.0.0/16")};
  return n;
}

// A TCP port "http" of ns/NAME on 10.96.0.IP:80 with endpoints 10.244.0.E:8080.
inline ServicePortState port(const std::string& name, uint8_t ip, const std::vector<uint8_t>& endpoints) {
  ServicePortState sp;
  sp.name.service = {"ns", name};
  sp.name.port_name = "http";
  sp.name.protocol = model::Protocol::TCP;
  sp.name.family = model::IPFamily::V4;
  sp.cluster_ip = IPAddress::v4(10, 96, 0, ip);
  sp.port = 80;
  for (uint8_t e : endpoints) sp.cluster_endpoints.push_back({IPAddress::v4(10, 244, 0, e), 8080});
  return sp;
}

// A random service port; small address pools make conflicts common.
inline ServicePortState random_port(std::mt19937& rng, int service, int port_index) {
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  ServicePortState sp;
  sp.name.service = {"ns", "svc" + std::to_string(service)};
  sp.name.port_name = "p" + std::to_string(port_index);
  sp.name.protocol = pick(4) == 0 ? model::Protocol::UDP : model::Protocol::TCP;
  const bool v6 = service % 5 == 0;
  sp.name.family = v6 ? model::IPFamily::V6 : model::IPFamily::V4;
  sp.cluster_ip = v6 ? *IPAddress::parse("fd00::" + std::to_string(1 + pick(40)))
                     : IPAddress::v4(10, 96, 0, static_cast<uint8_t>(1 + pick(60)));
  sp.port = static_cast<uint16_t>(80 + port_index);
  if (pick(3) == 0) sp.node_port = static_cast<uint16_t>(30000 + pick(20));
  if (pick(4) == 0) sp.external_ips.push_back(v6 ? *IPAddress::parse("2001:db8:5::" + std::to_string(1 + pick(5)))
                                                 : IPAddress::v4(198, 51, 100, static_cast<uint8_t>(1 + pick(8))));
  if (pick(5) == 0 && !v6) {
    sp.load_balancer_ips.push_back(IPAddress::v4(198, 51, 100, static_cast<uint8_t>(100 + pick(5))));
    if (pick(2)) sp.load_balancer_source_ranges.push_back(*model::CIDR::parse("198.51.100.0/28"));
  }
  if (pick(3) == 0) sp.external_traffic_policy = model::TrafficPolicy::Local;
  if (pick(6) == 0) sp.internal_traffic_policy = model::TrafficPolicy::Local;
  if (pick(8) == 0) sp.affinity_timeout_seconds = 100u * static_cast<uint32_t>(1 + pick(2));
  const int n = pick(5);
  for (int e = 0; e < n; ++e) {
    EndpointAddress ep{v6 ? *IPAddress::parse("fd00:10:244::" + std::to_string(1 + pick(30)))
                          : IPAddress::v4(10, 244, static_cast<uint8_t>(pick(3)), static_cast<uint8_t>(1 + pick(30))),
                       static_cast<uint16_t>(8080 + pick(2))};
    if (std::find(sp.cluster_endpoints.begin(), sp.cluster_endpoints.end(), ep) == sp.cluster_endpoints.end())
      sp.cluster_endpoints.push_back(ep);
  }
  std::sort(sp.cluster_endpoints.begin(), sp.cluster_endpoints.end());
  for (const auto& ep : sp.cluster_endpoints)
    if (pick(2) == 0) sp.local_endpoints.push_back(ep);
  return sp;
}

inline std::vector<ServicePortState> flatten(const std::map<int, std::vector<ServicePortState>>& services) {
  std::vector<ServicePortState> out;
  for (const auto& [id, ports] : services) out.insert(out.end(), ports.begin(), ports.end());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace svcproxy::dataplane::testing
