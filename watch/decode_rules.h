// Internal to watch/: the field rules of the kinds svcproxy reads, written
// once over Field<Node> (field.h) and shared by the YAML manifests decoder,
// the JSON manifests decoder and the API server decoder. Every field read is
// validated here; a field that cannot be used throws FieldError.
#pragma once

#include <array>
#include <cctype>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "model/objects.h"
#include "watch/field.h"

namespace svcproxy::watch::detail {

// ---- field readers shared by the kinds ------------------------------------

template <class F>
uint16_t port_number(const F& field, int64_t low, bool required) {
  const auto value = field.integer(low, 65535);
  if (!value) {
    if (required) field.fail("required");
    return 0;
  }
  return static_cast<uint16_t>(*value);
}

template <class F>
model::Protocol protocol(const F& field) {
  const std::string_view text = field.text();
  if (text.empty()) return model::Protocol::TCP;
  if (const auto parsed = model::parse_protocol(text)) return *parsed;
  field.fail("unknown protocol " + quote(text) + " (want TCP, UDP or SCTP)");
}

template <class F>
model::IPAddress ip_address(const F& field) {
  const std::string_view text = field.text();
  if (const auto ip = model::IPAddress::parse(text)) return *ip;
  field.fail(text.empty() ? std::string("required") : "invalid IP address " + quote(text));
}

template <class F>
std::vector<model::IPAddress> ip_addresses(const F& list) {
  std::vector<model::IPAddress> out;
  for (const F& item : list.items()) out.push_back(ip_address(item));
  return out;
}

template <class F>
model::CIDR cidr(const F& field, std::string_view text) {
  if (const auto parsed = model::CIDR::parse(text)) return *parsed;
  field.fail(text.empty() ? std::string("required") : "invalid CIDR " + quote(text));
}

template <class F>
std::vector<model::CIDR> cidrs(const F& list) {
  std::vector<model::CIDR> out;
  for (const F& item : list.items()) out.push_back(cidr(item, item.text()));
  return out;
}

template <class F>
model::TrafficPolicy traffic_policy(const F& field) {
  const std::string_view text = field.text();
  // "Global" is the pre-1.22 spelling of Cluster for externalTrafficPolicy.
  if (text.empty() || text == "Cluster" || text == "Global") return model::TrafficPolicy::Cluster;
  if (text == "Local") return model::TrafficPolicy::Local;
  field.fail("unknown traffic policy " + quote(text) + " (want Cluster or Local)");
}

inline std::string_view trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t\r\n";
  const size_t first = text.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(kSpace) - first + 1);
}

// metadata.name (required) and, for namespaced kinds, metadata.namespace
// (absent means "default", as kubectl apply would have it).
template <class F>
model::ObjectRef object_ref(const F& object, bool namespaced) {
  const F metadata = object.get("metadata");
  model::ObjectRef ref;
  const F name = metadata.get("name");
  ref.name = name.text();
  if (ref.name.empty()) name.fail("required");
  if (namespaced) {
    ref.ns = metadata.get("namespace").text();
    if (ref.ns.empty()) ref.ns = "default";
  }
  return ref;
}

// ---- Service ------------------------------------------------------------------

template <class F>
model::ServiceType service_type(const F& field) {
  const std::string_view text = field.text();
  if (text.empty() || text == "ClusterIP") return model::ServiceType::ClusterIP;
  if (text == "NodePort") return model::ServiceType::NodePort;
  if (text == "LoadBalancer") return model::ServiceType::LoadBalancer;
  if (text == "ExternalName") return model::ServiceType::ExternalName;
  field.fail("unknown service type " + quote(text) +
             " (want ClusterIP, NodePort, LoadBalancer or ExternalName)");
}

template <class F>
model::TargetPort target_port(const F& field, uint16_t port) {
  const std::string_view text = field.text();
  if (text.empty()) return {.number = port, .name = ""};
  const bool numeric = std::isdigit(static_cast<unsigned char>(text[0])) ||
                       (text.size() > 1 && (text[0] == '-' || text[0] == '+') &&
                        std::isdigit(static_cast<unsigned char>(text[1])));
  if (numeric) return {.number = port_number(field, 1, true), .name = ""};
  return {.number = 0, .name = std::string(text)};
}

template <class F>
model::ServicePort service_port(const F& field) {
  field.expect_map();
  model::ServicePort port;
  port.name = field.get("name").text();
  port.protocol = protocol(field.get("protocol"));
  port.port = port_number(field.get("port"), 1, true);
  port.target_port = target_port(field.get("targetPort"), port.port);
  port.node_port = port_number(field.get("nodePort"), 0, false);
  return port;
}

