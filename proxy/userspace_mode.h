// --proxy-mode userspace in the daemon: the flags, and the userspace
// backend (svcproxy0 addresses + proxy listeners) behind the daemon's
// Dataplane interface.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <optional>

#include "model/node_config.h"
#include "model/objects.h"
#include "proxy/dataplane.h"
#include "proxy/log.h"
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

// The userspace backend as a Dataplane. Its apply() takes every port and
// changes only what differs (addresses, listeners, endpoint tables), so a
// change is applied by handing it the per-service state with the changed
// services replaced. A node change that moves the NodePort addresses starts
// the proxy anew on them (its listeners are bound at start).
class UserspaceDataplane final : public Dataplane {
 public:
  UserspaceDataplane(const UserspaceFlags& flags, const model::NodeConfig& node, Log& log);

  void set_node(const model::NodeConfig& node) override;
  bool needs_full_sync() const override { return needs_full_; }
  SyncResult full_sync(const std::vector<model::ServicePortState>& ports) override;
  SyncResult apply_changes(const std::vector<model::ObjectRef>& services,
                           const std::vector<model::ServicePortState>& ports) override;
  // The userspace proxy holds what it was last given; nothing can drift.
  void log_stats() override;

 private:
  void start(const model::NodeConfig& node);
  SyncResult apply();

  UserspaceFlags flags_;
  Log& log_;
  model::NodeConfig node_;
  std::unique_ptr<userspace::UserspaceBackend> backend_;
  std::map<model::ObjectRef, std::vector<model::ServicePortState>> services_;
  userspace::ApplyResult last_;
  bool needs_full_ = true;
};

}  // namespace svcproxy::proxy
