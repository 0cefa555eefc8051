// `svcproxy loadtest TARGET`: flags -> a loadtest::Plan, run it, print the
// summary (and --json, --html), exit by --fail-if.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "loadtest/engine.h"
#include "proxy/loadtest_service.h"
#include "proxy/node_flags.h"
#include "proxy/source_flags.h"

namespace CLI {
class App;
}

namespace svcproxy::proxy {

struct LoadtestFlags {
  std::string target;
  std::string mode = "request";
  unsigned concurrency = 16;
  unsigned threads = 1;
  std::string duration;   // default 10s unless --requests
  uint64_t requests = 0;  // 0: not given
  double rate = 0;        // 0: closed loop
  std::string sources;
  bool no_keepalive = false;
  std::string http_path = "/";
  std::string endpoint_header = "X-Endpoint";
  std::string timeout = "1s";
  std::string json;
  std::string html;
  std::string fail_if;
  bool quiet = false;
  // NAMESPACE/SERVICE targets: where the cluster comes from and which node
  // this is (as rules/trace take them), which address to load, --watch.
  SourceFlags source;
  NodeFlags node;
  std::string via = "cluster";
  std::string family;            // ipv4 / ipv6; empty: the service's first
  std::string attribute = "auto";  // conntrack, answer, auto
  bool watch = false;
};

void add_loadtest_flags(CLI::App& cmd, LoadtestFlags& flags);

// What TARGET names: the address to load, and (for a service) the endpoints
// that must answer and how to attribute answers. Throws FlagError.
struct ResolvedTarget {
  sockaddr_storage address{};
  loadtest::ExpectedEndpoints expected;
  std::shared_ptr<loadtest::EndpointAttributor> attributor;
  std::unique_ptr<ServiceRun> service;  // a service target: kept for the run (--watch)
};
ResolvedTarget resolve_target(const LoadtestFlags& flags);

// Returns the exit status: 0, 1 when a --fail-if condition holds (or the
// run could not start), 2 for bad flags (FlagError is thrown for those).
int run_loadtest(const LoadtestFlags& flags);

}  // namespace svcproxy::proxy
