// The sync loop's core: cluster state in, kernel programmed. Owns the
// incremental compiler (what is programmed), the netlink backend (the kernel
// interface) and the conntrack cleaner, and decides full vs partial syncs:
// full at start, after any failure and when the compiler asks for it;
// partial (O(changes)) otherwise.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/compile.h"
#include "dataplane/conntrack.h"
#include "dataplane/kernel.h"
#include "model/node_config.h"
#include "model/objects.h"
#include "model/service_ports.h"

namespace svcproxy::proxy {

struct SyncResult {
  bool full = false;
  size_t operations = 0;          // kernel objects changed (partial) or programmed (full)
  size_t conntrack_deleted = 0;   // stale UDP entries removed
  std::chrono::microseconds duration{0};
  std::string error;              // empty: success
  std::vector<std::string> warnings;  // service ports left out (conflicts), one line each
};

// What svcproxy's tables hold: recounted from the whole ruleset at every full
// sync, adjusted by each partial sync's diff in between.
struct KernelObjects {
  size_t chains = 0;
  size_t sets = 0;  // sets and maps
  size_t elements = 0;
};

class SyncLoop {
 public:
  explicit SyncLoop(model::NodeConfig node);

  // A new node configuration (e.g. ServiceCIDR objects changed): everything
  // is recompiled and the next sync is full.
  void set_node(model::NodeConfig node);
  const model::NodeConfig& node() const { return compiler_.node(); }

  // Programs `cluster`. `force_full` repairs drift (periodic resync).
  SyncResult sync(const model::ClusterState& cluster, bool force_full = false);

  const dataplane::RulesetCompiler& compiler() const { return compiler_; }
  // The per-port view programmed by the last sync attempt.
  const std::vector<model::ServicePortState>& ports() const { return ports_; }
  const KernelObjects& kernel_objects() const { return objects_; }

 private:
  std::vector<model::ServicePortState> ports_;
  dataplane::RulesetCompiler compiler_;
  dataplane::NetlinkBackend backend_;
  std::optional<dataplane::ConntrackCleaner> conntrack_;
  // Elements per set (by family and name) and chains: what the kernel holds,
  // kept exact from each diff in O(changes).
  void count_objects(const dataplane::ir::RulesetRef& ruleset);
  void count_objects(const dataplane::RulesetDiff& diff);
  KernelObjects objects_;
  std::map<std::pair<model::IPFamily, std::string>, size_t> set_elements_;
  bool node_changed_ = false;
};

}  // namespace svcproxy::proxy
