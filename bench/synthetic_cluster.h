// Synthetic clusters for benchmarks: S services, each with one TCP port and
// E ready endpoints (a quarter of them on this node); every third service is a
// NodePort; optionally 1% use ClientIP affinity (the expensive shape).
#pragma once

#include <string>

#include "model/node_config.h"
#include "model/objects.h"

namespace svcproxy::bench {

inline model::IPAddress v4(uint32_t n) {
  return model::IPAddress::v4(static_cast<uint8_t>(n >> 24), static_cast<uint8_t>(n >> 16),
                              static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n));
}

inline model::ClusterState synthetic_cluster(int services, int endpoints_per_service, bool affinity = false) {
  model::ClusterState cluster;
  uint32_t pod = (10u << 24) | (244u << 16);  // 10.244.0.0
  for (int s = 0; s < services; ++s) {
    model::Service svc;
    svc.ref = {"bench", "svc-" + std::to_string(s)};
    svc.type = s % 3 == 0 ? model::ServiceType::NodePort : model::ServiceType::ClusterIP;
    svc.cluster_ips = {v4((10u << 24) | (96u << 16) | static_cast<uint32_t>(s + 10))};
    model::ServicePort port;
    port.name = "http";
    port.port = 80;
    port.target_port.number = 8080;
    if (svc.type == model::ServiceType::NodePort) port.node_port = static_cast<uint16_t>(30000 + s % 30000);
    svc.ports = {port};
    svc.session_affinity_client_ip = affinity && s % 100 == 0;
    cluster.services.push_back(std::move(svc));

    model::EndpointSlice slice;
    slice.ref = {"bench", "svc-" + std::to_string(s) + "-abcde"};
    slice.service_name = "svc-" + std::to_string(s);
    slice.ports = {model::EndpointPort{"http", model::Protocol::TCP, 8080}};
    for (int e = 0; e < endpoints_per_service; ++e) {
      model::Endpoint ep;
      ep.address = v4(pod++);
      ep.node_name = e % 4 == 0 ? "node-a" : "node-b";
      slice.endpoints.push_back(std::move(ep));
    }
    cluster.endpoint_slices.push_back(std::move(slice));
  }
  cluster.sort();
  return cluster;
}

inline model::NodeConfig synthetic_node() {
  model::NodeConfig node;
  node.node_name = "node-a";
  node.node_ips = {model::IPAddress::v4(192, 0, 2, 10)};
  node.nodeport_ips = node.node_ips;
  node.cluster_cidrs = {*model::CIDR::parse("10.244.0.0/16")};
  node.service_cidrs = {*model::CIDR::parse("10.96.0.0/12")};
  return node;
}

}  // namespace svcproxy::bench
