#include "proxy/debug_feed.h"

#include "proxy/debug_page.h"

namespace svcproxy::proxy {

void DebugFeed::set_store(const watch::Store* store) {
  std::lock_guard lock(mutex_);
  store_ = store;
}

void DebugFeed::set_counters(TrafficCounters* counters) {
  std::lock_guard lock(mutex_);
  counters_ = counters;
}

void DebugFeed::set_node(const model::NodeConfig& node) {
  std::lock_guard lock(mutex_);
  node_ = node;
}

void DebugFeed::set_source(SourceState source) {
  std::lock_guard lock(mutex_);
  source_ = std::move(source);
}

DebugState DebugFeed::state(std::string_view filter) const {
  std::optional<model::NodeConfig> node;
  const watch::Store* store = nullptr;
  TrafficCounters* counters = nullptr;
  DebugState out;
  {
    std::lock_guard lock(mutex_);
    node = node_;
    store = store_;
    counters = counters_;
    const auto& s = source_;
    out.watch = {s.kind, s.relists, s.errors, s.problem, {}};
    for (const auto& r : s.resources)
      out.watch.resources.push_back({r.resource, r.resource_version, r.lists, r.failures, r.last_error});
  }
  out.origin = "daemon";
  out.time = format_time(std::chrono::system_clock::now());
  out.syncs = history_.list();
  std::optional<TrafficSnapshot> traffic;
  if (counters) {
    auto read = counters->read();
    if (read) {
      traffic = std::move(*read);
      out.counters = true;
    } else {
      out.counters_error = read.error();
    }
  }
  // Before the first sync the node is not known yet: no services either.
  if (node) out.node = describe_node(*node);
  if (node && store)
    out.services = filter_services(collect_services(store->snapshot(), *node, traffic ? &*traffic : nullptr), filter);
  out.node.mode = settings_.mode;
  out.node.sync_period_ms = static_cast<uint64_t>(settings_.sync_period.count());
  out.node.min_sync_period_ms = static_cast<uint64_t>(settings_.min_sync_period.count());
  return out;
}

std::optional<DebugAnswer> DebugFeed::answer(std::string_view path, std::string_view query) const {
  if (path == "/debug" || path == "/debug/") {
    const std::string filter = query_parameter(query, "filter");
    const std::string nonce = make_nonce();
    return DebugAnswer{200, "text/html; charset=utf-8", render_debug_page(state(filter), filter, nonce),
                       debug_page_csp(nonce)};
  }
  if (path == "/debug/state")
    return DebugAnswer{200, "application/json", to_json(state(query_parameter(query, "filter"))), {}};
  return std::nullopt;
}

}  // namespace svcproxy::proxy
