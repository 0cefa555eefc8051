#include "proxy/sync_loop.h"

#include <iostream>

#include "model/service_ports.h"

namespace svcproxy::proxy {

SyncLoop::SyncLoop(model::NodeConfig node) : compiler_(std::move(node)) {}

SyncResult SyncLoop::sync(const model::ClusterState& cluster, bool force_full) {
  const auto start = std::chrono::steady_clock::now();
  SyncResult result;
  auto state = model::build_proxy_state(cluster, compiler_.node());
  try {
    if (!backend_.in_sync()) {
      // Start, or after a failure: what the kernel and conntrack hold is
      // unknown. Replace the tables atomically, then delete the UDP entries
      // whose endpoint is gone — only those (no flush: kube-proxy #122740).
      result.full = true;  // also when it fails: metrics count it as a full sync
      compiler_.reset(state.ports);
      const auto ruleset = compiler_.ruleset();
      backend_.apply_full(ruleset);
      for (const auto& t : ruleset.tables) result.operations += t.chains.size() + t.sets.size();
      if (!conntrack_) conntrack_.emplace();
      result.conntrack_deleted = conntrack_->delete_orphans(state.ports, compiler_.node().nodeport_ips);
    } else {
      // The compiler knows what changed, even when a full sync is wanted
      // (periodic drift repair, SIGHUP): stale UDP flows come from the diff.
      auto diff = compiler_.replace_all(state.ports);
      if (force_full || diff.needs_full_sync) {
        result.full = true;
        backend_.apply_full(compiler_.ruleset());
      } else {
        backend_.apply_partial(diff, compiler_);
      }
      result.operations = diff.operations();
      if (!diff.stale_udp_flows.empty()) {
        if (!conntrack_) conntrack_.emplace();
        result.conntrack_deleted = conntrack_->delete_stale(diff.stale_udp_flows);
      }
    }
  } catch (const std::exception& e) {
    // The backend is now out of sync: the next sync is full.
    result.error = e.what();
  }
  for (auto& w : compiler_.take_warnings()) std::cerr << "W " << w << "\n";
  ports_ = std::move(state.ports);
  result.duration =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  return result;
}

}  // namespace svcproxy::proxy
