// The compiler's shared vocabulary: names of the objects it creates, the two
// ways a DNAT map is keyed, small rule builders, and what a service port
// contributes to its table (Fragment). Internal to dataplane/compile*; the
// public API is dataplane/compile.h.
#pragma once

#include <string>
#include <vector>

#include "dataplane/compile.h"

namespace svcproxy::dataplane::detail {

using model::EndpointAddress;
using model::IPAddress;
using model::IPFamily;
using model::ServicePortState;
using model::TrafficPolicy;

// How a DNAT map finds the service port from the packet: by destination
// address (ClusterIP, external IP, LB IP) or, for NodePorts, by port alone.
enum class KeyKind { Address, NodePort };
// Which endpoint list a map holds for a key. Only eTP=Local services need a
// second list for the same key: pod- and node-originated traffic to their
// external addresses short-circuits to all cluster endpoints.
enum class Flavour { Main, Shortcut };

inline std::string dnat_chain_name(KeyKind kind, Flavour flavour, size_t n) {
  std::string name = "dnat-";
  if (kind == KeyKind::NodePort) name += "nodeport-";
  if (flavour == Flavour::Shortcut) name += "shortcut-";
  return name + std::to_string(n);
}

// The chain that tries every DNAT map of one kind and flavour in turn (a
// map miss falls through to the next rule): `dnat-maps`,
// `dnat-nodeport-maps`, `dnat-shortcut-maps`, `dnat-nodeport-shortcut-maps`
// (`dnat` alone is an nft keyword).
inline std::string cascade_chain_name(KeyKind kind, Flavour flavour) {
  std::string name = "dnat-";
  if (kind == KeyKind::NodePort) name += "nodeport-";
  if (flavour == Flavour::Shortcut) name += "shortcut-";
  return name + "maps";
}

// Shared chains a service port's keys are classified into by set membership
// (sets of the same name hold the keys): no chain and no verdict element per
// service, so adding or changing one is element changes in data sets only.
namespace cls {
constexpr const char* kClusterIP = "cluster-ip";          // ClusterIP keys with usable endpoints
constexpr const char* kExternal = "external";             // eTP=Cluster external addresses
constexpr const char* kExternalLocal = "external-local";  // eTP=Local external addresses
constexpr const char* kReject = "no-endpoints";           // no endpoints: reject (any key kind)
constexpr const char* kDrop = "no-local-endpoints";       // iTP=Local, none on this node: drop (set only)
constexpr const char* kNodePorts = "nodeports";           // chain: NodePort classification
constexpr const char* kNodePortExternal = "nodeport-external";
constexpr const char* kNodePortExternalLocal = "nodeport-external-local";
// Set; with counters also a chain (counts, then as no-endpoints), else its chain is no-endpoints.
constexpr const char* kNodePortReject = "nodeport-no-endpoints";
}  // namespace cls

// nft identifiers allow letters, digits and / - _ . ; IPv6 colons are not.
inline std::string sanitize(std::string text) {
  for (char& c : text) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' ||
                    c == '-' || c == '_' || c == '.';
    if (!ok) c = '.';
  }
  return text;
}

inline std::string endpoint_suffix(const EndpointAddress& ep) {
  return sanitize(ep.ip.str()) + "/" + std::to_string(ep.port);
}

inline ir::Rule rule(std::vector<ir::Match> matches, std::vector<ir::Statement> statements) {
  return ir::Rule{std::move(matches), std::move(statements), {}};
}

inline ir::Verdict goto_chain(std::string chain) { return {ir::VerdictKind::Goto, std::move(chain)}; }
inline ir::Verdict jump_chain(std::string chain) { return {ir::VerdictKind::Jump, std::move(chain)}; }

inline ir::Rule mark_for_masquerade(std::vector<ir::Match> matches = {}) {
  return rule(std::move(matches), {jump_chain(names::kMarkForMasquerade)});
}

using ir::sort_elements;

// One element a port puts into a shared set or map (by the ledger's set id).
struct Contribution {
  uint32_t set = 0;
  ir::Element element;
  auto operator<=>(const Contribution&) const = default;
};

// What one service port contributes to its table: its own chains and sets,
// and elements of the shared sets.
struct Fragment {
  std::vector<ir::Counter> counters;   // sorted by name
  std::vector<ir::Chain> chains;       // sorted by name
  std::vector<ir::Set> sets;           // sorted by name
  std::vector<Contribution> elements;  // sorted
};

}  // namespace svcproxy::dataplane::detail
