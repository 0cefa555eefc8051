// The Kubernetes objects svcproxy consumes, as plain value types. Decoders
// (manifests, API server) fill these in after validating every field they
// read; everything downstream can trust them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/ip.h"

namespace svcproxy::model {

enum class Protocol : uint8_t { TCP = 6, UDP = 17, SCTP = 132 };

std::string_view to_string(Protocol protocol);  // "TCP", "UDP", "SCTP"
std::string_view to_lower(Protocol protocol);   // "tcp", "udp", "sctp"
std::optional<Protocol> parse_protocol(std::string_view text);  // "TCP"...; empty -> nullopt

enum class ServiceType : uint8_t { ClusterIP, NodePort, LoadBalancer, ExternalName };
enum class TrafficPolicy : uint8_t { Cluster, Local };

struct ObjectRef {
  std::string ns;
  std::string name;
  std::string str() const { return ns.empty() ? name : ns + "/" + name; }
  auto operator<=>(const ObjectRef&) const = default;
};

// targetPort is either a number or a name resolved through EndpointSlice
// port names; an absent targetPort defaults to the service port (number).
struct TargetPort {
  uint16_t number = 0;  // 0 when named
  std::string name;     // empty when numeric
  auto operator<=>(const TargetPort&) const = default;
};

struct ServicePort {
  std::string name;
  Protocol protocol = Protocol::TCP;
  uint16_t port = 0;
  TargetPort target_port;
  uint16_t node_port = 0;  // 0: none
  auto operator<=>(const ServicePort&) const = default;
};

struct Service {
  ObjectRef ref;
  std::string resource_version;
  ServiceType type = ServiceType::ClusterIP;
  // spec.clusterIPs (falls back to spec.clusterIP); empty or "None" -> headless.
  std::vector<IPAddress> cluster_ips;
  bool headless = false;
  std::vector<ServicePort> ports;
  std::vector<IPAddress> external_ips;
  // status.loadBalancer.ingress[].ip, without those whose ipMode is Proxy.
  std::vector<IPAddress> load_balancer_ips;
  std::vector<CIDR> load_balancer_source_ranges;
  TrafficPolicy external_traffic_policy = TrafficPolicy::Cluster;
  TrafficPolicy internal_traffic_policy = TrafficPolicy::Cluster;
  bool session_affinity_client_ip = false;
  uint32_t session_affinity_timeout_seconds = 10800;
  uint16_t health_check_node_port = 0;
  // Label service.kubernetes.io/service-proxy-name is present: not ours.
  bool has_service_proxy_name = false;
  auto operator<=>(const Service&) const = default;
};

enum class AddressType : uint8_t { IPv4, IPv6, FQDN };

struct EndpointConditions {
  bool ready = true;        // absent -> true
  bool serving = true;      // absent -> true
  bool terminating = false; // absent -> false
  auto operator<=>(const EndpointConditions&) const = default;
};

struct Endpoint {
  // addresses[0] only, as kube-proxy. Absent for FQDN slices.
  std::optional<IPAddress> address;
  EndpointConditions conditions;
  std::string node_name;
  std::string zone;
  std::vector<std::string> hint_zones;  // hints.forZones[].name
  std::vector<std::string> hint_nodes;  // hints.forNodes[].name
  auto operator<=>(const Endpoint&) const = default;
};

struct EndpointPort {
  std::string name;
  Protocol protocol = Protocol::TCP;
  std::optional<uint16_t> port;  // absent -> the port is ignored
  auto operator<=>(const EndpointPort&) const = default;
};

struct EndpointSlice {
  ObjectRef ref;
  std::string resource_version;
  // Label kubernetes.io/service-name; empty -> the slice is ignored.
  std::string service_name;
  AddressType address_type = AddressType::IPv4;
  std::vector<Endpoint> endpoints;
  std::vector<EndpointPort> ports;
  // Annotation endpoints.kubernetes.io/last-change-trigger-time, verbatim.
  std::string last_change_trigger_time;
  auto operator<=>(const EndpointSlice&) const = default;
};

struct NodeTaint {
  std::string key;
  std::string effect;
  auto operator<=>(const NodeTaint&) const = default;
};

struct Node {
  std::string name;
  std::string resource_version;
  std::string zone;  // label topology.kubernetes.io/zone
  std::vector<CIDR> pod_cidrs;
  std::vector<IPAddress> internal_ips;  // status.addresses type InternalIP
  bool being_deleted = false;           // metadata.deletionTimestamp set
  std::vector<NodeTaint> taints;
  auto operator<=>(const Node&) const = default;
};

struct ServiceCIDR {
  std::string name;
  std::vector<CIDR> cidrs;
  auto operator<=>(const ServiceCIDR&) const = default;
};

// Everything the proxy knows about the cluster at one moment. Sorted by
// reference so that equal clusters compare and compile identically.
struct ClusterState {
  std::vector<Service> services;
  std::vector<EndpointSlice> endpoint_slices;
  std::vector<Node> nodes;
  std::vector<ServiceCIDR> service_cidrs;

  void sort();
  auto operator<=>(const ClusterState&) const = default;
};

}  // namespace svcproxy::model
