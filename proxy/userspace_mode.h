// --proxy-mode userspace in the daemon: the flags, and one sync that brings
// the userspace backend (svcproxy0 addresses + proxy listeners) to the
// cluster's state, reported like an nftables sync.
#pragma once

#include <chrono>
#include <cstddef>

#include "model/node_config.h"
#include "model/objects.h"
#include "proxy/log.h"
#include "proxy/sync_loop.h"
#include "userspace/backend.h"

namespace svcproxy::proxy {

struct UserspaceFlags {
  unsigned workers = 0;          // --userspace-workers (0: one per CPU)
  size_t max_connections = 0;    // --userspace-max-connections (0: unlimited)
  std::chrono::milliseconds udp_timeout{250};  // --udp-timeout
  // --userspace-drain-timeout: TCP connections to an endpoint an update
  // removed are reset this long after it (0: left to finish).
  std::chrono::milliseconds drain_timeout{0};
};

// Proxy events (ejections, accept back-off) are logged to `log`, which must
// outlive the backend.
userspace::BackendOptions userspace_backend_options(const UserspaceFlags& flags, const model::NodeConfig& node,
                                                    Log& log);

// Builds the per-port state and applies it; SyncResult.full is always true
// (every apply is computed from the whole state; only differences touch
// the kernel and the listeners).
// Logs the proxy's counters; `ports` (optional) receives the per-port state
// applied (for the health check servers and gauges).
SyncResult sync_userspace(userspace::UserspaceBackend& backend, const model::ClusterState& cluster,
                          const model::NodeConfig& node, Log& log,
                          std::vector<model::ServicePortState>* ports = nullptr);

}  // namespace svcproxy::proxy
