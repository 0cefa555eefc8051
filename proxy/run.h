// `svcproxy run`: the long-running daemon's options and entry point. The
// daemon itself (the pipeline from the cluster source to the dataplane, and
// its handlers) is proxy/daemon.h.
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "proxy/conntrack_sysctls.h"
#include "proxy/log.h"
#include "proxy/node_flags.h"
#include "proxy/userspace_mode.h"
#include "proxy/zpages.h"
#include "watch/api_source.h"
#include "watch/kubeconfig.h"

namespace svcproxy::proxy {

struct RunOptions {
  // Exactly one source: the manifests path, or the API server.
  std::string manifests;
  std::optional<watch::ClientConfig> api;
  watch::ApiSourceOptions api_options;  // node_name is set from the node flags

  NodeFlags node;
  std::chrono::milliseconds sync_period{30000};
  // A change is synced no sooner than this after the previous sync; changes
  // meanwhile coalesce into one sync (kube-proxy's bounded-frequency runner;
  // 0 in nftables mode: at once).
  std::chrono::milliseconds min_sync_period{0};
  std::string healthz_bind_address = "0.0.0.0:10256";  // empty: off
  std::string metrics_bind_address = "127.0.0.1:10249";  // empty: off
  // --proxy-mode as resolved at startup: Nftables or Userspace (the
  // userspace L4 proxy on svcproxy0; see userspace/).
  ProxyMode proxy_mode = ProxyMode::Nftables;
  UserspaceFlags userspace;
  // What the metrics port's /flagz and /configz show (proxy/zpages.h).
  FlagValues flags;
  std::string configz = "{}";
  // Set at start in nftables mode (kube-proxy's platformSetup), after the
  // flags were checked and before the first sync.
  ConntrackSettings conntrack;
};

// This node's name as kube-proxy derives it: --hostname-override, else the
// hostname, lower-cased.
std::string node_name(const NodeFlags& flags);

int run_daemon(const RunOptions& options, Log& log);

}  // namespace svcproxy::proxy
