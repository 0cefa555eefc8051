#include "proxy/service_target.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <set>

namespace svcproxy::proxy {
namespace {

using model::IPAddress;
using model::IPFamily;

bool dns_label(std::string_view text) {
  if (text.empty() || text.size() > 253) return false;
  return std::all_of(text.begin(), text.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  });
}

std::optional<uint16_t> port_number(std::string_view text) {
  unsigned value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535) return std::nullopt;
  return static_cast<uint16_t>(value);
}

std::string family_name(IPFamily family) { return family == IPFamily::V4 ? "IPv4" : "IPv6"; }

// The service port the target names, among the service's ports for this
// node (one entry per family).
std::vector<const model::ServicePortState*> matching_ports(const ServiceTarget& target, model::Protocol protocol,
                                                           const model::Service& service,
                                                           const std::vector<model::ServicePortState>& ports) {
  const auto number = port_number(target.port);
  std::vector<const model::ServicePort*> named;
  for (const auto& port : service.ports) {
    const bool match = target.port.empty() || (number ? port.port == *number : port.name == target.port);
    if (match) named.push_back(&port);
  }
  if (named.empty()) {
    std::string have;
    for (const auto& port : service.ports)
      have += (have.empty() ? "" : ", ") + (port.name.empty() ? "" : port.name + "=") + std::to_string(port.port) +
              "/" + std::string(model::to_string(port.protocol));
    throw TargetError(target.text + ": service has no port " + target.port + " (ports: " + have + ")");
  }
  // One port number may be served over TCP and UDP (DNS): the mode's wins.
  if (named.size() > 1) {
    std::erase_if(named, [&](const model::ServicePort* p) { return p->protocol != protocol; });
    if (named.size() != 1)
      throw TargetError(target.text + ": service has " + std::to_string(service.ports.size()) +
                        " ports; name one (NAMESPACE/SERVICE:PORT-NAME or :PORT)");
  }
  const model::ServicePort& port = *named.front();
  if (port.protocol != protocol)
    throw TargetError(target.text + ": port " + std::to_string(port.port) + " is " +
                      std::string(model::to_string(port.protocol)) + ", the load test speaks " +
                      std::string(model::to_string(protocol)));
  std::vector<const model::ServicePortState*> out;
  for (const auto& state : ports)
    if (state.name.service == service.ref && state.name.port_name == port.name && state.name.protocol == port.protocol)
      out.push_back(&state);
  if (out.empty())
    throw TargetError(target.text + ": service is not proxied on this node (headless, ExternalName, "
                                    "another proxy's, or skipped: see the lines above)");
  return out;
}

// The first address of `family` (or of any family) in `ips`.
std::optional<IPAddress> first_of(const std::vector<IPAddress>& ips, std::optional<IPFamily> family) {
  for (const auto& ip : ips)
    if (!family || ip.family == *family) return ip;
  return std::nullopt;
}

// Why an endpoint of the service port is not among the rules' targets for
// this client: the first of kube-proxy's filters (CategorizeEndpoints) that
// drops it.
std::string exclusion_reason(const model::Endpoint& endpoint, const model::ServicePortState& port, Via via,
                             const model::NodeConfig& node) {
  if (!endpoint.conditions.ready) return endpoint.conditions.terminating ? "terminating" : "unready";
  const bool external = via != Via::Cluster;
  const auto policy = external ? port.external_traffic_policy : port.internal_traffic_policy;
  if (policy == model::TrafficPolicy::Local && endpoint.node_name != node.node_name)
    return external ? "remote under externalTrafficPolicy Local" : "remote under internalTrafficPolicy Local";
  const auto& zones = endpoint.hint_zones;
  if (!zones.empty() && !node.zone.empty() && std::find(zones.begin(), zones.end(), node.zone) == zones.end())
    return "other zone";
  const auto& nodes = endpoint.hint_nodes;
  if (!nodes.empty() && std::find(nodes.begin(), nodes.end(), node.node_name) == nodes.end()) return "other node";
  return "not in the rules";
}

}  // namespace

std::optional<ServiceTarget> parse_service_target(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos || text.find('/', slash + 1) != std::string_view::npos) return std::nullopt;
  ServiceTarget target;
  target.text = std::string(text);
  target.service.ns = std::string(text.substr(0, slash));
  std::string_view rest = text.substr(slash + 1);
  if (const auto colon = rest.find(':'); colon != std::string_view::npos) {
    target.port = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (target.port.empty()) return std::nullopt;
  }
  target.service.name = std::string(rest);
  if (!dns_label(target.service.ns) || !dns_label(target.service.name)) return std::nullopt;
  return target;
}

std::optional<Via> parse_via(std::string_view text) {
  if (text == "cluster") return Via::Cluster;
  if (text == "nodeport") return Via::NodePort;
  if (text == "lb") return Via::LoadBalancer;
  if (text == "external") return Via::External;
  return std::nullopt;
}

std::string_view to_string(Via via) {
  switch (via) {
    case Via::Cluster:
      return "cluster";
    case Via::NodePort:
      return "nodeport";
    case Via::LoadBalancer:
      return "lb";
    case Via::External:
      return "external";
  }
  return "?";
}

