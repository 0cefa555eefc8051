// The compiler: kube-proxy's per-port view of the cluster
// (model::ServicePortState) and this node's config -> the nftables IR. No
// kernel, no I/O; deterministic byte for byte. See dataplane/README.md for
// the ruleset's shape and why it is shaped that way.
//
// RulesetCompiler is incremental: it keeps what every service port
// contributed, so an update recompiles only the ports that changed (and the
// few whose address conflicts they resolve) and reports the change in kernel
// terms (RulesetDiff) — O(changes), whatever the number of services.
// compile() is the same machinery run once over all ports, so a full compile
// and any sequence of updates give identical rulesets.
#pragma once

#include <map>
#include <optional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "dataplane/ir.h"
#include "model/node_config.h"
#include "model/service_ports.h"

namespace svcproxy::dataplane {

struct CompileResult {
  ir::Ruleset ruleset;
  // Service ports (or addresses of them) left out because they conflict with
  // another service: one line each, naming both.
  std::vector<std::string> warnings;
};

CompileResult compile(const std::vector<model::ServicePortState>& ports, const model::NodeConfig& node);

// What an update changes in one table, in kernel operations. Applying it in
// the order of the fields below (adds of counters, sets and chains first,
// element deletes before adds, deletes of chains, sets and counters last) is
// always valid.
struct TableDiff {
  model::IPFamily family = model::IPFamily::V4;
  std::vector<ir::Counter> added_counters;  // before anything refers to them
  std::vector<ir::Set> added_sets;        // with their elements
  std::vector<ir::Chain> added_chains;    // with their rules
  std::vector<std::pair<std::string, ir::Element>> deleted_elements;  // set name, element
  std::vector<std::pair<std::string, ir::Element>> added_elements;
  std::vector<ir::Chain> replaced_chains;  // flush, then these rules
  std::vector<std::string> deleted_chains;
  std::vector<std::string> deleted_sets;
  std::vector<std::string> deleted_counters;  // once nothing refers to them

  bool empty() const {
    return added_counters.empty() && added_sets.empty() && added_chains.empty() && deleted_elements.empty() &&
           added_elements.empty() && replaced_chains.empty() && deleted_chains.empty() && deleted_sets.empty() &&
           deleted_counters.empty();
  }
  size_t operations() const {
    return added_counters.size() + added_sets.size() + added_chains.size() + deleted_elements.size() +
           added_elements.size() + replaced_chains.size() + deleted_chains.size() + deleted_sets.size() +
           deleted_counters.size();
  }
};

// UDP conntrack entries that an update made stale: clients keep sending to
// a DNAT binding whose endpoint is gone (or that was made while the service
// had no endpoints), and conntrack would keep them on that dead path.
struct StaleUdpFlow {
  model::IPFamily family = model::IPFamily::V4;
  std::optional<model::IPAddress> destination;  // original destination; none: any (NodePorts)
  uint16_t port = 0;                            // original destination port
  // Reply source (the endpoint); none: every entry to destination:port.
  std::optional<model::EndpointAddress> endpoint;
  auto operator<=>(const StaleUdpFlow&) const = default;
};

struct RulesetDiff {
  std::vector<TableDiff> tables;  // v4, v6
  std::vector<StaleUdpFlow> stale_udp_flows;  // sorted, deduplicated
  // The change cannot be expressed as a partial update (a set's definition
  // changed, e.g. an affinity timeout): program the whole ruleset instead.
  bool needs_full_sync = false;
  bool empty() const;
  size_t operations() const;
};

class RulesetCompiler {
 public:
  explicit RulesetCompiler(model::NodeConfig node);
  ~RulesetCompiler();
  RulesetCompiler(RulesetCompiler&&) noexcept;
  RulesetCompiler& operator=(RulesetCompiler&&) noexcept;

