#include "proxy/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "prometheus_text.h"

namespace svcproxy::proxy {
namespace {

using svcproxy::testing::parse_prometheus_text;
using namespace std::chrono_literals;

const Metrics::TimePoint kNoon = Metrics::TimePoint(std::chrono::seconds(1764331200));  // 2025-11-28T12:00:00Z
const std::map<std::string, std::string> kV4 = {{"ip_family", "IPv4"}};
const std::map<std::string, std::string> kV6 = {{"ip_family", "IPv6"}};
constexpr auto V4 = model::IPFamily::V4;
constexpr auto V6 = model::IPFamily::V6;

// Fixed process stats: renders do not depend on this test process.
ProcessStats fixed_process_stats() {
  ProcessStats p;
  p.cpu_seconds = 1.5;
  p.open_fds = 12;
  p.max_fds = 1048576;
  p.virtual_memory_bytes = 123456789;
  p.virtual_memory_max_bytes = 18446744073709551615.0;
  p.resident_memory_bytes = 23456789;
  p.start_time_seconds = 1764331100.25;
  p.network_receive_bytes = 4000;
  p.network_transmit_bytes = 5000;
  return p;
}

NoLocalEndpoints no_local(size_t v4_internal, size_t v4_external, size_t v6_internal = 0, size_t v6_external = 0) {
  NoLocalEndpoints n;
  n.v4 = {v4_internal, v4_external};
  n.v6 = {v6_internal, v6_external};
  return n;
}

SyncResult sync_result(bool full, std::chrono::microseconds duration, std::string error = "") {
  SyncResult r;
  r.full = full;
  r.duration = duration;
  r.error = std::move(error);
  return r;
}

// Every method called with values a daemon sees, so that every family and
// label appears in the exposition.
void populate(Metrics& m) {
  m.set_proxy_mode(ProxyMode::Userspace);
  m.observe_sync(sync_result(true, 5123us), kNoon);
  m.observe_sync(sync_result(false, 300us), kNoon + 1s);
  m.observe_sync(sync_result(false, 40ms, "netlink: EPERM"), kNoon + 2s);
  auto with_conntrack = sync_result(false, 1250us);
  with_conntrack.conntrack_deleted = 3;
  with_conntrack.conntrack_reconciles = {{V4, 2, 700us}, {V6, 1, 3ms}};
  m.observe_sync(with_conntrack, kNoon + 3s);
  m.sync_queued(kNoon + 3500ms);
  m.changes_received(7, 2);
  m.set_changes_pending(4, 1);
  m.observe_network_programming(V4, std::chrono::duration<double>(0.75));
  m.observe_network_programming(V4, std::chrono::duration<double>(61.5));
  m.observe_network_programming(V6, std::chrono::duration<double>(400));
  m.set_no_local_endpoints(no_local(2, 1, 0, 1));
  m.set_kernel_objects({10, 4, 1000});
  m.count_healthz(200);
  m.count_healthz(503);
  m.count_livez(200);
  m.count_decode_errors(2);
  m.set_manifest_read_errors(3);
  m.set_watch_totals(5, 1);
  m.set_watch_bookmarks({{"services", 3}, {"endpointslices", 2}});
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// One family of a text exposition: its HELP and TYPE lines and its sample
// lines, sorted (prometheus-cpp writes a histogram's _count and _sum before
// its buckets, the hand-written serializer wrote them after).
struct ExposedFamily {
  std::string help, type;
  std::vector<std::string> samples;
};

std::vector<ExposedFamily> families_of(const std::string& text) {
  std::vector<ExposedFamily> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with("# HELP "))
      out.push_back({line, "", {}});
    else if (line.starts_with("# TYPE ") && !out.empty())
      out.back().type = line;
    else if (!line.empty() && !out.empty())
      out.back().samples.push_back(line);
  }
  for (auto& f : out) std::sort(f.samples.begin(), f.samples.end());
  return out;
}

// metrics_golden.prom is the exposition of populate(), reviewed line by
// line against kube-proxy v1.37.2's own /metrics for the kubeproxy_ and
// process_ families (names, types, help texts, labels, buckets): the same
// families in the same order, HELP and TYPE lines byte for byte, every
// sample with the same name, labels and value. Regenerate it with
// SVCPROXY_WRITE_GOLDEN=1 and review the diff.
TEST(Metrics, ExpositionIsTheGoldenOne) {
  Metrics m(fixed_process_stats);
  populate(m);
  const auto rendered = m.render();
  const std::string golden_path = SVCPROXY_SOURCE_DIR "/tests/proxy/metrics_golden.prom";
  if (std::getenv("SVCPROXY_WRITE_GOLDEN") != nullptr) std::ofstream(golden_path) << rendered;
  const auto after = families_of(rendered);
  const auto before = families_of(read_file(golden_path));
  ASSERT_EQ(after.size(), before.size()) << rendered;
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].help, before[i].help);
    EXPECT_EQ(after[i].type, before[i].type);
    ASSERT_EQ(after[i].samples.size(), before[i].samples.size()) << before[i].help;
    for (size_t j = 0; j < after[i].samples.size(); ++j) EXPECT_EQ(after[i].samples[j], before[i].samples[j]);
  }
  EXPECT_NO_THROW(parse_prometheus_text(rendered));
}

