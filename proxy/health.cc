#include "proxy/health.h"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <set>

#include "base/json.h"

namespace svcproxy::proxy {

std::string format_rfc3339(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto since_epoch = duration_cast<nanoseconds>(t.time_since_epoch());
  auto secs = duration_cast<seconds>(since_epoch);
  auto nanos = (since_epoch - secs).count();
  if (nanos < 0) {
    nanos += 1000000000;
    secs -= seconds(1);
  }
  const time_t tt = static_cast<time_t>(secs.count());
  std::tm parts{};
  gmtime_r(&tt, &parts);
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", parts.tm_year + 1900, parts.tm_mon + 1,
                        parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec);
  std::string out(buf, static_cast<size_t>(n));
  if (nanos != 0) {
    n = std::snprintf(buf, sizeof buf, ".%09lld", static_cast<long long>(nanos));
    std::string fraction(buf, static_cast<size_t>(n));
    while (fraction.back() == '0') fraction.pop_back();
    out += fraction;
  }
  out += 'Z';
  return out;
}

bool node_eligible(const model::Node& node) {
  if (node.being_deleted) return false;
  for (const auto& taint : node.taints)
    if (taint.key == "ToBeDeletedByClusterAutoscaler") return false;
  return true;
}

ProxyHealth::ProxyHealth(std::chrono::nanoseconds sync_period) : timeout_(2 * sync_period) {}

void ProxyHealth::queued(Instant now) {
  std::lock_guard lock(mutex_);
  if (!oldest_pending_) oldest_pending_ = now;
}

void ProxyHealth::updated(Instant now) {
  std::lock_guard lock(mutex_);
  oldest_pending_.reset();
  last_updated_ = now.wall;
}

void ProxyHealth::set_node_eligible(bool eligible) {
  std::lock_guard lock(mutex_);
  node_eligible_ = eligible;
}

void ProxyHealth::set_source_problem(std::string problem) {
  std::lock_guard lock(mutex_);
  source_problem_ = std::move(problem);
}

ProxyHealth::Snapshot ProxyHealth::snapshot(Instant now) const {
  std::lock_guard lock(mutex_);
  // Healthy while starting up, when fully synced, or while the oldest
  // pending update is younger than the timeout.
  const bool healthy = !oldest_pending_ || now.mono - oldest_pending_->mono < timeout_;
  return {healthy, last_updated_, node_eligible_, source_problem_};
}

bool ProxyHealth::healthy(Instant now) const { return snapshot(now).healthy; }

bool ProxyHealth::node_is_eligible() const {
  std::lock_guard lock(mutex_);
  return node_eligible_;
}

namespace {

const char* json_bool(bool b) { return b ? "true" : "false"; }

// Go's zero time, what kube-proxy reports before the first update.
constexpr const char* kZeroTime = "0001-01-01T00:00:00Z";

using base::json_string;

}  // namespace

HealthAnswer ProxyHealth::healthz(Instant now) const {
  const auto s = snapshot(now);
  const bool healthy = s.healthy && s.node_eligible && s.source_problem.empty();
  // As kube-proxy: when healthy, lastUpdated is reported as now (older
  // releases reported the last sync-loop run, which was always recent).
  const std::string last = healthy ? format_rfc3339(now.wall)
                                   : (s.last_updated ? format_rfc3339(*s.last_updated) : kZeroTime);
  return {healthy ? 200 : 503, "{\"lastUpdated\":\"" + last + "\",\"currentTime\":\"" + format_rfc3339(now.wall) +
                                   "\",\"healthy\":" + json_bool(healthy) +
                                   ",\"nodeEligible\":" + json_bool(s.node_eligible) +
                                   (s.source_problem.empty() ? "" : ",\"reason\":" + json_string(s.source_problem)) +
                                   "}"};
}

HealthAnswer ProxyHealth::livez(Instant now) const {
  const auto s = snapshot(now);
  const std::string last = s.healthy ? format_rfc3339(now.wall)
                                     : (s.last_updated ? format_rfc3339(*s.last_updated) : kZeroTime);
  return {s.healthy ? 200 : 503, "{\"lastUpdated\":\"" + last + "\",\"currentTime\":\"" + format_rfc3339(now.wall) +
                                     "\",\"healthy\":" + json_bool(s.healthy) + "}"};
}

std::map<uint16_t, HealthCheckService> health_check_services(std::span<const model::ServicePortState> ports) {
  struct Counting {
    uint16_t port = 0;
    std::set<model::IPAddress> ips[2];  // per family
  };
  std::map<model::ObjectRef, Counting> by_service;
  for (const auto& p : ports) {
    if (p.health_check_node_port == 0) continue;
    auto& c = by_service[p.name.service];
    if (c.port == 0) c.port = p.health_check_node_port;
    // local_endpoints holds exactly the ready local endpoints when there
    // are any (else serving-terminating fallbacks, which do not count).
    if (p.local_ready_count == 0) continue;
    for (const auto& ep : p.local_endpoints) c.ips[ep.ip.family == model::IPFamily::V4 ? 0 : 1].insert(ep.ip);
  }
  std::map<uint16_t, HealthCheckService> out;
  for (const auto& [ref, c] : by_service) {
    // The API server keeps healthCheckNodePorts unique; should two services
    // claim one anyway, the first by namespace/name keeps it.
    out.try_emplace(c.port, HealthCheckService{ref.ns, ref.name, std::max(c.ips[0].size(), c.ips[1].size())});
  }
  return out;
}

HealthAnswer service_health(const HealthCheckService& service, bool proxy_healthy) {
  const bool ok = service.local_endpoints != 0 && proxy_healthy;
  // kube-proxy's body, tab-indented as its dedented template.
  return {ok ? 200 : 503, "{\n\t\"service\": {\n\t\t\"namespace\": " + json_string(service.ns) +
                              ",\n\t\t\"name\": " + json_string(service.name) + "\n\t},\n\t\"localEndpoints\": " +
                              std::to_string(service.local_endpoints) + ",\n\t\"serviceProxyHealthy\": " +
                              json_bool(proxy_healthy) + "\n}"};
}

}  // namespace svcproxy::proxy