template <class F>
model::Service decode_service(const F& object, model::ObjectRef ref) {
  model::Service service;
  service.ref = std::move(ref);
  const F metadata = object.get("metadata");
  service.resource_version = metadata.get("resourceVersion").text();
  service.has_service_proxy_name =
      metadata.get("labels").get("service.kubernetes.io/service-proxy-name").exists();

  const F spec = object.get("spec");
  service.type = service_type(spec.get("type"));

  // spec.clusterIPs, falling back to spec.clusterIP; "" or "None" first: headless.
  const F list = spec.get("clusterIPs");
  const auto cluster_ips = list.items();
  if (!cluster_ips.empty()) {
    const F first = cluster_ips.front();
    const std::string_view first_ip = first.text();
    service.headless = first_ip.empty() || first_ip == "None";
    if (!service.headless) {
      for (const F& ip : cluster_ips) service.cluster_ips.push_back(ip_address(ip));
    }
  } else {
    const F single = spec.get("clusterIP");
    const std::string_view first_ip = single.text();
    service.headless = first_ip.empty() || first_ip == "None";
    if (!service.headless) service.cluster_ips.push_back(ip_address(single));
  }

  for (const F& port : spec.get("ports").items()) service.ports.push_back(service_port(port));
  service.external_ips = ip_addresses(spec.get("externalIPs"));

  for (const F& ingress : object.get("status").get("loadBalancer").get("ingress").items()) {
    ingress.expect_map();
    // ipMode Proxy: the load balancer proxies to the node itself, so
    // kube-proxy must not short-circuit traffic to that IP. Hostname-only
    // entries carry nothing to program.
    const F ip = ingress.get("ip");
    if (ingress.get("ipMode").text() == "Proxy" || !ip.present()) continue;
    service.load_balancer_ips.push_back(ip_address(ip));
  }
  for (const F& range : spec.get("loadBalancerSourceRanges").items()) {
    service.load_balancer_source_ranges.push_back(cidr(range, trim(range.text())));
  }

  service.external_traffic_policy = traffic_policy(spec.get("externalTrafficPolicy"));
  service.internal_traffic_policy = traffic_policy(spec.get("internalTrafficPolicy"));

  const F affinity = spec.get("sessionAffinity");
  const std::string_view affinity_text = affinity.text();
  if (affinity_text == "ClientIP") {
    service.session_affinity_client_ip = true;
  } else if (!affinity_text.empty() && affinity_text != "None") {
    affinity.fail("unknown session affinity " + quote(affinity_text) + " (want None or ClientIP)");
  }
  const F timeout = spec.get("sessionAffinityConfig").get("clientIP").get("timeoutSeconds");
  service.session_affinity_timeout_seconds =
      static_cast<uint32_t>(timeout.integer(1, 86400).value_or(10800));
  service.health_check_node_port = port_number(spec.get("healthCheckNodePort"), 0, false);
  return service;
}

// ---- EndpointSlice -------------------------------------------------------------

template <class F>
model::AddressType address_type(const F& field) {
  const std::string_view text = field.text();
  if (text == "IPv4") return model::AddressType::IPv4;
  if (text == "IPv6") return model::AddressType::IPv6;
  if (text == "FQDN") return model::AddressType::FQDN;
  field.fail(text.empty() ? std::string("required")
                          : "unknown address type " + quote(text) + " (want IPv4, IPv6 or FQDN)");
}

template <class F>
std::vector<std::string> hint_names(const F& list) {
  std::vector<std::string> names;
  for (const F& hint : list.items()) names.emplace_back(hint.get("name").text());
  return names;
}

template <class F>
model::Endpoint endpoint(const F& field, model::AddressType type) {
  field.expect_map();
  model::Endpoint endpoint;
  const F addresses = field.get("addresses");
  const auto items = addresses.items();
  if (type != model::AddressType::FQDN) {
    if (items.empty()) addresses.fail("required: at least one address");
    const F first = items.front();
    const model::IPAddress ip = ip_address(first);
    const model::IPFamily want = type == model::AddressType::IPv4 ? model::IPFamily::V4 : model::IPFamily::V6;
    if (ip.family != want) {
      first.fail(quote(first.text()) + " is not an " + std::string(model::to_string(want)) +
                 " address (addressType " + std::string(model::to_string(want)) + ")");
    }
    endpoint.address = ip;
  }
  const F conditions = field.get("conditions");
  endpoint.conditions.ready = conditions.get("ready").boolean(true);
  endpoint.conditions.serving = conditions.get("serving").boolean(true);
  endpoint.conditions.terminating = conditions.get("terminating").boolean(false);
  endpoint.node_name = field.get("nodeName").text();
  endpoint.zone = field.get("zone").text();
  const F hints = field.get("hints");
  endpoint.hint_zones = hint_names(hints.get("forZones"));
  endpoint.hint_nodes = hint_names(hints.get("forNodes"));
  return endpoint;
}

template <class F>
model::EndpointPort endpoint_port(const F& field) {
  field.expect_map();
  model::EndpointPort port;
  port.name = field.get("name").text();
  port.protocol = protocol(field.get("protocol"));
  if (const auto number = field.get("port").integer(1, 65535)) {
    port.port = static_cast<uint16_t>(*number);
  }
  return port;
}

