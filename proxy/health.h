// kube-proxy's health semantics (pkg/proxy/healthcheck), without the HTTP:
// the proxy's own health (/healthz, /livez) and the per-service
// healthCheckNodePort answers. proxy/http_server.cc serves these answers.
//
// The proxy is healthy unless an update was queued and not applied within
// 2 × syncPeriod (it is healthy while starting up, before any update).
// /healthz is also unhealthy while this Node is being deleted or carries the
// ToBeDeletedByClusterAutoscaler taint, so load balancers drain the node;
// /livez ignores the Node, so the kubelet does not restart a working proxy.
// /healthz is also unhealthy while the source cannot be read completely
// (--manifests: a path or file unreadable, a file that does not parse): the
// kernel keeps the last state read, which may be stale. /livez ignores that
// too: a restart would not read the source any better.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "model/objects.h"
#include "model/service_ports.h"

namespace svcproxy::proxy {

// One moment on both clocks: health is decided on the monotonic clock (a
// wall-clock step must not make the proxy look hung); the wall clock is what
// the JSON bodies show.
struct Instant {
  std::chrono::steady_clock::time_point mono;
  std::chrono::system_clock::time_point wall;
  static Instant now() { return {std::chrono::steady_clock::now(), std::chrono::system_clock::now()}; }
  Instant operator+(std::chrono::nanoseconds d) const {
    return {mono + d, wall + std::chrono::duration_cast<std::chrono::system_clock::duration>(d)};
  }
};

// Go's time.RFC3339Nano as kube-proxy's clients see it: UTC, "Z", the
// fraction without trailing zeros ("2026-11-28T06:13:21.5Z").
std::string format_rfc3339(std::chrono::system_clock::time_point t);

// False when the Node is being deleted or tainted ToBeDeletedByClusterAutoscaler.
bool node_eligible(const model::Node& node);

// An HTTP answer: status code and JSON body.
struct HealthAnswer {
  int status = 200;
  std::string body;
};

// Thread-safe: the sync loop updates it, the HTTP thread reads it.
class ProxyHealth {
 public:
  // Unhealthy when a queued update waits longer than 2 × sync_period.
  explicit ProxyHealth(std::chrono::nanoseconds sync_period);

  // A change that needs a sync arrived. Only the oldest pending one counts.
  void queued(Instant now = Instant::now());
  // A sync succeeded: everything queued so far is applied.
  void updated(Instant now = Instant::now());
  // This Node's state (a Node informer event). Eligible until told otherwise.
  void set_node(const model::Node& node) { set_node_eligible(node_eligible(node)); }
  void set_node_eligible(bool eligible);
  // Why the source could not be read completely; empty: it could.
  void set_source_problem(std::string problem);

  // The proxy's own health, ignoring the Node (what /livez and the
  // healthCheckNodePort servers use).
  bool healthy(Instant now = Instant::now()) const;
  bool node_is_eligible() const;

  // /healthz: 503 if unhealthy, the Node is not eligible or the source has
  // a problem. Body {"lastUpdated","currentTime","healthy","nodeEligible"},
  // plus "reason" (the problem) while the source has one.
  HealthAnswer healthz(Instant now = Instant::now()) const;
  // /livez: 503 if unhealthy. Body {"lastUpdated","currentTime","healthy"}.
  HealthAnswer livez(Instant now = Instant::now()) const;

  std::chrono::nanoseconds timeout() const { return timeout_; }

 private:
  struct Snapshot {
    bool healthy;
    std::optional<std::chrono::system_clock::time_point> last_updated;
    bool node_eligible;
    std::string source_problem;
  };
  Snapshot snapshot(Instant now) const;

  const std::chrono::nanoseconds timeout_;
  mutable std::mutex mutex_;
  std::optional<Instant> oldest_pending_;
  std::optional<std::chrono::system_clock::time_point> last_updated_;
  bool node_eligible_ = true;
  std::string source_problem_;
};

// One healthCheckNodePort server's subject.
struct HealthCheckService {
  std::string ns;
  std::string name;
  size_t local_endpoints = 0;  // ready endpoints on this node
  auto operator<=>(const HealthCheckService&) const = default;
};

// The healthCheckNodePort servers this node needs, by port: every service
// port with a health check node port (LoadBalancer, externalTrafficPolicy:
// Local). Local endpoints count as kube-proxy's LocalReadyEndpoints: distinct
// ready local endpoint IPs of the service (a pod serving 80 and 443 is one);
// for a dual-stack service, the larger of the two families' counts.
std::map<uint16_t, HealthCheckService> health_check_services(std::span<const model::ServicePortState> ports);

// A healthCheckNodePort answer: 200 when the service has local endpoints and
// the proxy is healthy, else 503; kube-proxy's body. The server adds the
// header X-Load-Balancing-Endpoint-Weight: local_endpoints.
HealthAnswer service_health(const HealthCheckService& service, bool proxy_healthy);

}  // namespace svcproxy::proxy
