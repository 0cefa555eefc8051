// The daemon's Prometheus metrics: kube-proxy's (same names, types, help
// text and buckets, so existing dashboards and alerts work unchanged) plus
// svcproxy_ metrics for what kube-proxy lacks. The sync loop records into a
// Metrics object; the HTTP server's thread renders it on /metrics. Every
// method is thread-safe (one mutex: updates are a few per sync, scrapes are
// rare).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/ir.h"
#include "model/service_ports.h"
#include "proxy/sync_loop.h"

namespace svcproxy::proxy {

// Upper bounds start, start·factor, …, count of them (Prometheus's
// ExponentialBuckets: each bound is the previous one times factor).
std::vector<double> exponential_buckets(double start, double factor, int count);

class Histogram {
 public:
  explicit Histogram(std::vector<double> upper_bounds);
  void observe(double value);

  const std::vector<double>& upper_bounds() const { return bounds_; }
  // Per-bucket (not cumulative) counts; the last one is +Inf's.
  const std::vector<uint64_t>& counts() const { return counts_; }
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;
  uint64_t count_ = 0;
  double sum_ = 0;
};

// Service ports whose traffic policy is Local while this node has no local
// endpoint for them (but the cluster has some): their traffic is dropped here.
struct NoLocalEndpoints {
  size_t internal = 0;  // internalTrafficPolicy: Local, traffic to the ClusterIP
  size_t external = 0;  // externalTrafficPolicy: Local, traffic to NodePort/external/LB IPs
};
// kube-proxy's count (per service port, as its nftables proxier).
NoLocalEndpoints count_no_local_endpoints(std::span<const model::ServicePortState> ports);

KernelObjects count_kernel_objects(const dataplane::ir::Ruleset& ruleset);

// Parses an EndpointSlice's endpoints.kubernetes.io/last-change-trigger-time
// (RFC 3339, optional fraction, Z or ±hh:mm).
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text);

class Metrics {
 public:
  using TimePoint = std::chrono::system_clock::time_point;

  Metrics();

  // One sync, successful or not (as kube-proxy, durations are observed
  // either way): the duration histograms, the last-sync timestamp (success)
  // or the failure counter, conntrack entries deleted.
  void observe_sync(const SyncResult& result, TimePoint finished);
  // A periodic drift check found the kernel differing from what svcproxy
  // programmed and repaired it.
  void count_drift_repair();
  // A sync was requested (a change arrived or the resync timer fired).
  void sync_queued(TimePoint when);

  // Changes seen by the change tracker (one per object add/update/delete).
  void changes_received(size_t endpoint_slice_changes, size_t service_changes);
  // Changes not yet programmed (the tracker's backlog).
  void set_changes_pending(size_t endpoint_slice_changes, size_t service_changes);

  // Once an EndpointSlice change is in the kernel: now − its trigger time.
  // Negative latencies (clock skew) are dropped, as kube-proxy does.
  void observe_network_programming(std::chrono::duration<double> latency);
  // Convenience: parses the annotation; false if it does not parse.
  bool observe_network_programming(std::string_view trigger_time, TimePoint programmed);

  void set_no_local_endpoints(NoLocalEndpoints counts);
  void set_kernel_objects(KernelObjects counts);

  void count_healthz(int http_status);
  void count_livez(int http_status);

  void count_decode_errors(size_t n);
  // The manifests source's own monotonic count of read problems.
  void set_manifest_read_errors(uint64_t total);
  void count_watch_restart();
  void count_watch_relist();
  // The informer's own monotonic counts (replace what the two above added).
  void set_watch_totals(uint64_t restarts, uint64_t relists);
  // The informer's BOOKMARK events so far, by resource (its own monotonic counts).
  void set_watch_bookmarks(std::map<std::string, uint64_t> by_resource);
  // The dataplane chosen at startup: svcproxy_proxy_mode{mode="…"} 1.
  void set_proxy_mode(std::string mode);

  // The Prometheus text exposition format (version 0.0.4).
  std::string render() const;

 private:
  mutable std::mutex mutex_;
  Histogram sync_duration_;
  Histogram sync_full_duration_;
  Histogram sync_partial_duration_;
  Histogram network_programming_;
  double last_sync_timestamp_ = 0;
  double last_queued_timestamp_ = 0;
  uint64_t endpoint_changes_pending_ = 0;
  uint64_t endpoint_changes_total_ = 0;
  uint64_t service_changes_pending_ = 0;
  uint64_t service_changes_total_ = 0;
  uint64_t sync_failures_total_ = 0;
  NoLocalEndpoints no_local_endpoints_;
  std::map<int, uint64_t> healthz_total_;
  std::map<int, uint64_t> livez_total_;
  KernelObjects kernel_objects_;
  uint64_t conntrack_deleted_total_ = 0;
  uint64_t drift_repairs_total_ = 0;
  uint64_t decode_errors_total_ = 0;
  uint64_t manifest_read_errors_total_ = 0;
  uint64_t watch_restarts_total_ = 0;
  uint64_t watch_relists_total_ = 0;
  std::map<std::string, uint64_t> watch_bookmarks_total_;
  std::string proxy_mode_;
};

}  // namespace svcproxy::proxy
