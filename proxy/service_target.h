// `svcproxy loadtest NAMESPACE/SERVICE[:PORT]`: the address to load (picked
// by --via) and the endpoints the rules must send a client to. Both come
// from the cluster as compiled for this node, and the expected set from
// evaluating the compiled IR as `trace` does, so it is exactly what the
// rules do, never a second model of them.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/ir.h"
#include "dataplane/trace.h"
#include "loadtest/engine.h"
#include "model/node_config.h"
#include "model/objects.h"
#include "model/service_ports.h"

namespace svcproxy::proxy {

// A target that names no usable address (no such service or port, no
// address for --via): one line naming the target. The command exits 2.
struct TargetError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ServiceTarget {
  model::ObjectRef service;
  // A port's name or number as given; empty: the service's only port (of
  // the protocol the load test speaks).
  std::string port;
  std::string text;  // as given, for messages
};

// NAMESPACE/SERVICE[:PORT-NAME|PORT]; nullopt when `text` has another shape
// (an IP:PORT target). Names are DNS labels (lower case, digits, '-').
std::optional<ServiceTarget> parse_service_target(std::string_view text);

enum class Via { Cluster, NodePort, LoadBalancer, External };
std::optional<Via> parse_via(std::string_view text);  // cluster, nodeport, lb, external
std::string_view to_string(Via via);

// The address a service target resolved to.
struct ServiceAddress {
  model::ServicePortName port_name;  // the service port, in the address's family
  model::IPAddress ip;
  uint16_t port = 0;  // the service port, or its nodePort with --via nodeport
  Via via = Via::Cluster;
  std::string str() const { return model::format_endpoint(ip, port); }
};

// `ports` is the service ports as built for this node (model's ProxyState);
// `cluster` the objects, to tell "no such service" from "not proxied".
// `protocol` is what the load test speaks (UDP for --mode udp, else TCP);
// `family` restricts the address family (default: the service's first).
// Throws TargetError.
ServiceAddress resolve_service(const ServiceTarget& target, Via via, model::Protocol protocol,
                               std::optional<model::IPFamily> family, const model::ClusterState& cluster,
                               const std::vector<model::ServicePortState>& ports, const model::NodeConfig& node);

// The endpoints the compiled rules send a new connection from `source` to
// (trace's DNAT targets; session affinity as for a first connection), and
// every other endpoint of the service port with the reason it is left out:
// "unready", "terminating", "remote under externalTrafficPolicy Local",
// "other zone", or "not in the rules" (e.g. the rules reject the client).
loadtest::ExpectedEndpoints expected_endpoints(const dataplane::ir::Ruleset& ruleset,
                                               const dataplane::TraceEnvironment& env, const ServiceAddress& address,
                                               const model::IPAddress& source, const model::ClusterState& cluster,
                                               const model::NodeConfig& node);

// Several client sources (--sources): the union of their serving sets (the
// engine judges one set), an endpoint excluded only when it serves none of
// them. `differ` is set when the sources' sets are not all equal.
loadtest::ExpectedEndpoints merge_expected(const std::vector<loadtest::ExpectedEndpoints>& per_source, bool* differ);

// Only what the target's rules depend on: its Service and EndpointSlices,
// the Nodes and ServiceCIDRs. Compiling this is as cheap as one service,
// and gives the same chains for it as the whole cluster.
model::ClusterState only_service(const model::ClusterState& cluster, const model::ObjectRef& service);

}  // namespace svcproxy::proxy
