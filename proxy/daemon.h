// `svcproxy run`'s daemon: the pipeline
//
//   ClusterSource (API informer | manifests) -> watch::Store
//     -> ChangeTracker (dirty services, node changed)
//     -> ServiceModel (build_service_state per dirty service)
//     -> Dataplane::apply_changes (SyncLoop: RulesetCompiler::update ->
//        RulesetKernel; or the userspace proxy)
//
// and the handlers that drive it from one poll loop: on change, on timer,
// on signal, sync. The first sync waits until the source has listed
// everything and is full; after it, changes are applied as partial syncs of
// the dirty services (no sooner than --min-sync-period after the previous
// sync; changes arriving meanwhile coalesce). A full sync (the model rebuilt
// from the whole store, the whole ruleset programmed) runs only at start,
// after a failure (retried with backoff), on a node change, on SIGHUP and
// hourly (kube-proxy's fullSyncPeriod). The --sync-period timer applies what
// is pending and starts Dataplane::repair (drift repair: a readback diff off
// this thread); its fd is polled beside the others and the repair, only what
// drifted, is applied when it is ready. SIGTERM/SIGINT exit 0 leaving the
// rules in place.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "dataplane/ruleset_kernel.h"
#include "model/node_config.h"
#include "proxy/change_tracker.h"
#include "proxy/cluster_source.h"
#include "proxy/dataplane.h"
#include "proxy/debug_feed.h"
#include "proxy/health.h"
#include "proxy/http_server.h"
#include "proxy/local_addresses.h"
#include "proxy/localhost_nodeports.h"
#include "proxy/log.h"
#include "proxy/metrics.h"
#include "proxy/run.h"
#include "proxy/service_counters_collector.h"
#include "proxy/service_model.h"
#include "proxy/sync_loop.h"

namespace svcproxy::proxy {

// Lines about the same problem are logged once, again only after the
// problem went away and came back (no log spam in steady state).
class OnceLog {
 public:
  explicit OnceLog(Log& log) : log_(log) {}
  void warnings(const std::vector<std::string>& lines);

 private:
  Log& log_;
  std::set<std::string> shown_;
};

class Daemon {
 public:
  // Starts the HTTP servers and the source; throws FlagError on bad node
  // flags (exit 2) and runtime_error when the source cannot be read.
  Daemon(const RunOptions& options, Log& log);
  ~Daemon();
  // Runs until SIGTERM/SIGINT; returns the exit code.
  int run();

 private:
  enum class SyncKind {
    Changes,   // what is pending, partially when the dataplane allows it
    Periodic,  // what is pending, then drift repair; hourly a full sync
    Full,      // the whole model rebuilt and programmed
  };
  using Clock = std::chrono::steady_clock;

  // Handlers, one per event source of the poll loop.
  bool on_signal();  // false: exit
  void on_change();
  void take_changes();
  void on_timer();
  void on_deferred();
  void on_source_readable();
  void on_repair_ready();
  void log_repair(const RepairResult& d);
  void record_sync(const SyncResult& r, const char* reason, const char* mode);

  void source_read();
  void count_localhost_rejects(const model::NodeConfig& node);
  void try_start();
  // Recomputes the node's configuration from Nodes, ServiceCIDRs and the
  // interfaces; creates the dataplane at the first call. True if it changed.
  bool refresh_node();
  void sync(SyncKind kind, const char* reason);
  SyncResult program(SyncKind kind, const ChangeBatch& changes, bool& rebuilt);
  void after_success(const SyncResult& r, const char* reason, const ChangeBatch& synced, Clock::time_point committed);
  void schedule_pending();

  const RunOptions options_;
  Log& log_;
  NodeFlags node_flags_;
  const InterfaceAddresses interfaces_;
  const std::chrono::system_clock::time_point process_start_;
  base::UniqueFd signal_fd_;
  base::UniqueFd period_fd_;  // every sync period
  base::UniqueFd defer_fd_;   // one-shot: --min-sync-period or a retry's backoff
  Metrics metrics_;
  // nftables mode with localhost NodePorts: the reject rules' counters,
  // read at each scrape (declared before the server, which reads them).
  std::unique_ptr<LocalhostRejectCounters> localhost_rejects_;
  std::shared_ptr<ServiceCountersCollector> counters_collector_;  // fed once the dataplane exists
  ProxyHealth health_;
  DebugFeed debug_;  // the /debug pages' view of this daemon (outlives server_)
  std::unique_ptr<HttpServer> server_;
  ChangeTracker tracker_;
  std::unique_ptr<ClusterSource> source_;

  // nftables mode: the kernel seam and conntrack the SyncLoop programs.
  std::unique_ptr<dataplane::RulesetKernel> kernel_;
  std::unique_ptr<ConntrackCleanup> conntrack_;
  std::unique_ptr<Dataplane> dataplane_;  // created at the first sync
  // nftables mode with loopback in --nodeport-addresses: the TCP relay on
  // 127.0.0.1 / ::1 (KEP-6032), given the same ports as the dataplane.
  std::unique_ptr<LocalhostNodePorts> localhost_;
  ServiceModel model_;
  model::NodeConfig node_;
  std::vector<std::string> node_warnings_;
  OnceLog once_;

  bool started_ = false;
  ChangeBatch pending_;       // arrived, not yet synced
  bool sync_wanted_ = false;  // pending_ holds something to sync
  int failures_ = 0;          // consecutive failed syncs
  Clock::time_point next_sync_allowed_;
  bool defer_armed_ = false;
  Clock::time_point last_full_sync_;
};

}  // namespace svcproxy::proxy
