// The nftables dataplane: the incremental compiler (what is programmed), the
// kernel behind RulesetKernel (netlink in the daemon, an in-memory fake in
// unit tests) and the conntrack cleanup. A change is compiled by
// RulesetCompiler::update and committed as one diff (O(changes)); the whole
// ruleset is committed only at start, after any failure, after a node
// change, when the compiler asks for it, and on full_sync (SIGHUP, hourly).
// Drift (someone else edited svcproxy's tables) is found by repair()'s check
// off the event thread (dataplane/drift_check.h) and undone by a partial
// transaction of only what drifted.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/compile.h"
#include "dataplane/conntrack.h"
#include "dataplane/drift.h"
#include "dataplane/drift_check.h"
#include "dataplane/ruleset_kernel.h"
#include "model/node_config.h"
#include "model/objects.h"
#include "model/service_ports.h"
#include "proxy/dataplane.h"
#include "proxy/nftables_traffic_counters.h"

namespace svcproxy::proxy {

// What the sync loop deletes from conntrack (a seam: unit tests record the
// calls instead of needing CAP_NET_ADMIN).
class ConntrackCleanup {
 public:
  virtual ~ConntrackCleanup() = default;
  virtual size_t delete_stale(const std::vector<dataplane::StaleUdpFlow>& flows) = 0;
  virtual size_t delete_orphans(const std::vector<model::ServicePortState>& ports,
                                const std::vector<model::IPAddress>& nodeport_ips) = 0;
};

// The real one: this network namespace's conntrack table, opened on first use.
class KernelConntrack final : public ConntrackCleanup {
 public:
  size_t delete_stale(const std::vector<dataplane::StaleUdpFlow>& flows) override;
  size_t delete_orphans(const std::vector<model::ServicePortState>& ports,
                        const std::vector<model::IPAddress>& nodeport_ips) override;

 private:
  dataplane::ConntrackCleaner& cleaner();
  std::optional<dataplane::ConntrackCleaner> cleaner_;
};

class SyncLoop final : public Dataplane {
 public:
  // `kernel` and `conntrack` must outlive the loop. `read_kernel` reads
  // `kernel`'s tables back for repair(), on the drift check's thread (the
  // daemon: dataplane::netlink_readback(), a socket of its own).
  SyncLoop(model::NodeConfig node, dataplane::RulesetKernel& kernel, ConntrackCleanup& conntrack,
           dataplane::DriftCheck::ReadKernel read_kernel);

  void set_node(const model::NodeConfig& node) override;
  bool needs_full_sync() const override { return !kernel_.in_sync() || node_changed_; }
  SyncResult full_sync(const std::vector<model::ServicePortState>& ports) override;
  SyncResult apply_changes(const std::vector<model::ObjectRef>& services,
                           const std::vector<model::ServicePortState>& ports) override;
  // Starts a drift check against what was last applied (none while one
  // runs or the next sync is full).
  void repair() override;
  int repair_fd() const override { return drift_ ? drift_->fd() : -1; }
  // The check's repair less what syncs changed since it started: a partial
  // transaction, or the whole ruleset if the repair needs it.
  std::optional<RepairResult> finish_repair() override;
  std::optional<KernelObjects> kernel_objects() const override { return objects_; }
  std::shared_ptr<TrafficCounters> traffic_counters() const override { return counters_; }

  const model::NodeConfig& node() const { return compiler_.node(); }
  const dataplane::RulesetCompiler& compiler() const { return compiler_; }

 private:
  // Start, failure, node change: neither the kernel nor conntrack is known.
  void program_from_scratch(const std::vector<model::ServicePortState>& ports, SyncResult& result);
  void program_diff(const dataplane::RulesetDiff& diff, bool whole_ruleset, SyncResult& result);
  // Keeps conflict warnings per service, so every result lists all of them.
  void record_warnings(const std::vector<model::ObjectRef>* services);
  SyncResult finish(SyncResult result, std::chrono::steady_clock::time_point start);
  // Elements per set (by family and name) and chains: what the kernel holds,
  // kept exact from each diff in O(changes).
  void count_objects(const dataplane::ir::RulesetRef& ruleset);
  void count_objects(const dataplane::RulesetDiff& diff);
  // What the compiler was given, per service (O(changes) to keep).
  void remember(const std::vector<model::ObjectRef>* services, const std::vector<model::ServicePortState>& ports);
  dataplane::DriftCheck::Snapshot snapshot() const;

  dataplane::RulesetCompiler compiler_;
  dataplane::RulesetKernel& kernel_;
  ConntrackCleanup& conntrack_;
  KernelObjects objects_;
  std::map<std::pair<model::IPFamily, std::string>, size_t> set_elements_;
  std::map<model::ObjectRef, std::vector<std::string>> warnings_;  // by the service that lost
  std::vector<std::string> unattributed_warnings_;
  bool node_changed_ = false;

  // The ports of every service as the compiler holds them, each vector
  // immutable once stored: a drift check's snapshot shares them.
  std::map<model::ObjectRef, std::shared_ptr<const std::vector<model::ServicePortState>>> applied_;
  dataplane::DriftCheck::ReadKernel read_kernel_;
  std::optional<dataplane::DriftCheck> drift_;  // created at the first repair()
  // Partial syncs applied since the running check's snapshot; the check is
  // void when a full sync or a failure happened meanwhile.
  dataplane::ChangedSinceSnapshot changed_since_check_;
  bool check_void_ = false;
  // With NodeConfig::counters: told what remember() keeps.
  std::shared_ptr<NftablesTrafficCounters> counters_;
};

}  // namespace svcproxy::proxy