TEST(Metrics, FreshRegistryParsesWithEveryFamilyTyped) {
  Metrics m(fixed_process_stats);
  const auto text = m.render();
  const auto parsed = parse_prometheus_text(text);
  const std::map<std::string, std::string> expected = {
      {"kubeproxy_sync_proxy_rules_duration_seconds", "histogram"},
      {"kubeproxy_sync_full_proxy_rules_duration_seconds", "histogram"},
      {"kubeproxy_sync_partial_proxy_rules_duration_seconds", "histogram"},
      {"kubeproxy_sync_proxy_rules_last_timestamp_seconds", "gauge"},
      {"kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", "gauge"},
      {"kubeproxy_network_programming_duration_seconds", "histogram"},
      {"kubeproxy_sync_proxy_rules_endpoint_changes_pending", "gauge"},
      {"kubeproxy_sync_proxy_rules_endpoint_changes_total", "counter"},
      {"kubeproxy_sync_proxy_rules_service_changes_pending", "gauge"},
      {"kubeproxy_sync_proxy_rules_service_changes_total", "counter"},
      {"kubeproxy_sync_proxy_rules_nftables_sync_failures_total", "counter"},
      {"kubeproxy_sync_proxy_rules_no_local_endpoints_total", "gauge"},
      {"kubeproxy_proxy_healthz_total", "counter"},
      {"kubeproxy_proxy_livez_total", "counter"},
      {"kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total", "counter"},
      {"kubeproxy_conntrack_reconciler_sync_duration_seconds", "histogram"},
      {"kubeproxy_conntrack_reconciler_deleted_entries_total", "counter"},
      {"process_cpu_seconds_total", "counter"},
      {"process_max_fds", "gauge"},
      {"process_network_receive_bytes_total", "counter"},
      {"process_network_transmit_bytes_total", "counter"},
      {"process_open_fds", "gauge"},
      {"process_resident_memory_bytes", "gauge"},
      {"process_start_time_seconds", "gauge"},
      {"process_virtual_memory_bytes", "gauge"},
      {"process_virtual_memory_max_bytes", "gauge"},
      {"svcproxy_kernel_objects", "gauge"},
      {"svcproxy_conntrack_entries_deleted_total", "counter"},
      {"svcproxy_sync_drift_repairs_total", "counter"},
      {"svcproxy_manifest_decode_errors_total", "counter"},
      {"svcproxy_manifest_read_errors_total", "counter"},
      {"svcproxy_watch_restarts_total", "counter"},
      {"svcproxy_watch_relists_total", "counter"},
  };
  EXPECT_EQ(parsed.families.size(), expected.size()) << text;
  for (const auto& [name, type] : expected) {
    auto it = parsed.families.find(name);
    ASSERT_NE(it, parsed.families.end()) << name;
    EXPECT_EQ(it->second.type, type) << name;
    EXPECT_FALSE(it->second.samples.empty()) << name;
  }
  EXPECT_EQ(parsed.families.at("kubeproxy_sync_proxy_rules_duration_seconds").help,
            "[ALPHA] SyncProxyRules latency in seconds");
  EXPECT_EQ(parsed.value("kubeproxy_proxy_healthz_total", {{"code", "200"}}), 0);
  EXPECT_EQ(parsed.value("kubeproxy_proxy_livez_total", {{"code", "503"}}), 0);
}

