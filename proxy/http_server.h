// The daemon's HTTP endpoints on Boost.Beast, served from one io_context
// thread of their own:
//   --healthz-bind-address  /healthz, /livez            (kube-proxy's semantics, proxy/health.h)
//   --metrics-bind-address  /metrics, /metrics/slis, /healthz, /proxyMode,
//                           /configz, /flagz, /statusz (proxy/zpages.h),
//                           /debug/ and /debug/state (proxy/debug_feed.h)
//   one server per healthCheckNodePort (any path)        (set_health_check_services)
// The sync loop never blocks on a client: answers read shared state that is
// thread-safe (ProxyHealth, Metrics, the services table under a mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "proxy/health.h"
#include "proxy/metrics.h"
#include "proxy/modes.h"
#include "proxy/zpages.h"

namespace svcproxy::proxy {

class DebugFeed;

// "ip:port" or "[ipv6]:port" (port 0: any free port).
struct HostPort {
  std::string ip;  // without brackets
  uint16_t port = 0;
};
// An error ("... want IP:PORT, e.g. 0.0.0.0:10256") when malformed.
base::Result<HostPort> parse_host_port(std::string_view text);

// A listener could not be opened; the message names the address.
struct BindError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct HttpServerOptions {
  std::string healthz_bind_address = "0.0.0.0:10256";    // empty: no healthz server
  std::string metrics_bind_address = "127.0.0.1:10249";  // empty: no metrics server
  // IPs the healthCheckNodePort servers listen on (kube-proxy: the
  // --nodeport-addresses IPs); empty: every address, both families.
  std::vector<std::string> health_check_ips;
  ProxyMode proxy_mode = ProxyMode::Nftables;  // answered on /proxyMode
  // The z-pages' content: /flagz lists `flags`, /configz answers `configz`
  // (a JSON document), /statusz tells `started` and the uptime.
  FlagValues flags;
  std::string configz = "{}";
  std::chrono::system_clock::time_point started = std::chrono::system_clock::now();
  const DebugFeed* debug = nullptr;  // /debug/ pages; must outlive the server (null: none)
};

class HttpServer {
 public:
  // `health` and `metrics` must outlive the server.
  HttpServer(HttpServerOptions options, const ProxyHealth& health, Metrics& metrics);
  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Opens the healthz and metrics listeners and starts serving. When it
  // returns, both accept connections. Throws BindError naming the flag and
  // address ("--healthz-bind-address 0.0.0.0:10256: Address already in use").
  void start();
  // Closes every listener and connection and joins the thread. Idempotent.
  void stop();

  // The bound ports (useful with port 0); 0 when that server is disabled.
  uint16_t healthz_port() const { return healthz_port_; }
  uint16_t metrics_port() const { return metrics_port_; }

  // Makes `services` (by healthCheckNodePort) the set of health check
  // servers: ports no longer present are closed, new ones opened, and every
  // service's local endpoint count updated (no reopen for count changes).
  // When it returns, new ports accept and closed ports refuse connections.
  // A port that cannot be opened is reported (one message each, naming the
  // service and address) and retried on the next call, as kube-proxy does.
  std::vector<std::string> set_health_check_services(const std::map<uint16_t, HealthCheckService>& services);
  // The IPs the health check servers listen on: the node's NodePort
  // addresses, which follow its Node (its InternalIPs may arrive or change
  // after start). On a change every health check listener is closed; the
  // next set_health_check_services opens them on the new IPs.
  void set_health_check_ips(std::vector<std::string> ips);
  // Ports with an open health check server.
  std::vector<uint16_t> health_check_ports() const;

  class Impl;

 private:
  std::unique_ptr<Impl> impl_;
  uint16_t healthz_port_ = 0;
  uint16_t metrics_port_ = 0;
};

}  // namespace svcproxy::proxy
