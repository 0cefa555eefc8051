#include "proxy/metrics.h"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <ctime>
#include <iterator>
#include <sstream>
#include <unordered_map>

namespace svcproxy::proxy {

std::vector<double> exponential_buckets(double start, double factor, int count) {
  std::vector<double> out;
  out.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i, start *= factor) out.push_back(start);
  return out;
}

namespace {

std::vector<double> linear_buckets(double start, double width, int count) {
  std::vector<double> out;
  for (int i = 0; i < count; ++i) out.push_back(start + width * i);
  return out;
}

// kube-proxy's network programming buckets (MergeBuckets starts with 0):
// 0, 0.25 s, 0.5 s, 1..59 s, 60..115 s by 5, 2..5 min by 30 s.
std::vector<double> network_programming_buckets() {
  std::vector<double> out{0};
  for (auto part : {linear_buckets(0.25, 0.25, 2), linear_buckets(1, 1, 59), linear_buckets(60, 5, 12),
                    linear_buckets(120, 30, 7)})
    out.insert(out.end(), part.begin(), part.end());
  return out;
}

double seconds_since_epoch(Metrics::TimePoint t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

template <typename Metric>
prometheus::detail::Builder<Metric> builder();
template <>
prometheus::detail::Builder<prometheus::Counter> builder() {
  return prometheus::BuildCounter();
}
template <>
prometheus::detail::Builder<prometheus::Gauge> builder() {
  return prometheus::BuildGauge();
}
template <>
prometheus::detail::Builder<prometheus::Histogram> builder() {
  return prometheus::BuildHistogram();
}

}  // namespace

std::string_view ip_family_label(model::IPFamily family) { return family == model::IPFamily::V4 ? "IPv4" : "IPv6"; }

NoLocalEndpoints& NoLocalEndpoints::operator+=(const NoLocalEndpoints& other) {
  for (const auto f : {model::IPFamily::V4, model::IPFamily::V6}) {
    of(f).internal += other.of(f).internal;
    of(f).external += other.of(f).external;
  }
  return *this;
}

NoLocalEndpoints& NoLocalEndpoints::operator-=(const NoLocalEndpoints& other) {
  for (const auto f : {model::IPFamily::V4, model::IPFamily::V6}) {
    of(f).internal -= std::min(of(f).internal, other.of(f).internal);
    of(f).external -= std::min(of(f).external, other.of(f).external);
  }
  return *this;
}

NoLocalEndpoints count_no_local_endpoints(std::span<const model::ServicePortState> ports) {
  NoLocalEndpoints out;
  for (const auto& p : ports) {
    // A port with no endpoints anywhere rejects its traffic; that is not a
    // "no local endpoints" drop.
    if (p.cluster_endpoints.empty() && p.local_endpoints.empty()) continue;
    if (!p.local_endpoints.empty()) continue;
    auto& counts = out.of(p.name.family);
    if (p.internal_traffic_policy == model::TrafficPolicy::Local) ++counts.internal;
    if (p.external_traffic_policy == model::TrafficPolicy::Local && p.has_external_addresses()) ++counts.external;
  }
  return out;
}

KernelObjects count_kernel_objects(const dataplane::ir::Ruleset& ruleset) {
  KernelObjects out;
  for (const auto& t : ruleset.tables) {
    out.chains += t.chains.size();
    out.sets += t.sets.size();
    for (const auto& s : t.sets) out.elements += s.elements.size();
  }
  return out;
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view s) {
  // YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)
  auto digits = [&](size_t pos, size_t n, int& out) {
    if (pos + n > s.size()) return false;
    int v = 0;
    for (size_t i = pos; i < pos + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      v = v * 10 + (s[i] - '0');
    }
    out = v;
    return true;
  };
  int year, month, day, hour, minute, second;
  if (!digits(0, 4, year) || s.size() < 20 || s[4] != '-' || !digits(5, 2, month) || s[7] != '-' ||
      !digits(8, 2, day) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(11, 2, hour) ||
      s[13] != ':' || !digits(14, 2, minute) || s[16] != ':' || !digits(17, 2, second))
    return std::nullopt;
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return std::nullopt;
  size_t pos = 19;
  int64_t nanos = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    int64_t scale = 100000000;
    const size_t start = pos;
    for (; pos < s.size() && s[pos] >= '0' && s[pos] <= '9'; ++pos) {
      nanos += (s[pos] - '0') * scale;
      scale /= 10;
    }
    if (pos == start) return std::nullopt;
  }
  int offset_seconds = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!digits(pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' || !digits(pos + 4, 2, om))
      return std::nullopt;
    offset_seconds = (oh * 3600 + om * 60) * (s[pos] == '-' ? -1 : 1);
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != s.size()) return std::nullopt;
  std::tm parts{};
  parts.tm_year = year - 1900;
  parts.tm_mon = month - 1;
  parts.tm_mday = day;
  parts.tm_hour = hour;
  parts.tm_min = minute;
  parts.tm_sec = second;
  const time_t t = timegm(&parts);
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(
          std::chrono::seconds(t - offset_seconds) + std::chrono::nanoseconds(nanos)));
}

