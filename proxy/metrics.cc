#include "proxy/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <ctime>

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

// Shortest text that reads back as the same double (as Go's 'g', -1).
std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, end);
}

double seconds_since_epoch(Metrics::TimePoint t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

// Writes one metric family in the text format.
class Writer {
 public:
  void header(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(std::string_view name, std::string_view labels, double value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += format_value(value);
    out_ += '\n';
  }
  void scalar(std::string_view name, std::string_view type, std::string_view help, double value) {
    header(name, type, help);
    sample(name, "", value);
  }
  void histogram(std::string_view name, std::string_view help, const Histogram& h) {
    header(name, "histogram", help);
    const std::string bucket = std::string(name) + "_bucket";
    uint64_t cumulative = 0;
    for (size_t i = 0; i < h.upper_bounds().size(); ++i) {
      cumulative += h.counts()[i];
      sample(bucket, "le=\"" + format_value(h.upper_bounds()[i]) + "\"", static_cast<double>(cumulative));
    }
    sample(bucket, "le=\"+Inf\"", static_cast<double>(h.count()));
    sample(std::string(name) + "_sum", "", h.sum());
    sample(std::string(name) + "_count", "", static_cast<double>(h.count()));
  }
  void by_code(std::string_view name, std::string_view help, const std::map<int, uint64_t>& counts) {
    header(name, "counter", help);
    for (const auto& [code, n] : counts)
      sample(name, "code=\"" + std::to_string(code) + "\"", static_cast<double>(n));
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  // Buckets are "less than or equal": the first bound >= value.
  const auto it = std::lower_bound(bounds_.begin(), bounds_.end(), value);
  ++counts_[static_cast<size_t>(it - bounds_.begin())];
  ++count_;
  sum_ += value;
}

NoLocalEndpoints count_no_local_endpoints(std::span<const model::ServicePortState> ports) {
  NoLocalEndpoints out;
  for (const auto& p : ports) {
    // A port with no endpoints anywhere rejects its traffic; that is not a
    // "no local endpoints" drop.
    if (p.cluster_endpoints.empty() && p.local_endpoints.empty()) continue;
    if (!p.local_endpoints.empty()) continue;
    if (p.internal_traffic_policy == model::TrafficPolicy::Local) ++out.internal;
    if (p.external_traffic_policy == model::TrafficPolicy::Local && p.has_external_addresses()) ++out.external;
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

Metrics::Metrics()
    : sync_duration_(exponential_buckets(0.001, 2, 15)),
      sync_full_duration_(exponential_buckets(0.001, 2, 15)),
      sync_partial_duration_(exponential_buckets(0.001, 2, 15)),
      network_programming_(network_programming_buckets()),
      // Both codes are always exported so rate() works from the first scrape.
      healthz_total_{{200, 0}, {503, 0}},
      livez_total_{{200, 0}, {503, 0}} {}

void Metrics::observe_sync(const SyncResult& result, TimePoint finished) {
  const double seconds = std::chrono::duration<double>(result.duration).count();
  std::lock_guard lock(mutex_);
  sync_duration_.observe(seconds);
  (result.full ? sync_full_duration_ : sync_partial_duration_).observe(seconds);
  if (result.error.empty()) {
    last_sync_timestamp_ = seconds_since_epoch(finished);
  } else {
    ++sync_failures_total_;
  }
  conntrack_deleted_total_ += result.conntrack_deleted;
}

void Metrics::count_drift_repair() {
  std::lock_guard lock(mutex_);
  ++drift_repairs_total_;
}

void Metrics::sync_queued(TimePoint when) {
  std::lock_guard lock(mutex_);
  last_queued_timestamp_ = seconds_since_epoch(when);
}

void Metrics::changes_received(size_t endpoint_slice_changes, size_t service_changes) {
  std::lock_guard lock(mutex_);
  endpoint_changes_total_ += endpoint_slice_changes;
  service_changes_total_ += service_changes;
}

void Metrics::set_changes_pending(size_t endpoint_slice_changes, size_t service_changes) {
  std::lock_guard lock(mutex_);
  endpoint_changes_pending_ = endpoint_slice_changes;
  service_changes_pending_ = service_changes;
}

void Metrics::observe_network_programming(std::chrono::duration<double> latency) {
  if (latency.count() < 0) return;
  std::lock_guard lock(mutex_);
  network_programming_.observe(latency.count());
}

bool Metrics::observe_network_programming(std::string_view trigger_time, TimePoint programmed) {
  const auto trigger = parse_rfc3339(trigger_time);
  if (!trigger) return false;
  observe_network_programming(std::chrono::duration<double>(programmed - *trigger));
  return true;
}

void Metrics::set_no_local_endpoints(NoLocalEndpoints counts) {
  std::lock_guard lock(mutex_);
  no_local_endpoints_ = counts;
}

void Metrics::set_kernel_objects(KernelObjects counts) {
  std::lock_guard lock(mutex_);
  kernel_objects_ = counts;
}

void Metrics::count_healthz(int http_status) {
  std::lock_guard lock(mutex_);
  ++healthz_total_[http_status];
}

void Metrics::count_livez(int http_status) {
  std::lock_guard lock(mutex_);
  ++livez_total_[http_status];
}

void Metrics::count_decode_errors(size_t n) {
  std::lock_guard lock(mutex_);
  decode_errors_total_ += n;
}

void Metrics::set_manifest_read_errors(uint64_t total) {
  std::lock_guard lock(mutex_);
  manifest_read_errors_total_ = total;
}

void Metrics::count_watch_restart() {
  std::lock_guard lock(mutex_);
  ++watch_restarts_total_;
}

void Metrics::set_watch_totals(uint64_t restarts, uint64_t relists) {
  std::lock_guard lock(mutex_);
  watch_restarts_total_ = restarts;
  watch_relists_total_ = relists;
}

void Metrics::set_watch_bookmarks(std::map<std::string, uint64_t> by_resource) {
  std::lock_guard lock(mutex_);
  watch_bookmarks_total_ = std::move(by_resource);
}

void Metrics::set_proxy_mode(std::string mode) {
  std::lock_guard lock(mutex_);
  proxy_mode_ = std::move(mode);
}

void Metrics::count_watch_relist() {
  std::lock_guard lock(mutex_);
  ++watch_relists_total_;
}

std::string Metrics::render() const {
  std::lock_guard lock(mutex_);
  Writer w;
  // kube-proxy's metrics, with its help texts (component-base prefixes the
  // stability level).
  w.histogram("kubeproxy_sync_proxy_rules_duration_seconds", "[ALPHA] SyncProxyRules latency in seconds",
              sync_duration_);
  w.histogram("kubeproxy_sync_full_proxy_rules_duration_seconds",
              "[ALPHA] SyncProxyRules latency in seconds for full resyncs", sync_full_duration_);
  w.histogram("kubeproxy_sync_partial_proxy_rules_duration_seconds",
              "[ALPHA] SyncProxyRules latency in seconds for partial resyncs", sync_partial_duration_);
  w.scalar("kubeproxy_sync_proxy_rules_last_timestamp_seconds", "gauge",
           "[ALPHA] The last time proxy rules were successfully synced", last_sync_timestamp_);
  w.scalar("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", "gauge",
           "[ALPHA] The last time a sync of proxy rules was queued", last_queued_timestamp_);
  w.histogram("kubeproxy_network_programming_duration_seconds",
              "[ALPHA] In Cluster Network Programming Latency in seconds", network_programming_);
  w.scalar("kubeproxy_sync_proxy_rules_endpoint_changes_pending", "gauge",
           "[ALPHA] Pending proxy rules Endpoint changes", static_cast<double>(endpoint_changes_pending_));
  w.scalar("kubeproxy_sync_proxy_rules_endpoint_changes_total", "counter",
           "[ALPHA] Cumulative proxy rules Endpoint changes", static_cast<double>(endpoint_changes_total_));
  w.scalar("kubeproxy_sync_proxy_rules_service_changes_pending", "gauge",
           "[ALPHA] Pending proxy rules Service changes", static_cast<double>(service_changes_pending_));
  w.scalar("kubeproxy_sync_proxy_rules_service_changes_total", "counter",
           "[ALPHA] Cumulative proxy rules Service changes", static_cast<double>(service_changes_total_));
  w.scalar("kubeproxy_sync_proxy_rules_nftables_sync_failures_total", "counter",
           "[ALPHA] Cumulative proxy nftables sync failures", static_cast<double>(sync_failures_total_));
  // A gauge despite the _total suffix, as in kube-proxy.
  w.header("kubeproxy_sync_proxy_rules_no_local_endpoints_total", "gauge",
           "[ALPHA] Number of services with a Local traffic policy and no endpoints");
  w.sample("kubeproxy_sync_proxy_rules_no_local_endpoints_total", "traffic_policy=\"external\"",
           static_cast<double>(no_local_endpoints_.external));
  w.sample("kubeproxy_sync_proxy_rules_no_local_endpoints_total", "traffic_policy=\"internal\"",
           static_cast<double>(no_local_endpoints_.internal));
  w.by_code("kubeproxy_proxy_healthz_total", "[ALPHA] Cumulative proxy healthz HTTP status", healthz_total_);
  w.by_code("kubeproxy_proxy_livez_total", "[ALPHA] Cumulative proxy livez HTTP status", livez_total_);

  // svcproxy's own.
  w.header("svcproxy_kernel_objects", "gauge",
           "Objects in svcproxy's nftables tables after the last successful sync");
  w.sample("svcproxy_kernel_objects", "kind=\"chains\"", static_cast<double>(kernel_objects_.chains));
  w.sample("svcproxy_kernel_objects", "kind=\"elements\"", static_cast<double>(kernel_objects_.elements));
  w.sample("svcproxy_kernel_objects", "kind=\"sets\"", static_cast<double>(kernel_objects_.sets));
  w.scalar("svcproxy_conntrack_entries_deleted_total", "counter",
           "Conntrack entries deleted because they pointed at endpoints that are gone",
           static_cast<double>(conntrack_deleted_total_));
  w.scalar("svcproxy_sync_drift_repairs_total", "counter",
           "Periodic drift checks that found svcproxy's tables changed by someone else and repaired them",
           static_cast<double>(drift_repairs_total_));
  w.scalar("svcproxy_manifest_decode_errors_total", "counter",
           "Objects skipped because they could not be decoded", static_cast<double>(decode_errors_total_));
  w.scalar("svcproxy_manifest_read_errors_total", "counter",
           "Times a manifests path or file could not be read, or a file parsed only in part; what it held before "
           "was kept",
           static_cast<double>(manifest_read_errors_total_));
  w.scalar("svcproxy_watch_restarts_total", "counter",
           "API watches that ended and were restarted from the last resourceVersion",
           static_cast<double>(watch_restarts_total_));
  w.scalar("svcproxy_watch_relists_total", "counter",
           "Full relists after a watch could not resume (410 Gone or errors)",
           static_cast<double>(watch_relists_total_));
  if (!watch_bookmarks_total_.empty()) {
    w.header("svcproxy_watch_bookmarks_total", "counter",
             "BOOKMARK events received on API watches; each moves the watch's resourceVersion on");
    for (const auto& [resource, n] : watch_bookmarks_total_)
      w.sample("svcproxy_watch_bookmarks_total", "resource=\"" + resource + "\"", static_cast<double>(n));
  }
  if (!proxy_mode_.empty()) {
    w.header("svcproxy_proxy_mode", "gauge", "The dataplane in use (1 for the mode chosen at startup)");
    w.sample("svcproxy_proxy_mode", "mode=\"" + proxy_mode_ + "\"", 1);
  }
  return w.take();
}

}  // namespace svcproxy::proxy
