#include "proxy/sync_loop.h"

#include <algorithm>

namespace svcproxy::proxy {

namespace {

// The service a compiler warning is about: they read "service port
// <ns>/<name>/<protocol>[/<port name>]: ..." (names hold no '/').
std::optional<model::ObjectRef> warning_service(const std::string& warning) {
  constexpr std::string_view kPrefix = "service port ";
  if (!warning.starts_with(kPrefix)) return std::nullopt;
  const size_t ns_end = warning.find('/', kPrefix.size());
  if (ns_end == std::string::npos) return std::nullopt;
  const size_t name_end = warning.find('/', ns_end + 1);
  if (name_end == std::string::npos) return std::nullopt;
  return model::ObjectRef{warning.substr(kPrefix.size(), ns_end - kPrefix.size()),
                          warning.substr(ns_end + 1, name_end - ns_end - 1)};
}

}  // namespace

dataplane::ConntrackCleaner& KernelConntrack::cleaner() {
  if (!cleaner_) cleaner_.emplace();
  return *cleaner_;
}

size_t KernelConntrack::delete_stale(const std::vector<dataplane::StaleUdpFlow>& flows) {
  return flows.empty() ? 0 : cleaner().delete_stale(flows);
}

size_t KernelConntrack::delete_orphans(const std::vector<model::ServicePortState>& ports,
                                       const std::vector<model::IPAddress>& nodeport_ips) {
  return cleaner().delete_orphans(ports, nodeport_ips);
}

SyncLoop::SyncLoop(model::NodeConfig node, dataplane::RulesetKernel& kernel, ConntrackCleanup& conntrack)
    : compiler_(std::move(node)), kernel_(kernel), conntrack_(conntrack) {}

void SyncLoop::set_node(const model::NodeConfig& node) {
  if (node == compiler_.node()) return;
  compiler_ = dataplane::RulesetCompiler(node);
  node_changed_ = true;
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

void SyncLoop::program_from_scratch(const std::vector<model::ServicePortState>& ports, SyncResult& result) {
  // Replace the tables atomically, then delete the UDP entries whose
  // endpoint is gone — only those (no flush: kube-proxy #122740).
  result.full = true;  // also when it fails: metrics count it as a full sync
  compiler_.reset(ports);
  record_warnings(nullptr);
  // Encoded straight from the compiler's state (no copy of the ruleset).
  kernel_.apply_full(compiler_);
  node_changed_ = false;
  count_objects(compiler_.ruleset_ref());
  result.operations = objects_.chains + objects_.sets;
  result.conntrack_deleted = conntrack_.delete_orphans(ports, compiler_.node().nodeport_ips);
}

void SyncLoop::program_diff(const dataplane::RulesetDiff& diff, bool whole_ruleset, SyncResult& result) {
  if (whole_ruleset || diff.needs_full_sync) {
    result.full = true;
    kernel_.apply_full(compiler_);
    count_objects(compiler_.ruleset_ref());
  } else if (diff.operations() > 0) {
    kernel_.apply_partial(diff, compiler_);
    count_objects(diff);
  }
  result.operations = diff.operations();
  // Stale flows come from the diff, also when the whole ruleset was sent.
  if (!diff.stale_udp_flows.empty()) result.conntrack_deleted = conntrack_.delete_stale(diff.stale_udp_flows);
}

SyncResult SyncLoop::full_sync(const std::vector<model::ServicePortState>& ports) {
  const auto start = std::chrono::steady_clock::now();
  SyncResult result;
  try {
    if (needs_full_sync()) {
      program_from_scratch(ports, result);
    } else {
      // The compiler knows what changed even when everything is sent again
      // (drift repair, SIGHUP): stale UDP flows come from the diff.
      const auto diff = compiler_.replace_all(ports);
      record_warnings(nullptr);
      program_diff(diff, true, result);
    }
  } catch (const std::exception& e) {
    // The kernel is now out of sync: the next sync is full.
    result.error = e.what();
  }
  return finish(std::move(result), start);
}

SyncResult SyncLoop::apply_changes(const std::vector<model::ObjectRef>& services,
                                   const std::vector<model::ServicePortState>& ports) {
  const auto start = std::chrono::steady_clock::now();
  SyncResult result;
  if (needs_full_sync()) {
    result.error = "a full sync is needed first (start, failure or node change)";
    return finish(std::move(result), start);
  }
  try {
    const auto diff = compiler_.update(services, ports);
    record_warnings(&services);
    program_diff(diff, false, result);
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  return finish(std::move(result), start);
}

SyncResult SyncLoop::repair() {
  // Until a readback diff lands (i17-drift), repair as the periodic full
  // sync always did: send the compiler's whole ruleset in one transaction.
  const auto start = std::chrono::steady_clock::now();
  SyncResult result;
  result.full = true;
  try {
    kernel_.apply_full(compiler_);
    count_objects(compiler_.ruleset_ref());
    result.operations = objects_.chains + objects_.sets;
  } catch (const std::exception& e) {
    result.error = e.what();
  }
  return finish(std::move(result), start);
}

void SyncLoop::record_warnings(const std::vector<model::ObjectRef>* services) {
  // A conflict's warning names the port that lost; the compiler reports it
  // whenever it compiles that port. So the services it was given, and any
  // other it recompiled and reported on, have exactly the warnings it just
  // reported. (One it recompiled into winning keeps its old line until the
  // next full sync: the compiler does not say which ports it recompiled.)
  if (services) {
    for (const auto& s : *services) warnings_.erase(s);
  } else {
    warnings_.clear();
  }
  unattributed_warnings_.clear();
  std::map<model::ObjectRef, std::vector<std::string>> fresh;
  for (auto& w : compiler_.take_warnings()) {
    if (const auto owner = warning_service(w)) {
      fresh[*owner].push_back(std::move(w));
    } else {
      unattributed_warnings_.push_back(std::move(w));
    }
  }
  for (auto& [owner, lines] : fresh) warnings_[owner] = std::move(lines);
}

SyncResult SyncLoop::finish(SyncResult result, std::chrono::steady_clock::time_point start) {
  for (const auto& [service, lines] : warnings_) result.warnings.insert(result.warnings.end(), lines.begin(), lines.end());
  result.warnings.insert(result.warnings.end(), unattributed_warnings_.begin(), unattributed_warnings_.end());
  result.duration =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  return result;
}

}  // namespace svcproxy::proxy
