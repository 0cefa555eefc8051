// The daemon's per-service model: the per-port state of every service
// (model::build_service_state), kept per service and updated for the dirty
// ones only, with what the daemon derives from it kept current the same way
// (no-local-endpoint counts, healthCheckNodePort servers, skip reasons), so
// that nothing is rebuilt over every service by a partial sync.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "model/node_config.h"
#include "model/objects.h"
#include "model/service_ports.h"
#include "proxy/health.h"
#include "proxy/metrics.h"
#include "watch/store.h"

namespace svcproxy::proxy {

class ServiceModel {
 public:
  // Recomputes every service from `cluster` (a full sync): O(cluster).
  void rebuild(const model::ClusterState& cluster, const model::NodeConfig& node);
  // Recomputes `services` from the store and returns their new ports, what
  // Dataplane::apply_changes takes: O(those services and their slices).
  std::vector<model::ServicePortState> recompute(const watch::Store& store, const std::set<model::ObjectRef>& services,
                                                 const model::NodeConfig& node);

  // Every service's ports, sorted by name (for a full sync).
  std::vector<model::ServicePortState> all_ports() const;
  // "skipped <object>: <reason>", every service's.
  std::vector<std::string> skip_warnings() const;
  NoLocalEndpoints no_local_endpoints() const { return no_local_; }
  // The healthCheckNodePort servers, when they may have changed since the
  // last call (none: unchanged).
  std::optional<std::map<uint16_t, HealthCheckService>> take_health_check_services();
  size_t services() const { return services_.size(); }

 private:
  struct Entry {
    std::vector<model::ServicePortState> ports;
    std::vector<std::string> skipped;
    NoLocalEndpoints no_local;
    bool health_check = false;
  };
  void set(const model::ObjectRef& service, std::vector<model::ServicePortState> ports,
           std::vector<std::string> skipped);
  void erase(const model::ObjectRef& service);

  std::map<model::ObjectRef, Entry> services_;
  std::set<model::ObjectRef> with_skips_;
  std::set<model::ObjectRef> with_health_check_;
  NoLocalEndpoints no_local_;
  bool health_checks_changed_ = true;
};

}  // namespace svcproxy::proxy
