#include "proxy/userspace_mode.h"

#include "model/service_ports.h"

namespace svcproxy::proxy {


userspace::BackendOptions userspace_backend_options(const UserspaceFlags& flags, const model::NodeConfig& node,
                                                    Log& log) {
  userspace::BackendOptions out;
  out.proxier.workers = flags.workers;
  out.proxier.max_connections = flags.max_connections;
  out.proxier.udp_timeout = flags.udp_timeout;
  out.proxier.drain_timeout = flags.drain_timeout;
  out.proxier.nodeports.ips = node.nodeport_ips;
  out.proxier.nodeports.all_v4 = node.nodeport_all_local_v4;
  out.proxier.nodeports.all_v6 = node.nodeport_all_local_v6;
  // Events come from the proxy's worker threads; Log writes each line whole.
  out.proxier.on_event = [&log](const std::string& event) { log.info("userspace " + event); };
  return out;
}

SyncResult sync_userspace(userspace::UserspaceBackend& backend, const model::ClusterState& cluster,
                          const model::NodeConfig& node, Log& log, std::vector<model::ServicePortState>* ports) {
  auto state = model::build_proxy_state(cluster, node);
  const auto applied = backend.apply(state.ports);
  const auto s = backend.stats();
  log.info("userspace stats", {{"listeners", applied.listeners},
                               {"addresses_changed", applied.address_changes},
                               {"accepted", s.accepted},
                               {"proxied", s.proxied},
                               {"active", s.active},
                               {"rejected_no_endpoints", s.rejected_no_endpoints},
                               {"rejected_source_range", s.rejected_source_range},
                               {"rejected_limit", s.rejected_limit},
                               {"connect_failures", s.connect_failures},
                               {"ejections", s.ejections},
                               {"accept_backoffs", s.accept_backoffs},
                               {"drained", s.drained},
                               {"udp_flows", s.udp_flows},
                               {"update_us", static_cast<int64_t>(s.last_update_duration.count())}});
  SyncResult r;
  r.full = true;
  r.operations = applied.address_changes;
  r.duration = applied.duration;
  r.error = applied.error;
  r.warnings = applied.warnings;
  for (const auto& skipped : state.skipped) r.warnings.push_back("skipped " + skipped.object.str() + ": " + skipped.reason);
  if (ports) *ports = std::move(state.ports);
  return r;
}

}  // namespace svcproxy::proxy
