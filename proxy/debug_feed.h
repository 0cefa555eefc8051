// What the daemon tells the /debug page, and the page's answers. The sync
// loop's thread feeds it (the node's configuration, each sync, the source's
// state: small values under a mutex); the HTTP thread builds a DebugState
// from that, a snapshot of the store and one read of the traffic counters,
// only when a page is asked for (O(cluster) then; nothing per sync beyond
// one ring entry).
#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "model/node_config.h"
#include "proxy/cluster_source.h"
#include "proxy/debug_state.h"
#include "proxy/sync_history.h"
#include "proxy/traffic_counters.h"
#include "watch/store.h"

namespace svcproxy::proxy {

struct DebugSettings {
  std::string mode;  // "nftables", "userspace"
  std::chrono::milliseconds sync_period{0};
  std::chrono::milliseconds min_sync_period{0};
};

// An answer of the /debug endpoints.
struct DebugAnswer {
  int status = 200;
  std::string content_type;
  std::string body;
  std::string csp;  // Content-Security-Policy; empty: none
};

class DebugFeed {
 public:
  explicit DebugFeed(DebugSettings settings) : settings_(std::move(settings)) {}

  // The cluster the services come from; must outlive every answer (null:
  // none yet, no services shown).
  void set_store(const watch::Store* store);
  // Read at each answer; must outlive every answer (null: none, shown "—").
  void set_counters(TrafficCounters* counters);
  void set_node(const model::NodeConfig& node);
  void set_source(SourceState source);
  void record_sync(SyncRecord sync) { history_.record(std::move(sync)); }

  // Any thread.
  DebugState state(std::string_view filter = {}) const;
  // "/debug/" (the page) and "/debug/state" (its JSON); nullopt: not ours.
  std::optional<DebugAnswer> answer(std::string_view path, std::string_view query) const;

 private:
  const DebugSettings settings_;
  SyncHistory history_;
  mutable std::mutex mutex_;
  const watch::Store* store_ = nullptr;
  TrafficCounters* counters_ = nullptr;
  std::optional<model::NodeConfig> node_;
  SourceState source_;
};

}  // namespace svcproxy::proxy