TEST(Metrics, SyncDurationBucketsAreKubeProxys) {
  Metrics m;
  const auto parsed = parse_prometheus_text(m.render());
  std::vector<std::string> les;
  for (const auto& s : parsed.families.at("kubeproxy_sync_proxy_rules_duration_seconds").samples)
    if (s.name.ends_with("_bucket") && s.labels.at("ip_family") == "IPv4") les.push_back(s.labels.at("le"));
  const std::vector<std::string> want = {"0.001", "0.002", "0.004", "0.008", "0.016", "0.032",
                                         "0.064", "0.128", "0.256", "0.512", "1.024", "2.048",
                                         "4.096", "8.192", "16.384", "+Inf"};
  EXPECT_EQ(les, want);
  EXPECT_EQ(exponential_buckets(0.001, 2, 15).size(), 15u);
}

TEST(Metrics, ObservesSyncsByKindAndOutcome) {
  Metrics m;
  m.observe_sync(sync_result(true, 5000us), kNoon);         // full, 5 ms
  m.observe_sync(sync_result(false, 300us), kNoon + 1s);    // partial, 0.3 ms
  auto failed = sync_result(false, 40ms, "netlink: EPERM");
  failed.conntrack_deleted = 0;
  m.observe_sync(failed, kNoon + 2s);
  auto with_conntrack = sync_result(false, 1ms);
  with_conntrack.conntrack_deleted = 3;
  m.observe_sync(with_conntrack, kNoon + 3s);

  const auto p = parse_prometheus_text(m.render());
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_duration_seconds_count", kV4), 4);
  EXPECT_EQ(p.value("kubeproxy_sync_full_proxy_rules_duration_seconds_count", kV4), 1);
  EXPECT_EQ(p.value("kubeproxy_sync_partial_proxy_rules_duration_seconds_count", kV4), 3);
  EXPECT_NEAR(p.value("kubeproxy_sync_proxy_rules_duration_seconds_sum", kV4), 0.0463, 1e-9);
  // 0.3 ms and 1 ms fall in le=0.001; 5 ms in le=0.008; 40 ms in le=0.064.
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_duration_seconds_bucket", {{"le", "0.001"}, {"ip_family", "IPv4"}}), 2);
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_duration_seconds_bucket", {{"le", "0.004"}, {"ip_family", "IPv4"}}), 2);
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_duration_seconds_bucket", {{"le", "0.008"}, {"ip_family", "IPv4"}}), 3);
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_duration_seconds_bucket", {{"le", "0.064"}, {"ip_family", "IPv4"}}), 4);
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_nftables_sync_failures_total", kV4), 1);
  // The last successful sync, not the failed one.
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_last_timestamp_seconds", kV4), 1764331203);
  EXPECT_EQ(p.value("svcproxy_conntrack_entries_deleted_total"), 3);
}

// One svcproxy sync programs both families' tables in one transaction: it
// is every family's sync (kube-proxy runs one per family).
TEST(Metrics, SyncMetricsCarryBothIpFamilies) {
  Metrics m(fixed_process_stats);
  m.observe_sync(sync_result(true, 5000us), kNoon);
  m.observe_sync(sync_result(false, 40ms, "netlink: EPERM"), kNoon + 2s);
  m.sync_queued(kNoon + 3s);
  const auto p = parse_prometheus_text(m.render());
  for (const auto& family : {kV4, kV6}) {
    EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_duration_seconds_count", family), 2);
    EXPECT_EQ(p.value("kubeproxy_sync_full_proxy_rules_duration_seconds_count", family), 1);
    EXPECT_EQ(p.value("kubeproxy_sync_partial_proxy_rules_duration_seconds_count", family), 1);
    EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_last_timestamp_seconds", family), 1764331200);
    EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", family), 1764331203);
    EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_nftables_sync_failures_total", family), 1);
    // Stale chains go in the sync's own transaction: no cleanup of its own to fail.
    EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_nftables_cleanup_failures_total", family), 0);
  }
  // Counters and gauges that kube-proxy keeps without a family.
  for (const char* name :
       {"kubeproxy_sync_proxy_rules_endpoint_changes_total", "kubeproxy_sync_proxy_rules_endpoint_changes_pending",
        "kubeproxy_sync_proxy_rules_service_changes_total", "kubeproxy_sync_proxy_rules_service_changes_pending"})
    EXPECT_EQ(p.value(name), 0) << name;
}