ServiceAddress resolve_service(const ServiceTarget& target, Via via, model::Protocol protocol,
                               std::optional<IPFamily> family, const model::ClusterState& cluster,
                               const std::vector<model::ServicePortState>& ports, const model::NodeConfig& node) {
  const auto service = std::find_if(cluster.services.begin(), cluster.services.end(),
                                    [&](const model::Service& s) { return s.ref == target.service; });
  if (service == cluster.services.end()) throw TargetError(target.text + ": no such service");
  auto states = matching_ports(target, protocol, *service, ports);
  // The service's first family unless --family says otherwise (states are
  // sorted by family; clusterIPs[0] is the primary one).
  const IPFamily wanted = family ? *family : service->cluster_ips.front().family;
  const auto state = std::find_if(states.begin(), states.end(),
                                  [&](const model::ServicePortState* s) { return s->name.family == wanted; });
  if (state == states.end()) throw TargetError(target.text + ": service has no " + family_name(wanted) + " address");
  const model::ServicePortState& port = **state;
  ServiceAddress out{.port_name = port.name, .ip = port.cluster_ip, .port = port.port, .via = via};
  auto none = [&](const std::string& what) {
    return TargetError(target.text + ": no address for --via " + std::string(to_string(via)) + " (" + what + ")");
  };
  switch (via) {
    case Via::Cluster:
      break;
    case Via::NodePort: {
      if (port.node_port == 0) throw none("the port has no nodePort");
      const auto ip = first_of(node.node_ips, wanted);
      if (!ip) throw none("no " + family_name(wanted) + " node IP: give --node-ip or --hostname-override");
      out.ip = *ip;
      out.port = port.node_port;
      break;
    }
    case Via::LoadBalancer: {
      const auto ip = first_of(port.load_balancer_ips, std::nullopt);
      if (!ip) throw none("no " + family_name(wanted) + " status.loadBalancer.ingress IP");
      out.ip = *ip;
      break;
    }
    case Via::External: {
      const auto ip = first_of(port.external_ips, std::nullopt);
      if (!ip) throw none("no " + family_name(wanted) + " externalIPs");
      out.ip = *ip;
      break;
    }
  }
  return out;
}

loadtest::ExpectedEndpoints expected_endpoints(const dataplane::ir::Ruleset& ruleset,
                                               const dataplane::TraceEnvironment& env, const ServiceAddress& address,
                                               const IPAddress& source, const model::ClusterState& cluster,
                                               const model::NodeConfig& node) {
  dataplane::TracePacket packet;
  packet.src = source;
  packet.dst = address.ip;
  packet.dport = address.port;
  packet.protocol = address.port_name.protocol;
  packet.locally_generated = std::find(env.local_addresses.begin(), env.local_addresses.end(), source) !=
                             env.local_addresses.end();
  const auto traced = dataplane::trace(ruleset, packet, env);

  loadtest::ExpectedEndpoints out;
  out.known = true;
  std::set<model::EndpointAddress> serving;
  if (traced.verdict == dataplane::TraceVerdict::DNAT) serving.insert(traced.endpoints.begin(), traced.endpoints.end());
  for (const auto& e : serving) out.serving.push_back(e.str());

  // Every other endpoint of this service port, once, with its reason.
  const model::ServicePortState* port = nullptr;
  const auto ports = model::build_proxy_state(only_service(cluster, address.port_name.service), node).ports;
  for (const auto& p : ports)
    if (p.name == address.port_name) port = &p;
  if (port == nullptr) return out;
  std::set<model::EndpointAddress> seen = serving;
  for (const auto& slice : cluster.endpoint_slices) {
    if (slice.ref.ns != address.port_name.service.ns || slice.service_name != address.port_name.service.name) continue;
    for (const auto& slice_port : slice.ports) {
      if (slice_port.name != address.port_name.port_name || slice_port.protocol != address.port_name.protocol ||
          !slice_port.port || *slice_port.port == 0)
        continue;
      for (const auto& endpoint : slice.endpoints) {
        if (!endpoint.address || endpoint.address->family != address.port_name.family) continue;
        const model::EndpointAddress ep{*endpoint.address, *slice_port.port};
        if (!seen.insert(ep).second) continue;
        out.excluded.emplace_back(ep.str(), exclusion_reason(endpoint, *port, address.via, node));
      }
    }
  }
  std::sort(out.excluded.begin(), out.excluded.end());
  return out;
}

loadtest::ExpectedEndpoints merge_expected(const std::vector<loadtest::ExpectedEndpoints>& per_source, bool* differ) {
  loadtest::ExpectedEndpoints out;
  if (differ) *differ = false;
  if (per_source.empty()) return out;
  out.known = true;
  std::set<std::string> serving;
  std::map<std::string, std::string> excluded;
  for (const auto& e : per_source) {
    serving.insert(e.serving.begin(), e.serving.end());
    for (const auto& [endpoint, reason] : e.excluded) excluded.emplace(endpoint, reason);
    if (differ && e.serving != per_source.front().serving) *differ = true;
  }
  out.serving.assign(serving.begin(), serving.end());
  for (const auto& [endpoint, reason] : excluded)
    if (!serving.contains(endpoint)) out.excluded.emplace_back(endpoint, reason);
  return out;
}

model::ClusterState only_service(const model::ClusterState& cluster, const model::ObjectRef& service) {
  model::ClusterState out;
  for (const auto& s : cluster.services)
    if (s.ref == service) out.services.push_back(s);
  for (const auto& slice : cluster.endpoint_slices)
    if (slice.ref.ns == service.ns && slice.service_name == service.name) out.endpoint_slices.push_back(slice);
  out.nodes = cluster.nodes;
  out.service_cidrs = cluster.service_cidrs;
  return out;
}

}  // namespace svcproxy::proxy
