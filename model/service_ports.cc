// kube-proxy's service and endpoint semantics (pkg/proxy/serviceport.go,
// endpointslicecache.go, topology.go), recomputed from scratch on every call:
// for the whole cluster, or for one service.
//
// Cost: one sort of the services and one of the slices, then a single merge
// walk that pairs each service with its slices; each slice endpoint is looked
// at once per matching service port. Nothing is O(services x slices).

#include "model/service_ports.h"

#include <algorithm>
#include <array>
#include <map>
#include <span>
#include <tuple>

namespace svcproxy::model {

namespace {

// ---------------------------------------------------------------------------
// Input ordering and de-duplication.

// Sorted by reference; objects with the same reference (malformed input) are
// reported and all but the first (by full value) dropped, so the result does
// not depend on input order.
template <typename T>
std::vector<const T*> unique_by_ref(const std::vector<T>& objects, std::string_view kind,
                                    std::vector<SkipReason>& skipped) {
  std::vector<const T*> sorted;
  sorted.reserve(objects.size());
  for (const T& object : objects) sorted.push_back(&object);
  std::sort(sorted.begin(), sorted.end(), [](const T* a, const T* b) {
    if (a->ref != b->ref) return a->ref < b->ref;
    return *a < *b;
  });
  std::vector<const T*> unique;
  unique.reserve(sorted.size());
  for (const T* object : sorted) {
    if (!unique.empty() && unique.back()->ref == object->ref) {
      skipped.push_back({object->ref, "duplicate " + std::string(kind) + "; using the first by value"});
      continue;
    }
    unique.push_back(object);
  }
  return unique;
}

std::optional<IPFamily> slice_family(AddressType type) {
  switch (type) {
    case AddressType::IPv4:
      return IPFamily::V4;
    case AddressType::IPv6:
      return IPFamily::V6;
    case AddressType::FQDN:
      return std::nullopt;
  }
  return std::nullopt;
}

// The slices kube-proxy reads, ordered by (namespace, service, slice name):
// labelled with a service name and of an IP address type.
std::vector<const EndpointSlice*> proxied_slices(const ClusterState& cluster,
                                                 std::vector<SkipReason>& skipped) {
  std::vector<const EndpointSlice*> slices;
  for (const EndpointSlice* slice : unique_by_ref(cluster.endpoint_slices, "EndpointSlice", skipped)) {
    if (slice->service_name.empty() || !slice_family(slice->address_type)) continue;
    slices.push_back(slice);
  }
  // Already sorted by (namespace, slice name); a stable sort on the service
  // keeps slice-name order inside each service.
  std::stable_sort(slices.begin(), slices.end(), [](const EndpointSlice* a, const EndpointSlice* b) {
    return std::tie(a->ref.ns, a->service_name) < std::tie(b->ref.ns, b->service_name);
  });
  return slices;
}

// ---------------------------------------------------------------------------
// Service-level attributes (newBaseServiceInfo).

// apiservice.ExternallyAccessible: the type decides, plus externalIPs on a
// ClusterIP service.
bool externally_accessible(const Service& service) {
  return service.type == ServiceType::LoadBalancer || service.type == ServiceType::NodePort ||
         (service.type == ServiceType::ClusterIP && !service.external_ips.empty());
}

template <typename T, typename FamilyOf>
std::vector<T> of_family(const std::vector<T>& values, IPFamily family, FamilyOf family_of) {
  std::vector<T> result;
  for (const T& value : values) {
    if (family_of(value) == family) result.push_back(value);
  }
  std::sort(result.begin(), result.end());
  result.erase(std::unique(result.begin(), result.end()), result.end());
  return result;
}

// spec.clusterIPs: the first address of each family (GetClusterIPByFamily).
std::array<std::optional<IPAddress>, 2> cluster_ip_by_family(const Service& service,
                                                             std::vector<SkipReason>& skipped) {
  std::array<std::optional<IPAddress>, 2> by_family;
  for (const IPAddress& ip : service.cluster_ips) {
    auto& slot = by_family[ip.family == IPFamily::V4 ? 0 : 1];
    if (slot) {
      if (*slot != ip) {
        skipped.push_back({service.ref, "clusterIPs: ignoring " + ip.str() + ", a second " +
                                            std::string(to_string(ip.family)) + " address"});
      }
      continue;
    }
    slot = ip;
  }
  return by_family;
}

// The ports kube-proxy creates, one per (name, protocol). Port 0 cannot be
// proxied. Duplicate (name, protocol) pairs are rejected by the API server;
// kube-proxy keeps the last one (its map is overwritten), and so do we.
std::vector<const ServicePort*> proxied_ports(const Service& service, std::vector<SkipReason>& skipped) {
  std::vector<const ServicePort*> ports;
  std::map<std::pair<std::string_view, Protocol>, size_t> position;
  for (const ServicePort& port : service.ports) {
    const std::string label =
        (port.name.empty() ? std::string() : port.name + "/") + std::string(to_string(port.protocol));
    if (port.port == 0) {
      skipped.push_back({service.ref, "port " + label + ": port number 0"});
      continue;
    }
    const auto [it, inserted] = position.try_emplace({port.name, port.protocol}, ports.size());
    if (!inserted) {
      skipped.push_back({service.ref, "port " + label + ": duplicate name and protocol; using the last"});
      ports[it->second] = &port;
      continue;
    }
    ports.push_back(&port);
  }
  return ports;
}

// ---------------------------------------------------------------------------
// Endpoints (EndpointSliceCache.addEndpoints, CategorizeEndpoints).

// A slice port that serves a service port, by (name, protocol).
struct SlicePortRef {
  const EndpointSlice* slice = nullptr;
  uint16_t port = 0;
};
using SlicePortIndex = std::map<std::pair<std::string_view, Protocol>, std::vector<SlicePortRef>>;

// Indexes the numbered ports of one service's slices (kept in slice order).
SlicePortIndex index_slice_ports(std::span<const EndpointSlice* const> slices) {
  SlicePortIndex index;
  for (const EndpointSlice* slice : slices) {
    for (const EndpointPort& port : slice->ports) {
      if (!port.port || *port.port == 0) continue;  // kube-proxy ignores these
      index[{port.name, port.protocol}].push_back({slice, *port.port});
    }
  }
  return index;
}

struct Candidate {
  EndpointAddress address;
  const Endpoint* endpoint = nullptr;
  bool local = false;
};

bool has(const std::vector<std::string>& names, const std::string& name) {
  return !name.empty() && std::find(names.begin(), names.end(), name) != names.end();
}

// Every endpoint of this family's slices that serves `port`, deduplicated by
// ip:port and sorted by it. On a duplicate the first (in slice-name order)
// wins, except that a copy that is not terminating beats a terminating one:
// kube-proxy 1.36+ (kubernetes PR 135593, issue 135266: a pod IP reused while
// the old Pod is still terminating). Its earlier "a local copy wins" rule is
// gone. kube-proxy walks slices in map order; slice-name order makes "first"
// deterministic where kube-proxy's pick is undefined.
std::vector<Candidate> collect_endpoints(const SlicePortIndex& index, IPFamily family, const ServicePort& port,
                                         const std::string& node_name) {
  std::vector<Candidate> candidates;
  const auto found = index.find({port.name, port.protocol});
  if (found == index.end()) return candidates;
  for (const SlicePortRef& ref : found->second) {
    if (slice_family(ref.slice->address_type) != family) continue;
    for (const Endpoint& endpoint : ref.slice->endpoints) {
      // addresses[0] only; a slice of the wrong family for its address is invalid.
      if (!endpoint.address || endpoint.address->family != family) continue;
      candidates.push_back(
          {{*endpoint.address, ref.port}, &endpoint, !node_name.empty() && endpoint.node_name == node_name});
    }
  }
  // Stable: equal addresses keep slice order, so "first" is well defined.
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const Candidate& a, const Candidate& b) { return a.address < b.address; });
  std::vector<Candidate> unique;
  unique.reserve(candidates.size());
  for (const Candidate& candidate : candidates) {
    if (!unique.empty() && unique.back().address == candidate.address) {
      if (unique.back().endpoint->conditions.terminating && !candidate.endpoint->conditions.terminating) {
        unique.back() = candidate;
      }
      continue;
    }
    unique.push_back(candidate);
  }
  return unique;
}