// kube-proxy's conntrack reconciler metrics, per family, from the
// reconciles a sync ran.
TEST(Metrics, ConntrackReconcilerDurationAndDeletionsPerFamily) {
  Metrics m(fixed_process_stats);
  auto r = sync_result(false, 10ms);
  r.conntrack_reconciles = {{V4, 2, 700us}, {V6, 0, 3ms}};
  r.conntrack_deleted = 2;
  m.observe_sync(r, kNoon);
  auto only_v4 = sync_result(false, 1ms);
  only_v4.conntrack_reconciles = {{V4, 5, 20ms}};
  m.observe_sync(only_v4, kNoon + 1s);
  m.observe_sync(sync_result(false, 1ms), kNoon + 2s);  // none ran
  const auto p = parse_prometheus_text(m.render());
  EXPECT_EQ(p.families.at("kubeproxy_conntrack_reconciler_sync_duration_seconds").help,
            "[ALPHA] ReconcileConntrackFlowsLatency latency in seconds");
  EXPECT_EQ(p.value("kubeproxy_conntrack_reconciler_sync_duration_seconds_count", kV4), 2);
  EXPECT_EQ(p.value("kubeproxy_conntrack_reconciler_sync_duration_seconds_count", kV6), 1);
  EXPECT_NEAR(p.value("kubeproxy_conntrack_reconciler_sync_duration_seconds_sum", kV4), 0.0207, 1e-9);
  EXPECT_EQ(
      p.value("kubeproxy_conntrack_reconciler_sync_duration_seconds_bucket", {{"ip_family", "IPv4"}, {"le", "0.001"}}),
      1);
  EXPECT_EQ(p.value("kubeproxy_conntrack_reconciler_deleted_entries_total", kV4), 7);
  EXPECT_EQ(p.value("kubeproxy_conntrack_reconciler_deleted_entries_total", kV6), 0);
}

TEST(Metrics, ProcessMetricsAsClientGolangNamesThem) {
  int reads = 0;
  Metrics m([&] {
    ++reads;
    auto p = fixed_process_stats();
    p.cpu_seconds += reads;  // moves between scrapes
    return p;
  });
  auto p = parse_prometheus_text(m.render());
  EXPECT_EQ(p.value("process_cpu_seconds_total"), 2.5);
  EXPECT_EQ(p.value("process_open_fds"), 12);
  EXPECT_EQ(p.value("process_max_fds"), 1048576);
  EXPECT_EQ(p.value("process_resident_memory_bytes"), 23456789);
  EXPECT_EQ(p.value("process_virtual_memory_bytes"), 123456789);
  EXPECT_DOUBLE_EQ(p.value("process_virtual_memory_max_bytes"), 18446744073709551615.0);  // 16 digits written
  EXPECT_EQ(p.value("process_start_time_seconds"), 1764331100.25);
  EXPECT_EQ(p.value("process_network_receive_bytes_total"), 4000);
  EXPECT_EQ(p.value("process_network_transmit_bytes_total"), 5000);
  EXPECT_EQ(p.families.at("process_start_time_seconds").help, "Start time of the process since unix epoch in seconds.");
  p = parse_prometheus_text(m.render());
  EXPECT_EQ(p.value("process_cpu_seconds_total"), 3.5);
}