  // Replaces the whole state with `ports` without computing a diff: for
  // the start and for full syncs.
  void reset(const std::vector<model::ServicePortState>& ports);
  // Sets the ports of the given services (all families) to `ports`; a
  // service listed with no ports is removed. Every port in `ports` must
  // belong to one of `services`.
  RulesetDiff update(const std::vector<model::ObjectRef>& services,
                     const std::vector<model::ServicePortState>& ports);
  // Makes the whole state equal to `ports`: compares with the current state
  // and recompiles only the services whose ports differ.
  RulesetDiff replace_all(const std::vector<model::ServicePortState>& ports);

  // The full current ruleset (O(size); for `rules`, trace, tests). A copy of
  // everything the compiler holds.
  ir::Ruleset ruleset() const;
  // The same, by reference into the compiler's state (no copy; what
  // NetlinkBackend::apply_full encodes). Valid until the next reset/update.
  ir::RulesetRef ruleset_ref() const;
  // The ruleset, moving the compiler's state out: no copy, and the compiler
  // is empty afterwards (compile() uses it).
  ir::Ruleset take_ruleset() &&;
  // Conflicts found so far (cleared by take_warnings()).
  std::vector<std::string> take_warnings();
  const model::NodeConfig& node() const;

  // The definition (no elements) of a shared set or map, by name: what the
  // netlink encoder needs to encode element changes.
  const ir::Set* set_definition(model::IPFamily family, const std::string& name) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Names of the objects every ruleset has; trace and tests refer to them.
namespace names {
inline constexpr const char* kTable = "svcproxy";
inline constexpr const char* kServices = "services";
inline constexpr const char* kServiceIPs = "service-ips";
inline constexpr const char* kServiceNodePorts = "service-nodeports";
inline constexpr const char* kClusterIPs = "cluster-ips";
inline constexpr const char* kClusterCIDRs = "cluster-cidrs";
inline constexpr const char* kServiceCIDRs = "service-cidrs";
inline constexpr const char* kNodePortIPs = "nodeport-ips";
inline constexpr const char* kHairpin = "hairpin";
inline constexpr const char* kMarkForMasquerade = "mark-for-masquerade";
inline constexpr const char* kMasquerading = "masquerading";
// UDP and SCTP NodePorts (meta l4proto . th dport), refused on the loopback
// range when localhost NodePorts are on (kube-proxy's name).
inline constexpr const char* kLocalhostNodePortRejects = "localhost-nodeport-reject-ports";
// ... and the counters of what they refused, one per protocol (udp, sctp):
// kubeproxy_nftables_localhost_nodeport_rejected_packets_total.
inline constexpr const char* kLocalhostNodePortRejectedPrefix = "localhost-nodeport-rejected-";
// Counter maps (key -> counter): see counter names below.
inline constexpr const char* kCountServices = "counters-services";    // addr . proto . port
inline constexpr const char* kCountNodePorts = "counters-nodeports";  // proto . port
inline constexpr const char* kCountRejected = "counters-rejected";
inline constexpr const char* kCountNodePortRejected = "counters-nodeport-rejected";
inline constexpr const char* kCountDropped = "counters-dropped";
inline constexpr const char* kCountNodePortDropped = "counters-nodeport-dropped";
inline constexpr const char* kCountEndpoints = "counters-endpoints";  // endpoint addr . proto . port
}  // namespace names

// The counter objects of a service port (NodeConfig::counters): every new
// connection to any of its addresses; those of them refused because it has
// no endpoints; those dropped (Local policy without a local endpoint,
// source ranges). Created with the port, deleted with it.
struct PortCounterNames {
  std::string service, rejected, dropped;
};
PortCounterNames port_counter_names(const model::ServicePortName& name);
// The counter of connections DNATed to an endpoint (shared by every service
// port that has it; present while one does).
std::string endpoint_counter_name(const model::EndpointAddress& endpoint, model::Protocol protocol);

// Stable per-service-port chain suffix: "<HASH8>-ns/name/proto/port".
std::string service_port_id(const model::ServicePortName& name);

}  // namespace svcproxy::dataplane