enum class TopologyMode { None, SameNode, SameZone };

// Hint names are compared as kube-proxy's sets.Has compares them: literally.
// So a node without a zone label (zone "") matches only a forZones hint whose
// name is "" (a valid label value, so the API server accepts it), never an
// ordinary zone. kube-proxy always has a node name; without one svcproxy
// treats no endpoint as local, and likewise no node hint as naming it.
bool hinted_for_zone(const Endpoint& ep, const NodeConfig& node) {
  return std::find(ep.hint_zones.begin(), ep.hint_zones.end(), node.zone) != ep.hint_zones.end();
}

bool hinted_for_node(const Endpoint& ep, const NodeConfig& node) { return has(ep.hint_nodes, node.node_name); }

// topologyModeFromHints (kube-proxy topology.go). Only ready endpoints count:
// node hints win when every one has a node hint and one names this node;
// otherwise zone hints under the same two conditions; otherwise none. Hints
// on endpoints that are not ready never decide anything. kube-proxy reads
// only the hints, never spec.trafficDistribution: the EndpointSlice
// controller turns PreferSameNode into forNodes (plus forZones, for older
// proxies) and PreferSameZone and its deprecated alias PreferClose into
// forZones.
TopologyMode topology_mode(const std::vector<Candidate>& endpoints, const NodeConfig& node) {
  bool any_ready = false;
  bool all_node_hints = true, node_match = false;
  bool all_zone_hints = true, zone_match = false;
  for (const Candidate& candidate : endpoints) {
    const Endpoint& ep = *candidate.endpoint;
    if (!ep.conditions.ready) continue;
    any_ready = true;
    if (ep.hint_nodes.empty()) {
      all_node_hints = false;
    } else if (hinted_for_node(ep, node)) {
      node_match = true;
    }
    if (ep.hint_zones.empty()) {
      all_zone_hints = false;
    } else if (hinted_for_zone(ep, node)) {
      zone_match = true;
    }
  }
  if (!any_ready) return TopologyMode::None;
  if (all_node_hints && node_match) return TopologyMode::SameNode;
  if (all_zone_hints && zone_match) return TopologyMode::SameZone;
  return TopologyMode::None;
}

