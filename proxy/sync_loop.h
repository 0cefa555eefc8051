// The sync loop's core: cluster state in, kernel programmed. Owns the
// incremental compiler (what is programmed), the netlink backend (the kernel
// interface) and the conntrack cleaner, and decides full vs partial syncs:
// full at start, after any failure and when the compiler asks for it;
// partial (O(changes)) otherwise.
#pragma once

#include <chrono>
#include <optional>
#include <string>

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
};

class SyncLoop {
 public:
  explicit SyncLoop(model::NodeConfig node);

  // Programs `cluster`. `force_full` repairs drift (periodic resync).
  SyncResult sync(const model::ClusterState& cluster, bool force_full = false);

  const dataplane::RulesetCompiler& compiler() const { return compiler_; }
  // The per-port view programmed by the last sync attempt.
  const std::vector<model::ServicePortState>& ports() const { return ports_; }

 private:
  std::vector<model::ServicePortState> ports_;
  dataplane::RulesetCompiler compiler_;
  dataplane::NetlinkBackend backend_;
  std::optional<dataplane::ConntrackCleaner> conntrack_;
};

}  // namespace svcproxy::proxy
