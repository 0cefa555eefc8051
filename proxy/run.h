// `svcproxy run`: the long-running daemon over the manifests source. A first
// full sync, then a partial sync whenever the manifests change (inotify), a
// full resync every sync period (repairs hand edits of svcproxy's tables),
// and a clean exit on SIGTERM/SIGINT that leaves the rules in place.
#pragma once

#include <chrono>
#include <string>

#include "proxy/node_flags.h"
#include "proxy/userspace_mode.h"

namespace svcproxy::proxy {

struct RunOptions {
  std::string manifests;
  NodeFlags node;
  std::chrono::milliseconds sync_period{30000};
  // A change is synced no sooner than this after the previous sync; changes
  // meanwhile coalesce into one sync (kube-proxy's bounded-frequency runner;
  // 0 in nftables mode: at once).
  std::chrono::milliseconds min_sync_period{0};
  std::string healthz_bind_address = "0.0.0.0:10256";  // empty: off
  std::string metrics_bind_address = "127.0.0.1:10249";  // empty: off
  // --proxy-mode as resolved at startup: "nftables" or "userspace" (the
  // userspace L4 proxy on svcproxy0; see userspace/).
  std::string proxy_mode = "nftables";
  UserspaceFlags userspace;
};

int run_daemon(const RunOptions& options);

}  // namespace svcproxy::proxy