// /metrics/slis: what kube-proxy's component-base SLI registry holds.
TEST(Metrics, SlisAreTheProcessStartTime) {
  Metrics m(fixed_process_stats);
  const auto text = m.render_slis();
  const auto p = parse_prometheus_text(text);
  ASSERT_EQ(p.families.size(), 1u) << text;
  EXPECT_EQ(p.families.at("process_start_time_seconds").type, "gauge");
  EXPECT_EQ(p.families.at("process_start_time_seconds").help,
            "[ALPHA] Start time of the process since unix epoch in seconds.");
  EXPECT_EQ(p.value("process_start_time_seconds"), 1764331100.25);
}

TEST(ProcessStats, ParsesProcFilesAsClientGolang) {
  ProcessStats s;
  // comm with a space and a ')' (fields are counted from the last one).
  const std::string stat =
      "4242 (svc proxy) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 9 0 12345 987654321 2048 "
      "18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
  ASSERT_TRUE(parse_proc_stat(stat, 1764300000, 100, 4096, s));
  EXPECT_DOUBLE_EQ(s.cpu_seconds, 3.0);  // (250 + 50) / 100
  EXPECT_DOUBLE_EQ(s.start_time_seconds, 1764300123.45);
  EXPECT_DOUBLE_EQ(s.virtual_memory_bytes, 987654321);
  EXPECT_DOUBLE_EQ(s.resident_memory_bytes, 2048.0 * 4096);
  EXPECT_FALSE(parse_proc_stat("garbage", 0, 100, 4096, s));
  EXPECT_EQ(parse_boot_time("cpu  1 2 3\nbtime 1764300000\nprocesses 9\n"), 1764300000);
  EXPECT_EQ(parse_boot_time("cpu 1\n"), 0);
  ASSERT_TRUE(
      parse_netstat_octets("TcpExt: A B\nTcpExt: 1 2\nIpExt: InNoRoutes InOctets OutOctets\n"
                           "IpExt: 0 474164 457266\n",
                           s));
  EXPECT_EQ(s.network_receive_bytes, 474164);
  EXPECT_EQ(s.network_transmit_bytes, 457266);
  EXPECT_FALSE(parse_netstat_octets("TcpExt: A\nTcpExt: 1\n", s));
}

// The real reader on this process: plausible values.
TEST(ProcessStats, ReadsThisProcess) {
  const auto s = read_process_stats();
  EXPECT_GT(s.open_fds, 2);
  EXPECT_GE(s.max_fds, s.open_fds);
  EXPECT_GT(s.resident_memory_bytes, 1e5);
  EXPECT_GE(s.virtual_memory_bytes, s.resident_memory_bytes);
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LE(s.start_time_seconds, now + 1);
  EXPECT_GT(s.start_time_seconds, now - 24 * 3600);  // started today
}

TEST(Metrics, DriftRepairsAreCounted) {
  Metrics m;
  EXPECT_EQ(parse_prometheus_text(m.render()).value("svcproxy_sync_drift_repairs_total"), 0);
  m.count_drift_repair();
  m.count_drift_repair();
  EXPECT_EQ(parse_prometheus_text(m.render()).value("svcproxy_sync_drift_repairs_total"), 2);
}

