// The daemon's one view of what programs traffic: the nftables backend
// (SyncLoop: a ruleset compiled incrementally and committed to the kernel)
// or the userspace backend (UserspaceDataplane: svcproxy0 addresses and
// proxy listeners). The daemon hands either the per-port state of the
// services that changed, or of all of them, and never asks which it holds.
//
//   store --Change--> ChangeTracker (dirty services) --> ServiceModel
//   (build_service_state per dirty service) --> Dataplane::apply_changes
//   --> RulesetCompiler::update --> RulesetKernel (netlink) / userspace proxy
#pragma once

#include <chrono>
#include <compare>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/drift.h"
#include "model/node_config.h"
#include "model/objects.h"
#include "model/service_ports.h"
#include "proxy/traffic_counters.h"

namespace svcproxy::proxy {

// One run of the conntrack reconciler (kube-proxy's CleanStaleEntries) over
// one IP family's entries.
struct ConntrackReconcile {
  model::IPFamily family = model::IPFamily::V4;
  size_t deleted = 0;
  std::chrono::microseconds duration{0};
};

struct SyncResult {
  bool full = false;
  size_t operations = 0;         // kernel objects changed (partial) or programmed (full)
  size_t conntrack_deleted = 0;  // stale UDP entries removed
  std::vector<ConntrackReconcile> conntrack_reconciles;  // at most one per family
  std::chrono::microseconds duration{0};
  std::string error;  // empty: success
  // Every service port left out (conflicts) as the dataplane now holds
  // them, one line each: complete after every sync, not only this one's.
  std::vector<std::string> warnings;
};

// What svcproxy's tables hold: recounted from the whole ruleset at every full
// sync, adjusted by each partial sync's diff in between.
struct KernelObjects {
  size_t chains = 0;
  size_t sets = 0;  // sets and maps
  size_t elements = 0;
  auto operator<=>(const KernelObjects&) const = default;
};

// A finished drift repair (Dataplane::finish_repair).
struct RepairResult {
  SyncResult sync;                  // the repair: duration is the event thread's share only
  std::string check_error;          // the readback or compile failed (no repair unless sync.full)
  dataplane::DriftSummary drifted;  // what was repaired
  std::chrono::microseconds readback{0}, compile{0}, compare{0};  // off the event thread
  size_t kernel_elements = 0;                                     // elements read back
  bool raced = false;                                             // commits raced the readback
};

class Dataplane {
 public:
  virtual ~Dataplane() = default;

  // The node's configuration changed (Node, ServiceCIDR objects): what is
  // programmed depends on it, so the next sync must be full.
  virtual void set_node(const model::NodeConfig& node) = 0;
  // The next sync must be full: at start, after a failure, after set_node.
  virtual bool needs_full_sync() const = 0;

  // Programs `ports`, the state of every service (start, failure, node
  // change, SIGHUP, the hourly resync): O(cluster).
  virtual SyncResult full_sync(const std::vector<model::ServicePortState>& ports) = 0;
  // Sets the ports of `services` to `ports` (a service without ports is
  // removed): O(changes). Requires !needs_full_sync().
  virtual SyncResult apply_changes(const std::vector<model::ObjectRef>& services,
                                   const std::vector<model::ServicePortState>& ports) = 0;
  // Drift repair (the periodic timer's hook): starts making what is
  // programmed equal to what was last applied, whatever edited it
  // meanwhile. The work runs off the event thread: when repair_fd() turns
  // readable, finish_repair() applies what drifted. Nothing to do by
  // default (userspace: the proxy's listeners are the process's own).
  virtual void repair() {}
  // Readable when a started repair can be finished; -1 when none can be.
  // It may change after repair(): poll the current one.
  virtual int repair_fd() const { return -1; }
  // Applies the finished repair; nullopt when there is none or it was
  // voided (a full sync, a failure or a node change since it started).
  virtual std::optional<RepairResult> finish_repair() { return std::nullopt; }

  // What the kernel holds, for the gauges; none when the backend has no
  // nftables objects (userspace).
  virtual std::optional<KernelObjects> kernel_objects() const { return std::nullopt; }
  // Logs the backend's own counters after a sync (userspace proxy stats).
  virtual void log_stats() {}
  // The per-service traffic counters, for /metrics and /debug (any thread
  // may read them); null when the backend has none (userspace mode,
  // --no-counters).
  virtual std::shared_ptr<TrafficCounters> traffic_counters() const { return nullptr; }
};

}  // namespace svcproxy::proxy
