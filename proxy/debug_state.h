// What the /debug page, /debug/state and `svcproxy status` show: plain
// values, built from the daemon's state (collect_services) or from the
// kernel's tables (services_from_ruleset), written to JSON and read back
// from it (the terminal client reads the daemon's /debug/state).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "dataplane/ir.h"
#include "model/node_config.h"
#include "model/objects.h"
#include "proxy/sync_history.h"
#include "proxy/traffic_counters.h"

namespace svcproxy::proxy {

struct DebugEndpoint {
  std::string address;  // "IP:port", an IPv6 address in brackets
  bool ready = false;
  bool serving = false;
  bool terminating = false;
  std::string zone;
  std::string node;
  bool local = false;  // on this node
  bool used = false;   // traffic goes to it (kube-proxy's endpoint selection)
  std::optional<PacketCount> traffic;
};

struct DebugPort {
  std::string name;      // "ns/name/tcp/port" (ServicePortName::str)
  std::string port;      // the port's name, or its number when unnamed
  std::string protocol;  // "TCP", "UDP", "SCTP"
  std::string family;    // "IPv4", "IPv6"
  std::string cluster_ip;
  uint16_t number = 0;
  uint16_t node_port = 0;
  std::optional<PacketCount> accepted, rejected, dropped;
  std::vector<DebugEndpoint> endpoints;
};

struct DebugService {
  std::string ns;
  std::string name;
  std::string type;  // "ClusterIP", ...; empty from the kernel
  std::vector<DebugPort> ports;
};

struct DebugNode {
  std::string name;
  std::string zone;
  std::vector<std::string> ips;
  std::vector<std::string> nodeport_addresses;
  std::string detect_local;  // "ClusterCIDR", "BridgeInterface", "InterfaceNamePrefix"
  std::vector<std::string> cluster_cidrs;
  std::string local_interface;
  std::string mode;  // "nftables", "userspace"
  uint64_t sync_period_ms = 0;
  uint64_t min_sync_period_ms = 0;
  auto operator<=>(const DebugNode&) const = default;
};

struct DebugResource {
  std::string resource;
  std::string resource_version;
  uint64_t lists = 0;
  uint64_t failures = 0;
  std::string last_error;
  auto operator<=>(const DebugResource&) const = default;
};

struct DebugWatch {
  std::string source;  // "api", "manifests"; empty: unknown (kernel readback)
  uint64_t relists = 0;
  uint64_t errors = 0;
  std::string problem;
  std::vector<DebugResource> resources;
  auto operator<=>(const DebugWatch&) const = default;
};

struct DebugState {
  std::string origin;  // "daemon" or "kernel"
  std::string time;    // RFC 3339, UTC
  DebugNode node;
  std::vector<DebugService> services;  // by namespace, name; ports by name
  std::vector<SyncRecord> syncs;       // oldest first
  DebugWatch watch;
  bool counters = false;       // traffic counters were read
  std::string counters_error;  // why they could not be
};

// The services of `cluster` as this node proxies them: every endpoint of
// every slice with its conditions, `used` where model::build_proxy_state
// sends traffic, and the counters of `traffic` (null: none) beside them.
std::vector<DebugService> collect_services(const model::ClusterState& cluster, const model::NodeConfig& node,
                                           const TrafficSnapshot* traffic);
// The node's part of the page.
DebugNode describe_node(const model::NodeConfig& node);
// The service ports and endpoints svcproxy's tables hold, read from its
// DNAT maps (and, for session affinity, its svc-/endpoint- chains). The
// kernel holds no names for most ports: those are grouped by address
// (namespace empty, name the ClusterIP/external IP, "NodePorts" for the
// NodePort maps); only usable endpoints are programmed.
std::vector<DebugService> services_from_ruleset(const dataplane::ir::Ruleset& ruleset);

// Keeps the services whose namespace/name, a port's name or cluster IP, or
// an endpoint's address, node or zone contains `filter` (empty: all).
std::vector<DebugService> filter_services(std::vector<DebugService> services, std::string_view filter);

std::string to_json(const DebugState& state);
base::Result<DebugState> debug_state_from_json(std::string_view text);
std::string format_time(std::chrono::system_clock::time_point t);  // RFC 3339, ms, UTC

}  // namespace svcproxy::proxy