TEST(Metrics, ChangesQueuesAndCounters) {
  Metrics m;
  m.sync_queued(kNoon + 500ms);
  m.changes_received(3, 1);
  m.changes_received(2, 0);
  m.set_changes_pending(4, 1);
  m.set_no_local_endpoints(no_local(2, 1, 0, 3));
  m.set_kernel_objects({10, 4, 1000});
  m.count_healthz(200);
  m.count_healthz(503);
  m.count_healthz(503);
  m.count_livez(200);
  m.count_decode_errors(2);
  m.set_manifest_read_errors(3);
  m.count_watch_restart();
  m.count_watch_relist();
  m.count_watch_relist();
  const auto p = parse_prometheus_text(m.render());
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_last_queued_timestamp_seconds", kV4), 1764331200.5);
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_endpoint_changes_total"), 5);
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_service_changes_total"), 1);
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_endpoint_changes_pending"), 4);
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_service_changes_pending"), 1);
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                    {{"ip_family", "IPv4"}, {"traffic_policy", "internal"}}),
            2);
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                    {{"ip_family", "IPv4"}, {"traffic_policy", "external"}}),
            1);
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_no_local_endpoints_total",
                    {{"ip_family", "IPv6"}, {"traffic_policy", "external"}}),
            3);
  EXPECT_EQ(p.value("svcproxy_kernel_objects", {{"kind", "chains"}}), 10);
  EXPECT_EQ(p.value("svcproxy_kernel_objects", {{"kind", "sets"}}), 4);
  EXPECT_EQ(p.value("svcproxy_kernel_objects", {{"kind", "elements"}}), 1000);
  EXPECT_EQ(p.value("kubeproxy_proxy_healthz_total", {{"code", "200"}}), 1);
  EXPECT_EQ(p.value("kubeproxy_proxy_healthz_total", {{"code", "503"}}), 2);
  EXPECT_EQ(p.value("kubeproxy_proxy_livez_total", {{"code", "200"}}), 1);
  EXPECT_EQ(p.value("svcproxy_manifest_decode_errors_total"), 2);
  EXPECT_EQ(p.value("svcproxy_manifest_read_errors_total"), 3);
  EXPECT_EQ(p.value("svcproxy_watch_restarts_total"), 1);
  EXPECT_EQ(p.value("svcproxy_watch_relists_total"), 2);
}

// Only the API source has watches: the family appears once the informer's
// counts are set, one counter per resource.
TEST(Metrics, WatchBookmarksByResource) {
  Metrics m;
  EXPECT_EQ(parse_prometheus_text(m.render()).families.count("svcproxy_watch_bookmarks_total"), 0u);
  m.set_watch_bookmarks({{"endpointslices", 2}, {"services", 3}});
  m.set_watch_bookmarks({{"endpointslices", 4}, {"services", 5}});  // monotonic totals, replaced
  const auto p = parse_prometheus_text(m.render());
  EXPECT_EQ(p.families.at("svcproxy_watch_bookmarks_total").type, "counter");
  EXPECT_EQ(p.value("svcproxy_watch_bookmarks_total", {{"resource", "services"}}), 5);
  EXPECT_EQ(p.value("svcproxy_watch_bookmarks_total", {{"resource", "endpointslices"}}), 4);
}

// The sources keep their own monotonic totals: setting one moves the
// counter to it, and a counter never goes down.
TEST(Metrics, TotalsKeptBySourcesMoveTheCounters) {
  Metrics m;
  m.set_watch_totals(4, 1);
  m.set_watch_totals(6, 1);
  m.set_manifest_read_errors(2);
  m.set_manifest_read_errors(2);
  auto p = parse_prometheus_text(m.render());
  EXPECT_EQ(p.value("svcproxy_watch_restarts_total"), 6);
  EXPECT_EQ(p.value("svcproxy_watch_relists_total"), 1);
  EXPECT_EQ(p.value("svcproxy_manifest_read_errors_total"), 2);
  m.set_watch_totals(3, 0);
  p = parse_prometheus_text(m.render());
  EXPECT_EQ(p.value("svcproxy_watch_restarts_total"), 6);
  EXPECT_EQ(p.value("svcproxy_watch_relists_total"), 1);
}

// The dataplane in use appears once it is known, one sample for one mode.
TEST(Metrics, ProxyModeIsOneSampleForTheModeInUse) {
  Metrics m;
  EXPECT_EQ(parse_prometheus_text(m.render()).families.count("svcproxy_proxy_mode"), 0u);
  m.set_proxy_mode(ProxyMode::Nftables);
  m.set_proxy_mode(ProxyMode::Userspace);
  const auto p = parse_prometheus_text(m.render());
  ASSERT_EQ(p.families.at("svcproxy_proxy_mode").samples.size(), 1u);
  EXPECT_EQ(p.value("svcproxy_proxy_mode", {{"mode", "userspace"}}), 1);
}

