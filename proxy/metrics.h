// The daemon's Prometheus metrics: kube-proxy's (same names, types, help
// text and buckets, so existing dashboards and alerts work unchanged) plus
// svcproxy_ metrics for what kube-proxy lacks. The sync loop records into a
// Metrics object; the HTTP server's thread renders it on /metrics.
//
// The values live in a prometheus-cpp registry and are rendered by its text
// serializer; every method is thread-safe (prometheus-cpp's metrics are).
// To add a metric: a member initialised with counter()/gauge()/histogram()
// in the constructor, at the place in the list where it should be exposed,
// and a method that records into it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/ir.h"
#include "model/service_ports.h"
#include "proxy/modes.h"
#include "proxy/process_stats.h"
#include "proxy/sync_loop.h"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
class Collectable;
template <typename T>
class Family;
}  // namespace prometheus

namespace svcproxy::proxy {

// Upper bounds start, start·factor, …, count of them (Prometheus's
// ExponentialBuckets: each bound is the previous one times factor).
std::vector<double> exponential_buckets(double start, double factor, int count);

// kube-proxy's ip_family label value: "IPv4" or "IPv6" (v1.IPFamily).
std::string_view ip_family_label(model::IPFamily family);

// Service ports whose traffic policy is Local while this node has no local
// endpoint for them (but the cluster has some): their traffic is dropped here.
struct NoLocalEndpoints {
  struct Counts {
    size_t internal = 0;  // internalTrafficPolicy: Local, traffic to the ClusterIP
    size_t external = 0;  // externalTrafficPolicy: Local, traffic to NodePort/external/LB IPs
    auto operator<=>(const Counts&) const = default;
  };
  Counts v4, v6;  // by the port's IP family (kube-proxy has one proxier per family)

  Counts& of(model::IPFamily family) { return family == model::IPFamily::V4 ? v4 : v6; }
  const Counts& of(model::IPFamily family) const { return family == model::IPFamily::V4 ? v4 : v6; }
  NoLocalEndpoints& operator+=(const NoLocalEndpoints& other);
  NoLocalEndpoints& operator-=(const NoLocalEndpoints& other);
  auto operator<=>(const NoLocalEndpoints&) const = default;
};
// kube-proxy's count (per service port and family, as its nftables proxier).
NoLocalEndpoints count_no_local_endpoints(std::span<const model::ServicePortState> ports);

KernelObjects count_kernel_objects(const dataplane::ir::Ruleset& ruleset);

// Parses an EndpointSlice's endpoints.kubernetes.io/last-change-trigger-time
// (RFC 3339, optional fraction, Z or ±hh:mm).
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text);

class Metrics {
 public:
  using TimePoint = std::chrono::system_clock::time_point;

  // `process` is read at every render() for the process_* metrics.
  explicit Metrics(ProcessStatsSource process = read_process_stats);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // One sync, successful or not (as kube-proxy, durations are observed
  // either way): the duration histograms, the last-sync timestamp (success)
  // or the failure counter, the conntrack reconciliations it ran. One sync
  // programs both families' tables in one transaction, so it is observed
  // under ip_family="IPv4" and "IPv6" alike (kube-proxy: one sync each).
  void observe_sync(const SyncResult& result, TimePoint finished);
  // A sync was requested (a change arrived or the resync timer fired).
  void sync_queued(TimePoint when);
  // A periodic drift check found svcproxy's tables changed by someone else
  // and repaired them.
  void count_drift_repair();

  // Changes seen by the change tracker (one per object add/update/delete).
  void changes_received(size_t endpoint_slice_changes, size_t service_changes);
  // Changes not yet programmed (the tracker's backlog).
  void set_changes_pending(size_t endpoint_slice_changes, size_t service_changes);

  // Once an EndpointSlice change of `family` is in the kernel: now − its
  // trigger time. Negative latencies (clock skew) are dropped, as kube-proxy does.
  void observe_network_programming(model::IPFamily family, std::chrono::duration<double> latency);
  // Convenience: parses the annotation; false if it does not parse.
  bool observe_network_programming(model::IPFamily family, std::string_view trigger_time, TimePoint programmed);

  void set_no_local_endpoints(const NoLocalEndpoints& counts);
  void set_kernel_objects(KernelObjects counts);

  void count_healthz(int http_status);
  void count_livez(int http_status);

  void count_decode_errors(size_t n);
  // The manifests source's own monotonic count of read problems.
  void set_manifest_read_errors(uint64_t total);
  void count_watch_restart();
  void count_watch_relist();
  // The informer's own monotonic counts: the counters move up to them.
  void set_watch_totals(uint64_t restarts, uint64_t relists);
  // The informer's BOOKMARK events so far, by resource (its own monotonic counts).
  void set_watch_bookmarks(std::map<std::string, uint64_t> by_resource);
  // Localhost NodePorts' relay (KEP-6032), per family: its listeners now
  // and its failed listens so far (kube-proxy's nftables metrics).
  void set_localhost_nodeports(model::IPFamily family, size_t listeners, uint64_t listen_failures_total);
  // Packets the rules refused on loopback NodePorts (UDP, SCTP), per family
  // and protocol, so far.
  void set_localhost_nodeport_rejected(model::IPFamily family, model::Protocol protocol, uint64_t packets_total);
  // Called at the start of every render(), on the scraping thread: for
  // values read from the kernel at scrape time (kube-proxy's collectors).
  void set_scrape_hook(std::function<void()> hook);
  // The dataplane chosen at startup: svcproxy_proxy_mode{mode="…"} 1.
  void set_proxy_mode(ProxyMode mode);