// availableForTopology: no fallback here; the fallback is in choosing the mode.
bool available_for_topology(const Endpoint& ep, TopologyMode mode, const NodeConfig& node) {
  switch (mode) {
    case TopologyMode::None:
      return true;
    case TopologyMode::SameNode:
      return hinted_for_node(ep, node);
    case TopologyMode::SameZone:
      return hinted_for_zone(ep, node);
  }
  return false;
}

// Cluster set: ready endpoints (narrowed by topology hints), else serving and
// terminating ones. Local set: the same among local endpoints, without hints.
// Input is sorted and unique by address, and so is each output list.
void categorize(const std::vector<Candidate>& endpoints, const NodeConfig& node, ServicePortState& state) {
  const TopologyMode mode = topology_mode(endpoints, node);

  auto serving_terminating = [](const Candidate& c) {
    return c.endpoint->conditions.serving && c.endpoint->conditions.terminating;
  };
  auto collect = [&endpoints](auto keep) {
    std::vector<EndpointAddress> result;
    for (const Candidate& candidate : endpoints) {
      if (keep(candidate)) result.push_back(candidate.address);
    }
    return result;
  };

  state.cluster_endpoints = collect([&](const Candidate& c) {
    return c.endpoint->conditions.ready && available_for_topology(*c.endpoint, mode, node);
  });
  if (state.cluster_endpoints.empty()) state.cluster_endpoints = collect(serving_terminating);

  state.local_endpoints = collect([](const Candidate& c) { return c.local && c.endpoint->conditions.ready; });
  state.local_ready_count = state.local_endpoints.size();
  if (state.local_endpoints.empty()) {
    state.local_endpoints = collect([&](const Candidate& c) { return c.local && serving_terminating(c); });
  }
}

// ---------------------------------------------------------------------------