// kube-proxy's metrics first, with its help texts (component-base prefixes
// the stability level; client_golang's process_* have none), then
// svcproxy's own.
Metrics::Metrics(ProcessStatsSource process)
    : registry_(std::make_unique<prometheus::Registry>()),
      process_(std::move(process)),
      sync_duration_(histograms_by_family("kubeproxy_sync_proxy_rules_duration_seconds",
                                          "[ALPHA] SyncProxyRules latency in seconds",
                                          exponential_buckets(0.001, 2, 15))),
      sync_full_duration_(histograms_by_family("kubeproxy_sync_full_proxy_rules_duration_seconds",
                                               "[ALPHA] SyncProxyRules latency in seconds for full resyncs",
                                               exponential_buckets(0.001, 2, 15))),
      sync_partial_duration_(histograms_by_family("kubeproxy_sync_partial_proxy_rules_duration_seconds",
                                                  "[ALPHA] SyncProxyRules latency in seconds for partial resyncs",
                                                  exponential_buckets(0.001, 2, 15))),
      last_sync_timestamp_(gauges_by_family("kubeproxy_sync_proxy_rules_last_timestamp_seconds",
                                            "[ALPHA] The last time proxy rules were successfully synced")),
      last_queued_timestamp_(gauges_by_family("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds",
                                              "[ALPHA] The last time a sync of proxy rules was queued")),
      network_programming_(histograms_by_family("kubeproxy_network_programming_duration_seconds",
                                                "[ALPHA] In Cluster Network Programming Latency in seconds",
                                                network_programming_buckets())),
      endpoint_changes_pending_(
          gauge("kubeproxy_sync_proxy_rules_endpoint_changes_pending", "[ALPHA] Pending proxy rules Endpoint changes")),
      endpoint_changes_total_(counter("kubeproxy_sync_proxy_rules_endpoint_changes_total",
                                      "[ALPHA] Cumulative proxy rules Endpoint changes")),
      service_changes_pending_(
          gauge("kubeproxy_sync_proxy_rules_service_changes_pending", "[ALPHA] Pending proxy rules Service changes")),
      service_changes_total_(counter("kubeproxy_sync_proxy_rules_service_changes_total",
                                     "[ALPHA] Cumulative proxy rules Service changes")),
      sync_failures_total_(counters_by_family("kubeproxy_sync_proxy_rules_nftables_sync_failures_total",
                                              "[ALPHA] Cumulative proxy nftables sync failures")),
      // kube-proxy deletes stale chains in a transaction of their own, a
      // second after the sync that left them; svcproxy deletes them in the
      // sync's own transaction, so a failure there is a sync failure and
      // this stays 0. Exported so that kube-proxy's alerts find it.
      cleanup_failures_total_(counters_by_family("kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total",
                                                 "[ALPHA] Cumulative proxy nftables cleanup failures")),
      // A gauge despite the _total suffix, as in kube-proxy.
      no_local_endpoints_(
          family<prometheus::Gauge>("kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                                    "[ALPHA] Number of services with a Local traffic policy and no endpoints")),
      healthz_total_(
          family<prometheus::Counter>("kubeproxy_proxy_healthz_total", "[ALPHA] Cumulative proxy healthz HTTP status")),
      livez_total_(
          family<prometheus::Counter>("kubeproxy_proxy_livez_total", "[ALPHA] Cumulative proxy livez HTTP status")),
      conntrack_reconcile_duration_(histograms_by_family("kubeproxy_conntrack_reconciler_sync_duration_seconds",
                                                         "[ALPHA] ReconcileConntrackFlowsLatency latency in seconds",
                                                         exponential_buckets(0.001, 2, 15))),
      conntrack_reconcile_deleted_(
          counters_by_family("kubeproxy_conntrack_reconciler_deleted_entries_total",
                             "[ALPHA] Cumulative conntrack flows deleted by conntrack reconciler")),
      process_cpu_seconds_(counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.")),
      process_max_fds_(gauge("process_max_fds", "Maximum number of open file descriptors.")),
      process_network_receive_(
          counter("process_network_receive_bytes_total", "Number of bytes received by the process over the network.")),
      process_network_transmit_(
          counter("process_network_transmit_bytes_total", "Number of bytes sent by the process over the network.")),
      process_open_fds_(gauge("process_open_fds", "Number of open file descriptors.")),
      process_resident_memory_(gauge("process_resident_memory_bytes", "Resident memory size in bytes.")),
      process_start_time_(
          gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.")),
      process_virtual_memory_(gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.")),
      process_virtual_memory_max_(
          gauge("process_virtual_memory_max_bytes", "Maximum amount of virtual memory available in bytes.")),
      kernel_objects_(family<prometheus::Gauge>(
          "svcproxy_kernel_objects", "Objects in svcproxy's nftables tables after the last successful sync")),
      conntrack_deleted_total_(counter("svcproxy_conntrack_entries_deleted_total",
                                       "Conntrack entries deleted because they pointed at endpoints that are gone")),
      drift_repairs_total_(
          counter("svcproxy_sync_drift_repairs_total",
                  "Periodic drift checks that found svcproxy's tables changed by someone else and repaired them")),
      decode_errors_total_(
          counter("svcproxy_manifest_decode_errors_total", "Objects skipped because they could not be decoded")),
      manifest_read_errors_total_(counter("svcproxy_manifest_read_errors_total",
                                          "Times a manifests path or file could not be read, or a file parsed only "
                                          "in part; what it held before was kept")),
      watch_restarts_total_(counter("svcproxy_watch_restarts_total",
                                    "API watches that ended and were restarted from the last resourceVersion")),
      watch_relists_total_(
          counter("svcproxy_watch_relists_total", "Full relists after a watch could not resume (410 Gone or errors)")),
      // Only the API source has watches: the family shows once the
      // informer's counts are set.
      watch_bookmarks_total_(family<prometheus::Counter>(
          "svcproxy_watch_bookmarks_total",
          "BOOKMARK events received on API watches; each moves the watch's resourceVersion on")),
      proxy_mode_(
          family<prometheus::Gauge>("svcproxy_proxy_mode", "The dataplane in use (1 for the mode chosen at startup)")),
      // kube-proxy's, with its help texts; shown once the relay is on.
      localhost_listeners_(family<prometheus::Gauge>("kubeproxy_nftables_localhost_nodeport_listeners",
                                                     "[ALPHA] Number of active localhost NodePort userspace proxy "
                                                     "listeners.")),
      localhost_listener_failures_(
          family<prometheus::Counter>("kubeproxy_nftables_localhost_nodeport_listener_creation_failures_total",
                                      "[ALPHA] Number of localhost NodePort userspace proxy listener creation "
                                      "failures.")),
      localhost_rejected_(family<prometheus::Counter>(
          "kubeproxy_nftables_localhost_nodeport_rejected_packets_total",
          "[ALPHA] Number of packets rejected on localhost NodePorts. UDP and SCTP are always rejected; TCP is "
          "rejected when the localhost NodePort proxy is not running")) {
  for (const auto f : {model::IPFamily::V4, model::IPFamily::V6})
    for (const char* policy : {"external", "internal"})
      no_local_endpoints_.Add({{"ip_family", std::string(ip_family_label(f))}, {"traffic_policy", policy}});
  // Both codes are always exported so rate() works from the first scrape.
  for (auto* by_code : {&healthz_total_, &livez_total_}) {
    by_code->Add({{"code", "200"}});
    by_code->Add({{"code", "503"}});
  }
  for (const char* kind : {"chains", "elements", "sets"}) kernel_objects_.Add({{"kind", kind}});
}

Metrics::~Metrics() = default;

template <typename Metric>
prometheus::Family<Metric>& Metrics::family(const std::string& name, const std::string& help) {
  family_order_.push_back(name);
  return builder<Metric>().Name(name).Help(help).Register(*registry_);
}

prometheus::Counter& Metrics::counter(const std::string& name, const std::string& help) {
  return family<prometheus::Counter>(name, help).Add({});
}

prometheus::Gauge& Metrics::gauge(const std::string& name, const std::string& help) {
  return family<prometheus::Gauge>(name, help).Add({});
}

prometheus::Histogram& Metrics::histogram(const std::string& name, const std::string& help,
                                          const std::vector<double>& upper_bounds) {
  return family<prometheus::Histogram>(name, help).Add({}, upper_bounds);
}

namespace {

prometheus::Labels family_label(model::IPFamily f) { return {{"ip_family", std::string(ip_family_label(f))}}; }

}  // namespace

Metrics::ByFamily<prometheus::Counter> Metrics::counters_by_family(const std::string& name, const std::string& help) {
  auto& f = family<prometheus::Counter>(name, help);
  return {&f.Add(family_label(model::IPFamily::V4)), &f.Add(family_label(model::IPFamily::V6))};
}

Metrics::ByFamily<prometheus::Gauge> Metrics::gauges_by_family(const std::string& name, const std::string& help) {
  auto& f = family<prometheus::Gauge>(name, help);
  return {&f.Add(family_label(model::IPFamily::V4)), &f.Add(family_label(model::IPFamily::V6))};
}

Metrics::ByFamily<prometheus::Histogram> Metrics::histograms_by_family(const std::string& name, const std::string& help,
                                                                       const std::vector<double>& upper_bounds) {
  auto& f = family<prometheus::Histogram>(name, help);
  return {&f.Add(family_label(model::IPFamily::V4), upper_bounds),
          &f.Add(family_label(model::IPFamily::V6), upper_bounds)};
}

void Metrics::raise_to(prometheus::Counter& counter, uint64_t total) { raise_to(counter, static_cast<double>(total)); }

void Metrics::raise_to(prometheus::Counter& counter, double total) {
  std::lock_guard lock(mutex_);
  const double now = counter.Value();
  if (total > now) counter.Increment(total - now);
}

void Metrics::observe_sync(const SyncResult& result, TimePoint finished) {
  const double seconds = std::chrono::duration<double>(result.duration).count();
  for (const auto f : {model::IPFamily::V4, model::IPFamily::V6}) {
    sync_duration_[f].Observe(seconds);
    (result.full ? sync_full_duration_ : sync_partial_duration_)[f].Observe(seconds);
    if (result.error.empty()) {
      last_sync_timestamp_[f].Set(seconds_since_epoch(finished));
    } else {
      sync_failures_total_[f].Increment();
    }
  }
  for (const auto& r : result.conntrack_reconciles) {
    conntrack_reconcile_duration_[r.family].Observe(std::chrono::duration<double>(r.duration).count());
    conntrack_reconcile_deleted_[r.family].Increment(static_cast<double>(r.deleted));
  }
  conntrack_deleted_total_.Increment(static_cast<double>(result.conntrack_deleted));
}

void Metrics::count_drift_repair() { drift_repairs_total_.Increment(); }

void Metrics::sync_queued(TimePoint when) {
  for (const auto f : {model::IPFamily::V4, model::IPFamily::V6})
    last_queued_timestamp_[f].Set(seconds_since_epoch(when));
}

void Metrics::changes_received(size_t endpoint_slice_changes, size_t service_changes) {
  endpoint_changes_total_.Increment(static_cast<double>(endpoint_slice_changes));
  service_changes_total_.Increment(static_cast<double>(service_changes));
}

void Metrics::set_changes_pending(size_t endpoint_slice_changes, size_t service_changes) {
  endpoint_changes_pending_.Set(static_cast<double>(endpoint_slice_changes));
  service_changes_pending_.Set(static_cast<double>(service_changes));
}

void Metrics::observe_network_programming(model::IPFamily family, std::chrono::duration<double> latency) {
  if (latency.count() < 0) return;
  network_programming_[family].Observe(latency.count());
}

bool Metrics::observe_network_programming(model::IPFamily family, std::string_view trigger_time, TimePoint programmed) {
  const auto trigger = parse_rfc3339(trigger_time);
  if (!trigger) return false;
  observe_network_programming(family, std::chrono::duration<double>(programmed - *trigger));
  return true;
}

void Metrics::set_no_local_endpoints(const NoLocalEndpoints& counts) {
  for (const auto f : {model::IPFamily::V4, model::IPFamily::V6}) {
    const std::string family(ip_family_label(f));
    no_local_endpoints_.Add({{"ip_family", family}, {"traffic_policy", "external"}})
        .Set(static_cast<double>(counts.of(f).external));
    no_local_endpoints_.Add({{"ip_family", family}, {"traffic_policy", "internal"}})
        .Set(static_cast<double>(counts.of(f).internal));
  }
}

void Metrics::set_localhost_nodeports(model::IPFamily family, size_t listeners, uint64_t listen_failures_total) {
  const std::map<std::string, std::string> labels{{"ip_family", family == model::IPFamily::V4 ? "IPv4" : "IPv6"}};
  localhost_listeners_.Add(labels).Set(static_cast<double>(listeners));
  raise_to(localhost_listener_failures_.Add(labels), listen_failures_total);
}

void Metrics::set_localhost_nodeport_rejected(model::IPFamily family, model::Protocol protocol,
                                              uint64_t packets_total) {
  raise_to(localhost_rejected_.Add({{"ip_family", family == model::IPFamily::V4 ? "IPv4" : "IPv6"},
                                    {"protocol", std::string(model::to_string(protocol))}}),
           packets_total);
}

void Metrics::set_scrape_hook(std::function<void()> hook) { scrape_hook_ = std::move(hook); }

void Metrics::set_kernel_objects(KernelObjects counts) {
  kernel_objects_.Add({{"kind", "chains"}}).Set(static_cast<double>(counts.chains));
  kernel_objects_.Add({{"kind", "elements"}}).Set(static_cast<double>(counts.elements));
  kernel_objects_.Add({{"kind", "sets"}}).Set(static_cast<double>(counts.sets));
}

void Metrics::count_healthz(int http_status) {
  healthz_total_.Add({{"code", std::to_string(http_status)}}).Increment();
}

void Metrics::count_livez(int http_status) { livez_total_.Add({{"code", std::to_string(http_status)}}).Increment(); }

void Metrics::count_decode_errors(size_t n) { decode_errors_total_.Increment(static_cast<double>(n)); }

void Metrics::set_manifest_read_errors(uint64_t total) { raise_to(manifest_read_errors_total_, total); }

void Metrics::count_watch_restart() { watch_restarts_total_.Increment(); }

void Metrics::count_watch_relist() { watch_relists_total_.Increment(); }

void Metrics::set_watch_totals(uint64_t restarts, uint64_t relists) {
  raise_to(watch_restarts_total_, restarts);
  raise_to(watch_relists_total_, relists);
}

void Metrics::set_watch_bookmarks(std::map<std::string, uint64_t> by_resource) {
  for (const auto& [resource, n] : by_resource) raise_to(watch_bookmarks_total_.Add({{"resource", resource}}), n);
}

void Metrics::set_proxy_mode(ProxyMode mode) {
  std::lock_guard lock(mutex_);
  if (proxy_mode_gauge_ != nullptr) proxy_mode_.Remove(proxy_mode_gauge_);
  proxy_mode_gauge_ = &proxy_mode_.Add({{"mode", std::string(to_string(mode))}});
  proxy_mode_gauge_->Set(1);
}

void Metrics::collect_process() {
  const ProcessStats p = process_();
  raise_to(process_cpu_seconds_, p.cpu_seconds);
  raise_to(process_network_receive_, p.network_receive_bytes);
  raise_to(process_network_transmit_, p.network_transmit_bytes);
  process_max_fds_.Set(p.max_fds);
  process_open_fds_.Set(p.open_fds);
  process_resident_memory_.Set(p.resident_memory_bytes);
  process_start_time_.Set(p.start_time_seconds);
  process_virtual_memory_.Set(p.virtual_memory_bytes);
  process_virtual_memory_max_.Set(p.virtual_memory_max_bytes);
}

std::string Metrics::render_slis() {
  prometheus::Registry slis;
  prometheus::BuildGauge()
      .Name("process_start_time_seconds")
      .Help("[ALPHA] Start time of the process since unix epoch in seconds.")
      .Register(slis)
      .Add({})
      .Set(process_().start_time_seconds);
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, slis.Collect());
  return std::move(out).str();
}

std::string Metrics::render() {
  if (scrape_hook_) scrape_hook_();
  collect_process();
  auto families = registry_->Collect();
  std::unordered_map<std::string_view, size_t> position;
  for (size_t i = 0; i < family_order_.size(); ++i) position.emplace(family_order_[i], i);
  std::stable_sort(families.begin(), families.end(),
                   [&](const auto& a, const auto& b) { return position.at(a.name) < position.at(b.name); });
  // A family keeps its metrics in a hash map: sort them by their labels so
  // that the output is the same from one scrape to the next.
  for (auto& f : families)
    std::sort(f.metric.begin(), f.metric.end(), [](const auto& a, const auto& b) { return a.label < b.label; });
  for (const auto& c : collectables_) {
    auto more = c->Collect();
    for (auto& f : more)
      std::sort(f.metric.begin(), f.metric.end(), [](const auto& a, const auto& b) { return a.label < b.label; });
    std::move(more.begin(), more.end(), std::back_inserter(families));
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  return std::move(out).str();
}

void Metrics::add_collectable(std::shared_ptr<prometheus::Collectable> collectable) {
  collectables_.push_back(std::move(collectable));
}

}  // namespace svcproxy::proxy
