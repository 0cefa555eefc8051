// kube-proxy's semantics over the model: which service ports exist on this
// node, on which addresses, and which endpoints each one may use. This is the
// single place those rules live; the nftables compiler and the userspace proxy
// both consume ServicePortState and never look at raw objects.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "model/ip.h"
#include "model/node_config.h"
#include "model/objects.h"

namespace svcproxy::model {

struct EndpointAddress {
  IPAddress ip;
  uint16_t port = 0;
  std::string str() const { return format_endpoint(ip, port); }
  auto operator<=>(const EndpointAddress&) const = default;
};

// Identity of one service port in one family, stable across updates.
struct ServicePortName {
  ObjectRef service;
  std::string port_name;  // may be empty for single-port services
  Protocol protocol = Protocol::TCP;
  IPFamily family = IPFamily::V4;
  // "ns/name/tcp/portname" (port name omitted when empty).
  std::string str() const;
  auto operator<=>(const ServicePortName&) const = default;
};

struct ServicePortState {
  ServicePortName name;
  uint16_t port = 0;
  IPAddress cluster_ip;
  uint16_t node_port = 0;  // 0: none
  std::vector<IPAddress> external_ips;        // this family only, sorted
  std::vector<IPAddress> load_balancer_ips;   // this family only, sorted
  std::vector<CIDR> load_balancer_source_ranges;  // this family only, sorted
  TrafficPolicy external_traffic_policy = TrafficPolicy::Cluster;
  TrafficPolicy internal_traffic_policy = TrafficPolicy::Cluster;
  std::optional<uint32_t> affinity_timeout_seconds;  // set: ClientIP affinity
  uint16_t health_check_node_port = 0;

  // Usable endpoints cluster-wide and on this node (CategorizeEndpoints),
  // sorted and deduplicated by ip:port.
  std::vector<EndpointAddress> cluster_endpoints;
  std::vector<EndpointAddress> local_endpoints;
  // Ready endpoints on this node (healthCheckNodePort answers with this).
  size_t local_ready_count = 0;

  bool has_external_addresses() const {
    return node_port != 0 || !external_ips.empty() || !load_balancer_ips.empty();
  }
  // Endpoints used for traffic to the ClusterIP.
  const std::vector<EndpointAddress>& internal_endpoints() const {
    return internal_traffic_policy == TrafficPolicy::Local ? local_endpoints : cluster_endpoints;
  }
  // Endpoints used for traffic from outside to NodePort/external/LB IPs.
  const std::vector<EndpointAddress>& external_endpoints() const {
    return external_traffic_policy == TrafficPolicy::Local ? local_endpoints : cluster_endpoints;
  }
  auto operator<=>(const ServicePortState&) const = default;
};

// Why a service (or one of its ports) is not proxied; reported, not fatal.
struct SkipReason {
  ObjectRef object;
  std::string reason;
};

struct ProxyState {
  std::vector<ServicePortState> ports;  // sorted by name
  std::vector<SkipReason> skipped;
};

// Builds the per-port view of the cluster for this node. Pure: the same
// inputs give the same output, byte for byte. It is build_service_state over
// every service: their results, concatenated in service order, are this.
ProxyState build_proxy_state(const ClusterState& cluster, const NodeConfig& node);

// The per-port view of ONE service: the Service and the EndpointSlices
// labelled with its name, merged per service as kube-proxy's
// EndpointSliceCache does. Slices may come in any order; those of another
// service or without an IP address type are ignored. The daemon calls this
// for the services that changed (O(that service), whatever the cluster's
// size). Ports sorted by name; skip reasons name the service.
ProxyState build_service_state(const Service& service, std::span<const EndpointSlice* const> slices,
                               const NodeConfig& node);
ProxyState build_service_state(const Service& service, const std::vector<EndpointSlice>& slices,
                               const NodeConfig& node);

}  // namespace svcproxy::model
