#include "proxy/sync_loop.h"

#include "model/service_ports.h"

namespace svcproxy::proxy {

SyncLoop::SyncLoop(model::NodeConfig node)
    : ports_(std::make_shared<const std::vector<model::ServicePortState>>()), compiler_(std::move(node)) {}

void SyncLoop::set_node(model::NodeConfig node) {
  if (node == compiler_.node()) return;
  compiler_ = dataplane::RulesetCompiler(std::move(node));
  node_changed_ = true;
  check_void_ = true;
}

void SyncLoop::count_objects(const dataplane::ir::RulesetRef& ruleset) {
  objects_ = {};
  set_elements_.clear();
  for (const auto& t : ruleset.tables) {
    objects_.chains += t.chains.size();
    for (const auto& set : t.sets) set_elements_[{t.header.family, set.set->name}] = set.size();
  }
  objects_.sets = set_elements_.size();
  objects_.elements = 0;
  for (const auto& [key, n] : set_elements_) objects_.elements += n;
}

void SyncLoop::count_objects(const dataplane::RulesetDiff& diff) {
  for (const auto& t : diff.tables) {
    objects_.chains += t.added_chains.size();
    objects_.chains -= std::min(objects_.chains, t.deleted_chains.size());
    for (const auto& set : t.added_sets) {
      auto& n = set_elements_[{t.family, set.name}];
      objects_.elements += set.elements.size();
      objects_.elements -= std::min(objects_.elements, n);
      n = set.elements.size();
    }
    for (const auto& [name, element] : t.deleted_elements) {
      auto& n = set_elements_[{t.family, name}];
      if (n > 0 && objects_.elements > 0) {
        --n;
        --objects_.elements;
      }
    }
    for (const auto& [name, element] : t.added_elements) {
      ++set_elements_[{t.family, name}];
      ++objects_.elements;
    }
    for (const auto& name : t.deleted_sets) {
      const auto it = set_elements_.find({t.family, name});
      if (it == set_elements_.end()) continue;
      objects_.elements -= std::min(objects_.elements, it->second);
      set_elements_.erase(it);
    }
  }
  objects_.sets = set_elements_.size();
}

SyncResult SyncLoop::sync(const model::ClusterState& cluster, bool force_full) {
  const auto start = std::chrono::steady_clock::now();
  SyncResult result;
  auto state = model::build_proxy_state(cluster, compiler_.node());
  try {
    if (!backend_.in_sync() || node_changed_) {
      // Start, after a failure or a node change: what the kernel and
      // conntrack hold is unknown. Replace the tables atomically, then
      // delete the UDP entries whose endpoint is gone — only those (no
      // flush: kube-proxy #122740).
      result.full = true;  // also when it fails: metrics count it as a full sync
      compiler_.reset(state.ports);
      // Encoded straight from the compiler's state (no copy of the ruleset).
      check_void_ = true;
      backend_.apply_full(compiler_);
      node_changed_ = false;
      count_objects(compiler_.ruleset_ref());
      result.operations = objects_.chains + objects_.sets;
      if (!conntrack_) conntrack_.emplace();
      result.conntrack_deleted = conntrack_->delete_orphans(state.ports, compiler_.node().nodeport_ips);
    } else {
      // The compiler knows what changed, even when a full sync is wanted
      // (periodic drift repair, SIGHUP): stale UDP flows come from the diff.
      auto diff = compiler_.replace_all(state.ports);
      if (force_full || diff.needs_full_sync) {
        result.full = true;
        check_void_ = true;
        backend_.apply_full(compiler_);
        count_objects(compiler_.ruleset_ref());
      } else {
        if (drift_ && drift_->busy()) changed_since_check_.record(diff);
        backend_.apply_partial(diff, compiler_);
        count_objects(diff);
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
    check_void_ = true;
  }
  for (const auto& s : state.skipped) result.warnings.push_back("skipped " + s.object.str() + ": " + s.reason);
  for (auto& w : compiler_.take_warnings()) result.warnings.push_back(std::move(w));
  ports_ = std::make_shared<const std::vector<model::ServicePortState>>(std::move(state.ports));
  result.duration =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  return result;
}

bool SyncLoop::start_drift_check() {
  if (!backend_.in_sync() || node_changed_) return false;  // the next sync is full anyway
  if (!drift_) drift_.emplace(dataplane::netlink_readback());
  // The snapshot is the pointer to what the last sync programmed: the
  // check compiles it on its own thread (see drift_check.h).
  if (!drift_->start({ports_, compiler_.node()})) return false;
  changed_since_check_.clear();
  check_void_ = false;
  return true;
}

DriftRepairResult SyncLoop::finish_drift_check() {
  DriftRepairResult out;
  auto check = drift_ ? drift_->take_result() : std::nullopt;
  if (!check || check_void_ || node_changed_ || !backend_.in_sync()) return out;
  const auto start = std::chrono::steady_clock::now();
  out.checked = true;
  out.readback = check->readback;
  out.compile = check->compile;
  out.compare = check->compare;
  out.kernel_elements = check->kernel_elements;
  out.raced = check->raced;
  out.check_error = check->error;
  auto& repair = check->repair;
  try {
    if (repair.needs_full_sync) {
      // A missing table or an object no partial transaction can fix.
      out.sync.full = true;
      out.drifted = dataplane::summarize(repair);
      backend_.apply_full(compiler_);
      count_objects(compiler_.ruleset_ref());
      out.sync.operations = objects_.chains + objects_.sets;
    } else if (check->error.empty()) {
      changed_since_check_.drop_from(repair);
      out.drifted = dataplane::summarize(repair);
      // The object counts describe what the compiler holds, which the
      // repair restores: they do not change.
      backend_.apply_partial(repair, compiler_);
      out.sync.operations = repair.operations();
    }
  } catch (const std::exception& e) {
    out.sync.error = e.what();  // the backend is out of sync: the next sync is full
  }
  changed_since_check_.clear();
  out.sync.duration =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  return out;
}

}  // namespace svcproxy::proxy