template <class F>
model::EndpointSlice decode_endpoint_slice(const F& object, model::ObjectRef ref) {
  model::EndpointSlice slice;
  slice.ref = std::move(ref);
  const F metadata = object.get("metadata");
  slice.resource_version = metadata.get("resourceVersion").text();
  slice.service_name = metadata.get("labels").get("kubernetes.io/service-name").text();
  slice.last_change_trigger_time =
      metadata.get("annotations").get("endpoints.kubernetes.io/last-change-trigger-time").text();
  slice.address_type = address_type(object.get("addressType"));
  for (const F& item : object.get("endpoints").items()) {
    slice.endpoints.push_back(endpoint(item, slice.address_type));
  }
  for (const F& item : object.get("ports").items()) slice.ports.push_back(endpoint_port(item));
  return slice;
}

// ---- Node and ServiceCIDR -------------------------------------------------------

template <class F>
model::Node decode_node(const F& object, model::ObjectRef ref) {
  model::Node node;
  node.name = std::move(ref.name);
  const F metadata = object.get("metadata");
  node.resource_version = metadata.get("resourceVersion").text();
  node.zone = metadata.get("labels").get("topology.kubernetes.io/zone").text();
  node.being_deleted = metadata.get("deletionTimestamp").present();

  const F spec = object.get("spec");
  const F pod_cidrs = spec.get("podCIDRs");
  const F pod_cidr = spec.get("podCIDR");
  if (pod_cidrs.present()) {
    node.pod_cidrs = cidrs(pod_cidrs);
  } else if (pod_cidr.present()) {
    node.pod_cidrs.push_back(cidr(pod_cidr, pod_cidr.text()));
  }
  for (const F& taint : spec.get("taints").items()) {
    taint.expect_map();
    node.taints.push_back({.key = std::string(taint.get("key").text()),
                           .effect = std::string(taint.get("effect").text())});
  }
  for (const F& address : object.get("status").get("addresses").items()) {
    address.expect_map();
    if (address.get("type").text() == "InternalIP") {
      node.internal_ips.push_back(ip_address(address.get("address")));
    }
  }
  return node;
}

template <class F>
model::ServiceCIDR decode_service_cidr(const F& object, model::ObjectRef ref) {
  model::ServiceCIDR service_cidr;
  service_cidr.name = std::move(ref.name);
  service_cidr.cidrs = cidrs(object.get("spec").get("cidrs"));
  return service_cidr;
}

// ---- kinds and API versions -------------------------------------------------------

enum class KindId { Service, EndpointSlice, Node, ServiceCIDR };

struct KindSpec {
  KindId id;
  std::string_view kind;
  std::string_view group;  // "" for the core API
  std::array<std::string_view, 2> versions;  // unused slots empty
  bool namespaced;
};

inline constexpr std::array<KindSpec, 4> kKinds{{
    {KindId::Service, "Service", "", {"v1", ""}, true},
    {KindId::EndpointSlice, "EndpointSlice", "discovery.k8s.io", {"v1", ""}, true},
    {KindId::Node, "Node", "", {"v1", ""}, false},
    // v1beta1 (Kubernetes 1.31-1.32) has the same spec.cidrs.
    {KindId::ServiceCIDR, "ServiceCIDR", "networking.k8s.io", {"v1", "v1beta1"}, false},
}};

inline const KindSpec* find_kind(std::string_view kind) {
  for (const KindSpec& spec : kKinds) {
    if (spec.kind == kind) return &spec;
  }
  return nullptr;
}

inline const KindSpec& kind_spec(KindId id) { return kKinds[static_cast<size_t>(id)]; }

enum class ApiMatch { Yes, OtherGroup, OtherVersion };

inline ApiMatch match_api_version(const KindSpec& spec, std::string_view api_version) {
  if (api_version.empty()) return ApiMatch::Yes;  // an item of a typed list, or hand-written
  const size_t slash = api_version.find('/');
  const std::string_view group = slash == std::string_view::npos ? "" : api_version.substr(0, slash);
  const std::string_view version =
      slash == std::string_view::npos ? api_version : api_version.substr(slash + 1);
  if (group != spec.group) return ApiMatch::OtherGroup;
  for (const std::string_view known : spec.versions) {
    if (!known.empty() && known == version) return ApiMatch::Yes;
  }
  return ApiMatch::OtherVersion;
}

// Checks the apiVersion of a known kind and decodes it into `state`.
// `ref` must come from object_ref(object, spec.namespaced).
template <class F>
void decode_kind(const F& object, const KindSpec& spec, model::ObjectRef ref, model::ClusterState& state) {
  switch (spec.id) {
    case KindId::Service:
      state.services.push_back(decode_service(object, std::move(ref)));
      break;
    case KindId::EndpointSlice:
      state.endpoint_slices.push_back(decode_endpoint_slice(object, std::move(ref)));
      break;
    case KindId::Node:
      state.nodes.push_back(decode_node(object, std::move(ref)));
      break;
    case KindId::ServiceCIDR:
      state.service_cidrs.push_back(decode_service_cidr(object, std::move(ref)));
      break;
  }
}

}  // namespace svcproxy::watch::detail