void add_service(const Service& service, std::span<const EndpointSlice* const> slices, const NodeConfig& node,
                 ProxyState& out) {
  // Normal skips (kube-proxy's ShouldSkipService and its list filters): not reported.
  if (service.has_service_proxy_name || service.type == ServiceType::ExternalName || service.headless ||
      service.cluster_ips.empty()) {
    return;
  }

  const auto cluster_ips = cluster_ip_by_family(service, out.skipped);
  const auto ports = proxied_ports(service, out.skipped);
  const SlicePortIndex slice_ports = index_slice_ports(slices);

  const bool external_local =
      externally_accessible(service) && service.external_traffic_policy == TrafficPolicy::Local;
  const bool has_node_ports = service.type == ServiceType::NodePort || service.type == ServiceType::LoadBalancer;
  const bool needs_health_check = service.type == ServiceType::LoadBalancer && external_local;

  for (const auto& cluster_ip : cluster_ips) {
    if (!cluster_ip) continue;
    const IPFamily family = cluster_ip->family;
    const auto ip_family = [](const IPAddress& ip) { return ip.family; };
    const auto external_ips = of_family(service.external_ips, family, ip_family);
    const auto lb_ips = of_family(service.load_balancer_ips, family, ip_family);
    const auto source_ranges =
        of_family(service.load_balancer_source_ranges, family, [](const CIDR& c) { return c.family(); });

    for (const ServicePort* port : ports) {
      ServicePortState state;
      state.name = {service.ref, port->name, port->protocol, family};
      state.port = port->port;
      state.cluster_ip = *cluster_ip;
      state.node_port = has_node_ports ? port->node_port : 0;
      state.external_ips = external_ips;
      state.load_balancer_ips = lb_ips;
      state.load_balancer_source_ranges = source_ranges;
      state.external_traffic_policy = external_local ? TrafficPolicy::Local : TrafficPolicy::Cluster;
      state.internal_traffic_policy = service.internal_traffic_policy;
      if (service.session_affinity_client_ip) {
        state.affinity_timeout_seconds = service.session_affinity_timeout_seconds;
      }
      state.health_check_node_port = needs_health_check ? service.health_check_node_port : 0;

      categorize(collect_endpoints(slice_ports, family, *port, node.node_name), node, state);
      out.ports.push_back(std::move(state));
    }
  }
}

void sort_ports(std::vector<ServicePortState>& ports) {
  std::sort(ports.begin(), ports.end(),
            [](const ServicePortState& a, const ServicePortState& b) { return a.name < b.name; });
}

}  // namespace

std::string ServicePortName::str() const {
  std::string result = service.ns + "/" + service.name + "/" + std::string(to_lower(protocol));
  if (!port_name.empty()) result += "/" + port_name;
  return result;
}

ProxyState build_proxy_state(const ClusterState& cluster, const NodeConfig& node) {
  ProxyState out;
  const auto services = unique_by_ref(cluster.services, "Service", out.skipped);
  const auto slices = proxied_slices(cluster, out.skipped);

  // Both lists are ordered by (namespace, service name): walk them together.
  auto slice_it = slices.begin();
  for (const Service* service : services) {
    const auto service_key = std::tie(service->ref.ns, service->ref.name);
    auto slice_key = [](const EndpointSlice* s) { return std::tie(s->ref.ns, s->service_name); };
    while (slice_it != slices.end() && slice_key(*slice_it) < service_key) ++slice_it;
    auto group_end = slice_it;
    while (group_end != slices.end() && slice_key(*group_end) == service_key) ++group_end;

    add_service(*service, std::span<const EndpointSlice* const>(slice_it, group_end), node, out);
    slice_it = group_end;
  }

  sort_ports(out.ports);
  return out;
}

ProxyState build_service_state(const Service& service, std::span<const EndpointSlice* const> slices,
                               const NodeConfig& node) {
  // The order build_proxy_state walks them in: by reference (then value,
  // should a malformed input repeat one).
  std::vector<const EndpointSlice*> own;
  for (const EndpointSlice* slice : slices) {
    if (slice->ref.ns != service.ref.ns || slice->service_name != service.ref.name) continue;
    if (slice->service_name.empty() || !slice_family(slice->address_type)) continue;
    own.push_back(slice);
  }
  std::sort(own.begin(), own.end(), [](const EndpointSlice* a, const EndpointSlice* b) {
    if (a->ref != b->ref) return a->ref < b->ref;
    return *a < *b;
  });
  ProxyState out;
  add_service(service, own, node, out);
  sort_ports(out.ports);
  return out;
}

ProxyState build_service_state(const Service& service, const std::vector<EndpointSlice>& slices,
                               const NodeConfig& node) {
  std::vector<const EndpointSlice*> pointers;
  pointers.reserve(slices.size());
  for (const EndpointSlice& slice : slices) pointers.push_back(&slice);
  return build_service_state(service, pointers, node);
}

}  // namespace svcproxy::model
