// `svcproxy trace`: evaluates the compiled IR (the very values the backends
// program) for one packet and reports every place it can end up. Random
// choices (numgen) are enumerated, so the result lists all possible DNAT
// targets; dynamic sets (session affinity) are taken as empty, i.e. the
// packet is the first of a new client.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "dataplane/ir.h"
#include "model/service_ports.h"

namespace svcproxy::dataplane {

struct TracePacket {
  model::IPAddress src;
  model::IPAddress dst;
  model::Protocol protocol = model::Protocol::TCP;
  uint16_t dport = 0;
  // Generated on the node itself (output hook) rather than arriving on an
  // interface (prerouting hook).
  bool locally_generated = false;
  // The input interface's name, for `iifname` matches (--detect-local-mode
  // BridgeInterface / InterfaceNamePrefix). Locally generated packets have
  // none (the kernel compares ""). Unset for an arriving packet: unknown,
  // every iifname match (either polarity) is taken as not matching and the
  // result says so in `notes`.
  std::optional<std::string> iif;
};

struct TraceEnvironment {
  // Addresses for which `fib saddr/daddr type local` is true.
  std::vector<model::IPAddress> local_addresses;
};

enum class TraceVerdict { DNAT, DROP, REJECT, ACCEPT };
std::string_view to_string(TraceVerdict verdict);

struct TraceResult {
  TraceVerdict verdict = TraceVerdict::ACCEPT;
  // Every possible DNAT target, sorted, deduplicated.
  std::vector<model::EndpointAddress> endpoints;
  // True when the packet would be masqueraded for at least one target.
  bool masquerade = false;
  // The targets for which it would be masqueraded (all of them when the
  // masquerade mark is set; only the client itself for hairpin).
  std::vector<model::EndpointAddress> masquerade_endpoints;
  // Chains visited, in first-visit order.
  std::vector<std::string> chains;
  // Caveats about the evaluation (e.g. iifname matches with no interface
  // given). Empty for most packets; to_json() omits the key then.
  std::vector<std::string> notes;

  // {"verdict": "...", "endpoints": [...], "masquerade": bool,
  //  "masquerade_endpoints": [...], "chains": [...][, "notes": [...]]}
  std::string to_json() const;
  // Human-readable multi-line explanation.
  std::string to_text() const;
};

TraceResult trace(const ir::Ruleset& ruleset, const TracePacket& packet, const TraceEnvironment& env);

}  // namespace svcproxy::dataplane