// Labelled samples come sorted by label, the same on every scrape.
TEST(Metrics, LabelledSamplesAreSorted) {
  Metrics m(fixed_process_stats);
  m.count_healthz(503);
  m.count_healthz(200);
  m.count_healthz(429);
  m.set_watch_bookmarks({{"services", 1}, {"endpointslices", 1}, {"nodes", 1}});
  const auto text = m.render();
  const auto p = parse_prometheus_text(text);
  std::vector<std::string> codes, resources;
  for (const auto& s : p.families.at("kubeproxy_proxy_healthz_total").samples) codes.push_back(s.labels.at("code"));
  for (const auto& s : p.families.at("svcproxy_watch_bookmarks_total").samples)
    resources.push_back(s.labels.at("resource"));
  EXPECT_EQ(codes, (std::vector<std::string>{"200", "429", "503"}));
  EXPECT_EQ(resources, (std::vector<std::string>{"endpointslices", "nodes", "services"}));
  EXPECT_EQ(m.render(), text);
}

TEST(Metrics, NetworkProgrammingLatencyFromTriggerTime) {
  Metrics m;
  EXPECT_TRUE(m.observe_network_programming(V4, "2025-11-28T11:59:58Z", kNoon));       // 2 s
  EXPECT_TRUE(m.observe_network_programming(V4, "2025-11-28T11:59:59.75Z", kNoon));    // 0.25 s
  EXPECT_TRUE(m.observe_network_programming(V4, "2025-11-28T13:59:00+02:00", kNoon));  // 60 s
  EXPECT_TRUE(m.observe_network_programming(V4, "2025-11-28T12:00:05Z", kNoon));       // skew: dropped
  EXPECT_FALSE(m.observe_network_programming(V4, "yesterday", kNoon));
  EXPECT_TRUE(m.observe_network_programming(V6, "2025-11-28T11:59:00Z", kNoon));  // 60 s, the other family
  const auto p = parse_prometheus_text(m.render());
  EXPECT_EQ(p.value("kubeproxy_network_programming_duration_seconds_count", kV4), 3);
  EXPECT_NEAR(p.value("kubeproxy_network_programming_duration_seconds_sum", kV4), 62.25, 1e-9);
  EXPECT_EQ(p.value("kubeproxy_network_programming_duration_seconds_bucket", {{"le", "0"}, {"ip_family", "IPv4"}}), 0);
  EXPECT_EQ(p.value("kubeproxy_network_programming_duration_seconds_bucket", {{"le", "0.25"}, {"ip_family", "IPv4"}}),
            1);
  EXPECT_EQ(p.value("kubeproxy_network_programming_duration_seconds_bucket", {{"le", "2"}, {"ip_family", "IPv4"}}), 2);
  EXPECT_EQ(p.value("kubeproxy_network_programming_duration_seconds_bucket", {{"le", "60"}, {"ip_family", "IPv4"}}), 3);
  EXPECT_EQ(p.value("kubeproxy_network_programming_duration_seconds_bucket", {{"le", "300"}, {"ip_family", "IPv4"}}),
            3);
  size_t buckets = 0;
  for (const auto& s : p.families.at("kubeproxy_network_programming_duration_seconds").samples)
    buckets += s.name.ends_with("_bucket") && s.labels.at("ip_family") == "IPv4";
  EXPECT_EQ(buckets, 82u);  // kube-proxy's 81 bounds and +Inf
  EXPECT_EQ(p.value("kubeproxy_network_programming_duration_seconds_count", kV6), 1);
  EXPECT_EQ(p.value("kubeproxy_network_programming_duration_seconds_bucket", {{"ip_family", "IPv6"}, {"le", "59"}}), 0);
}

