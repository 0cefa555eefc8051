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

// kube-proxy's conntrack reconciler runs once per family (one proxier
// each); so does ours, each family's run timed for its metrics. `run` gets
// the family and returns how many entries it deleted; a family with nothing
// to look at is skipped (no dump, no observation).
template <typename HasWork, typename Run>
void reconcile_conntrack(SyncResult& result, HasWork has_work, Run run) {
  for (const auto family : {model::IPFamily::V4, model::IPFamily::V6}) {
    if (!has_work(family)) continue;
    const auto start = std::chrono::steady_clock::now();
    const size_t deleted = run(family);
    result.conntrack_deleted += deleted;
    result.conntrack_reconciles.push_back(
        {family, deleted,
         std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start)});
  }
}

template <typename T>
std::vector<T> of_family(const std::vector<T>& all, model::IPFamily family) {
  std::vector<T> out;
  for (const auto& x : all)
    if (x.family == family) out.push_back(x);
  return out;
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

SyncLoop::SyncLoop(model::NodeConfig node, dataplane::RulesetKernel& kernel, ConntrackCleanup& conntrack,
                   dataplane::DriftCheck::ReadKernel read_kernel)
    : compiler_(std::move(node)), kernel_(kernel), conntrack_(conntrack), read_kernel_(std::move(read_kernel)) {
  if (compiler_.node().counters) counters_ = std::make_shared<NftablesTrafficCounters>(netlink_counter_reader());
}

void SyncLoop::set_node(const model::NodeConfig& node) {
  if (node == compiler_.node()) return;
  compiler_ = dataplane::RulesetCompiler(node);
  node_changed_ = true;
  check_void_ = true;
}

void SyncLoop::remember(const std::vector<model::ObjectRef>* services,
                        const std::vector<model::ServicePortState>& ports) {
  if (services) {
    for (const auto& s : *services) applied_.erase(s);
  } else {
    applied_.clear();
  }
  std::map<model::ObjectRef, std::vector<model::ServicePortState>> grouped;
  for (const auto& p : ports) grouped[p.name.service].push_back(p);
  for (auto& [service, list] : grouped)
    applied_[service] = std::make_shared<const std::vector<model::ServicePortState>>(std::move(list));
  if (!counters_) return;
  if (!services) {
    counters_->set_all(applied_);
    return;
  }
  for (const auto& s : *services) {
    auto it = applied_.find(s);
    counters_->set(s, it == applied_.end() ? nullptr : it->second);
  }
}

// A copy of one pointer per service (and an atomic increment each): at 100k
// services about 1 ms and 1.6 MB on the event thread, against a ruleset copy
// of seconds. The ports are concatenated and compiled on the check's thread.
dataplane::DriftCheck::Snapshot SyncLoop::snapshot() const {
  dataplane::DriftCheck::Snapshot out{{}, compiler_.node()};
  out.services.reserve(applied_.size());
  for (const auto& [service, ports] : applied_) out.services.push_back(ports);
  return out;
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
  check_void_ = true;
  compiler_.reset(ports);
  remember(nullptr, ports);
  record_warnings(nullptr);
  // Encoded straight from the compiler's state (no copy of the ruleset).
  kernel_.apply_full(compiler_);
  node_changed_ = false;
  count_objects(compiler_.ruleset_ref());
  result.operations = objects_.chains + objects_.sets;
  std::vector<model::ServicePortState> udp_v4, udp_v6;  // only UDP entries can be orphans
  for (const auto& p : ports)
    if (p.name.protocol == model::Protocol::UDP) (p.name.family == model::IPFamily::V4 ? udp_v4 : udp_v6).push_back(p);
  const auto udp = [&](model::IPFamily f) -> const auto& { return f == model::IPFamily::V4 ? udp_v4 : udp_v6; };
  const auto& nodeport_ips = compiler_.node().nodeport_ips;
  reconcile_conntrack(
      result, [&](model::IPFamily f) { return !udp(f).empty(); },
      [&](model::IPFamily f) { return conntrack_.delete_orphans(udp(f), of_family(nodeport_ips, f)); });
}

void SyncLoop::program_diff(const dataplane::RulesetDiff& diff, bool whole_ruleset, SyncResult& result) {
  if (whole_ruleset || diff.needs_full_sync) {
    result.full = true;
    check_void_ = true;
    kernel_.apply_full(compiler_);
    count_objects(compiler_.ruleset_ref());
  } else if (diff.operations() > 0) {
    if (drift_ && drift_->busy()) changed_since_check_.record(diff);
    kernel_.apply_partial(diff, compiler_);
    count_objects(diff);
  }
  result.operations = diff.operations();
  // Stale flows come from the diff, also when the whole ruleset was sent.
  reconcile_conntrack(
      result, [&](model::IPFamily f) { return !of_family(diff.stale_udp_flows, f).empty(); },
      [&](model::IPFamily f) { return conntrack_.delete_stale(of_family(diff.stale_udp_flows, f)); });
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
      remember(nullptr, ports);
      record_warnings(nullptr);
      program_diff(diff, true, result);
    }
  } catch (const std::exception& e) {
    // The kernel is now out of sync: the next sync is full.
    result.error = e.what();
    check_void_ = true;
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
    remember(&services, ports);
    record_warnings(&services);
    program_diff(diff, false, result);
  } catch (const std::exception& e) {
    result.error = e.what();
    check_void_ = true;
  }
  return finish(std::move(result), start);
}

void SyncLoop::repair() {
  if (needs_full_sync()) return;  // the next sync replaces everything anyway
  if (!drift_) drift_.emplace(read_kernel_);
  if (!drift_->start(snapshot())) return;  // one runs: its result comes first
  changed_since_check_.clear();
  check_void_ = false;
}

std::optional<RepairResult> SyncLoop::finish_repair() {
  auto check = drift_ ? drift_->take_result() : std::nullopt;
  if (!check || check_void_ || needs_full_sync()) return std::nullopt;
  const auto start = std::chrono::steady_clock::now();
  RepairResult out;
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
      kernel_.apply_full(compiler_);
      count_objects(compiler_.ruleset_ref());
      out.sync.operations = objects_.chains + objects_.sets;
    } else if (check->error.empty()) {
      changed_since_check_.drop_from(repair);
      out.drifted = dataplane::summarize(repair);
      // The object counts describe what the compiler holds, which the
      // repair restores: they do not change.
      if (repair.operations() > 0) kernel_.apply_partial(repair, compiler_);
      out.sync.operations = repair.operations();
    }
  } catch (const std::exception& e) {
    out.sync.error = e.what();  // the kernel is out of sync: the next sync is full
  }
  changed_since_check_.clear();
  out.sync = finish(std::move(out.sync), start);
  return out;
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
  for (const auto& [service, lines] : warnings_)
    result.warnings.insert(result.warnings.end(), lines.begin(), lines.end());
  result.warnings.insert(result.warnings.end(), unattributed_warnings_.begin(), unattributed_warnings_.end());
  result.duration =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  return result;
}

}  // namespace svcproxy::proxy
