// The sync loop's core: cluster state in, kernel programmed. Owns the
// incremental compiler (what is programmed), the netlink backend (the kernel
// interface) and the conntrack cleaner, and decides full vs partial syncs:
// full at start, after any failure and when the compiler asks for it;
// partial (O(changes)) otherwise. Drift (someone else edited svcproxy's
// tables) is found by a periodic check off the event thread and repaired by a
// partial transaction of only what drifted (dataplane/drift_check.h).
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/compile.h"
#include "dataplane/conntrack.h"
#include "dataplane/drift.h"
#include "dataplane/drift_check.h"
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

// A drift check's outcome, once its result is in (finish_drift_check).
struct DriftRepairResult {
  bool checked = false;  // false: the check was void (a full sync or a failure since it started)
  SyncResult sync;       // the repair: duration is the event thread's share only
  std::string check_error;  // the readback or compile failed (no repair unless sync.full)
  dataplane::DriftSummary drifted;  // what was repaired
  std::chrono::microseconds readback{0}, compile{0}, compare{0};  // on the check's thread
  size_t kernel_elements = 0;
  bool raced = false;  // commits raced the readback
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
  const std::vector<model::ServicePortState>& ports() const { return *ports_; }
  const KernelObjects& kernel_objects() const { return objects_; }

  // Starts a drift check against what was last programmed; false when none
  // can start (the kernel is not known to be in sync, or one runs).
  bool start_drift_check();
  // Readable when a drift check's result is in (-1 before the first check).
  int drift_fd() const { return drift_ ? drift_->fd() : -1; }
  // Applies the finished check's repair, less what syncs changed since it
  // started: a partial transaction, or a full sync if the repair needs one.
  DriftRepairResult finish_drift_check();

 private:
  // Immutable once built: a drift check compiles from the same pointer.
  std::shared_ptr<const std::vector<model::ServicePortState>> ports_;
  std::optional<dataplane::DriftCheck> drift_;
  // Partial syncs applied since the running check's snapshot; void when a
  // full sync or a failure happened meanwhile.
  dataplane::ChangedSinceSnapshot changed_since_check_;
  bool check_void_ = false;
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