TEST(Metrics, ParsesRfc3339) {
  const auto t = parse_rfc3339("2025-11-28T12:00:00.123456789Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(std::chrono::duration_cast<std::chrono::nanoseconds>(*t - kNoon).count(), 123456789);
  EXPECT_EQ(parse_rfc3339("2025-11-28T12:00:00-01:30"), kNoon + 90min);
  EXPECT_FALSE(parse_rfc3339("2025-11-28T12:00:00"));
  EXPECT_FALSE(parse_rfc3339("2025-13-28T12:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("2025-11-28T12:00:00.Z"));
  EXPECT_FALSE(parse_rfc3339("2025-11-28T12:00:00Zjunk"));
}

model::ServicePortState port(model::TrafficPolicy itp, model::TrafficPolicy etp, bool external, int cluster,
                             int local) {
  model::ServicePortState p;
  p.internal_traffic_policy = itp;
  p.external_traffic_policy = etp;
  if (external) p.node_port = 30000;
  for (int i = 0; i < cluster; ++i)
    p.cluster_endpoints.push_back({model::IPAddress::v4(10, 0, 0, static_cast<uint8_t>(i + 1)), 80});
  for (int i = 0; i < local; ++i)
    p.local_endpoints.push_back({model::IPAddress::v4(10, 0, 1, static_cast<uint8_t>(i + 1)), 80});
  return p;
}

TEST(Metrics, CountsNoLocalEndpointsAsKubeProxy) {
  using model::TrafficPolicy;
  const std::vector<model::ServicePortState> ports = {
      port(TrafficPolicy::Local, TrafficPolicy::Cluster, false, 2, 0),  // internal
      port(TrafficPolicy::Local, TrafficPolicy::Local, true, 2, 0),     // internal + external
      port(TrafficPolicy::Cluster, TrafficPolicy::Local, true, 2, 0),   // external
      port(TrafficPolicy::Cluster, TrafficPolicy::Local, false, 2, 0),  // eTP without external addresses
      port(TrafficPolicy::Local, TrafficPolicy::Local, true, 0, 0),     // no endpoints at all: rejected
      port(TrafficPolicy::Local, TrafficPolicy::Local, true, 2, 1),     // has a local endpoint
  };
  const auto c = count_no_local_endpoints(ports);
  EXPECT_EQ(c.v4.internal, 2u);
  EXPECT_EQ(c.v4.external, 2u);
  EXPECT_EQ(c.v6, NoLocalEndpoints::Counts{});
  // Per family, as kube-proxy's one proxier per family counts them.
  auto v6 = ports;
  for (auto& p : v6) p.name.family = model::IPFamily::V6;
  v6.resize(2);
  const auto both = count_no_local_endpoints([&] {
    auto all = ports;
    all.insert(all.end(), v6.begin(), v6.end());
    return all;
  }());
  EXPECT_EQ(both.v4, c.v4);
  EXPECT_EQ(both.v6.internal, 2u);
  EXPECT_EQ(both.v6.external, 1u);
  auto sum = c;
  sum += both;
  sum -= both;
  EXPECT_EQ(sum, c);
}

TEST(Metrics, RenderIsConsistentUnderConcurrentUpdates) {
  Metrics m;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 2000; ++i) {
      m.observe_sync(sync_result(i % 2 == 0, std::chrono::microseconds(i)), kNoon);
      m.count_healthz(i % 3 == 0 ? 503 : 200);
    }
    done = true;
  });
  int scrapes = 0;
  while (!done || scrapes == 0) {
    ASSERT_NO_THROW(parse_prometheus_text(m.render()));
    ++scrapes;
  }
  writer.join();
  const auto p = parse_prometheus_text(m.render());
  EXPECT_EQ(p.value("kubeproxy_sync_proxy_rules_duration_seconds_count", kV4), 2000);
}

TEST(PrometheusTextParser, RejectsWhatPrometheusWould) {
  using svcproxy::testing::parse_prometheus_text;
  EXPECT_THROW(parse_prometheus_text("foo 1\n"), std::runtime_error);  // no HELP/TYPE
  EXPECT_THROW(parse_prometheus_text("# HELP foo x\nfoo 1\n"), std::runtime_error);  // no TYPE
  EXPECT_THROW(parse_prometheus_text("# HELP foo x\n# TYPE foo gauge\nfoo{a=b} 1\n"), std::runtime_error);
  EXPECT_THROW(parse_prometheus_text("# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\n"
                                     "h_bucket{le=\"2\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"),
               std::runtime_error);  // not cumulative
  EXPECT_THROW(parse_prometheus_text("# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\n"
                                     "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n"),
               std::runtime_error);  // +Inf != _count
  EXPECT_NO_THROW(parse_prometheus_text("# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 1\n"
                                        "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n"));
}

}  // namespace
}  // namespace svcproxy::proxy