  // The Prometheus text exposition format (version 0.0.4), families in the
  // order registered, labelled samples sorted by label. prometheus-cpp 1.0.1
  // writes values with 16 significant digits (a histogram's _count and _sum
  // before its buckets). Reads the process stats first.
  std::string render();
  // /metrics/slis: component-base's SLI registry as kube-proxy serves it.
  // kube-proxy registers no health check with it, so all it holds is
  // process_start_time_seconds (help text "[ALPHA] Start time ...").
  std::string render_slis();
  // Families read at scrape time from elsewhere (the traffic counters),
  // rendered after the registry's.
  void add_collectable(std::shared_ptr<prometheus::Collectable> collectable);

 private:
  template <typename Metric>
  prometheus::Family<Metric>& family(const std::string& name, const std::string& help);
  prometheus::Counter& counter(const std::string& name, const std::string& help);
  prometheus::Gauge& gauge(const std::string& name, const std::string& help);
  prometheus::Histogram& histogram(const std::string& name, const std::string& help,
                                   const std::vector<double>& upper_bounds);
  // One child per IP family, both created at once (0 until observed).
  template <typename Metric>
  struct ByFamily {
    Metric* v4;
    Metric* v6;
    Metric& operator[](model::IPFamily f) const { return f == model::IPFamily::V4 ? *v4 : *v6; }
  };
  ByFamily<prometheus::Counter> counters_by_family(const std::string& name, const std::string& help);
  ByFamily<prometheus::Gauge> gauges_by_family(const std::string& name, const std::string& help);
  ByFamily<prometheus::Histogram> histograms_by_family(const std::string& name, const std::string& help,
                                                       const std::vector<double>& upper_bounds);
  // Moves a counter up to a total kept elsewhere (counters only increase).
  void raise_to(prometheus::Counter& counter, uint64_t total);
  void raise_to(prometheus::Counter& counter, double total);
  void collect_process();

  std::unique_ptr<prometheus::Registry> registry_;
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_;
  // Family names in the order of registration: the order of the exposition
  // (the registry's own groups families by type).
  std::vector<std::string> family_order_;
  ProcessStatsSource process_;

  ByFamily<prometheus::Histogram> sync_duration_;
  ByFamily<prometheus::Histogram> sync_full_duration_;
  ByFamily<prometheus::Histogram> sync_partial_duration_;
  ByFamily<prometheus::Gauge> last_sync_timestamp_;
  ByFamily<prometheus::Gauge> last_queued_timestamp_;
  ByFamily<prometheus::Histogram> network_programming_;
  prometheus::Gauge& endpoint_changes_pending_;
  prometheus::Counter& endpoint_changes_total_;
  prometheus::Gauge& service_changes_pending_;
  prometheus::Counter& service_changes_total_;
  ByFamily<prometheus::Counter> sync_failures_total_;
  ByFamily<prometheus::Counter> cleanup_failures_total_;
  prometheus::Family<prometheus::Gauge>& no_local_endpoints_;
  prometheus::Family<prometheus::Counter>& healthz_total_;
  prometheus::Family<prometheus::Counter>& livez_total_;
  ByFamily<prometheus::Histogram> conntrack_reconcile_duration_;
  ByFamily<prometheus::Counter> conntrack_reconcile_deleted_;
  prometheus::Counter& process_cpu_seconds_;
  prometheus::Gauge& process_max_fds_;
  prometheus::Counter& process_network_receive_;
  prometheus::Counter& process_network_transmit_;
  prometheus::Gauge& process_open_fds_;
  prometheus::Gauge& process_resident_memory_;
  prometheus::Gauge& process_start_time_;
  prometheus::Gauge& process_virtual_memory_;
  prometheus::Gauge& process_virtual_memory_max_;
  prometheus::Family<prometheus::Gauge>& kernel_objects_;
  prometheus::Counter& conntrack_deleted_total_;
  prometheus::Counter& drift_repairs_total_;
  prometheus::Counter& decode_errors_total_;
  prometheus::Counter& manifest_read_errors_total_;
  prometheus::Counter& watch_restarts_total_;
  prometheus::Counter& watch_relists_total_;
  prometheus::Family<prometheus::Counter>& watch_bookmarks_total_;
  prometheus::Family<prometheus::Gauge>& proxy_mode_;
  prometheus::Family<prometheus::Gauge>& localhost_listeners_;
  prometheus::Family<prometheus::Counter>& localhost_listener_failures_;
  prometheus::Family<prometheus::Counter>& localhost_rejected_;
  std::function<void()> scrape_hook_;  // set before the HTTP server starts

  // Serialises the read-then-raise of raise_to() and the proxy mode swap.
  std::mutex mutex_;
  prometheus::Gauge* proxy_mode_gauge_ = nullptr;
};

}  // namespace svcproxy::proxy
