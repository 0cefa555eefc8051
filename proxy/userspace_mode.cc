#include "proxy/userspace_mode.h"

#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "model/service_ports.h"

namespace svcproxy::proxy {

namespace {

// One klog-style line written with a single write(2): events come from the
// proxy's worker threads, and lines must not interleave.
void log_event(const std::string& message) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm parts;
  gmtime_r(&ts.tv_sec, &parts);
  char stamp[64];
  std::snprintf(stamp, sizeof stamp, "I%02d%02d %02d:%02d:%02d.%06ld %6d userspace] ", parts.tm_mon + 1,
                parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec, ts.tv_nsec / 1000, getpid());
  const std::string line = stamp + message + "\n";
  [[maybe_unused]] const auto n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace

userspace::BackendOptions userspace_backend_options(const UserspaceFlags& flags, const model::NodeConfig& node) {
  userspace::BackendOptions out;
  out.proxier.workers = flags.workers;
  out.proxier.max_connections = flags.max_connections;
  out.proxier.udp_timeout = flags.udp_timeout;
  out.proxier.drain_timeout = flags.drain_timeout;
  out.proxier.nodeports.ips = node.nodeport_ips;
  out.proxier.nodeports.all_v4 = node.nodeport_all_local_v4;
  out.proxier.nodeports.all_v6 = node.nodeport_all_local_v6;
  out.proxier.on_event = log_event;
  return out;
}

SyncResult sync_userspace(userspace::UserspaceBackend& backend, const model::ClusterState& cluster,
                          const model::NodeConfig& node) {
  const auto state = model::build_proxy_state(cluster, node);
  const auto applied = backend.apply(state.ports);
  for (const auto& w : applied.warnings) log_event(w);
  const auto s = backend.stats();
  log_event("stats listeners=" + std::to_string(applied.listeners) + " addresses_changed=" +
            std::to_string(applied.address_changes) + " accepted=" + std::to_string(s.accepted) +
            " proxied=" + std::to_string(s.proxied) + " active=" + std::to_string(s.active) +
            " rejected_no_endpoints=" + std::to_string(s.rejected_no_endpoints) +
            " rejected_source_range=" + std::to_string(s.rejected_source_range) +
            " rejected_limit=" + std::to_string(s.rejected_limit) + " connect_failures=" +
            std::to_string(s.connect_failures) + " ejections=" + std::to_string(s.ejections) +
            " accept_backoffs=" + std::to_string(s.accept_backoffs) + " drained=" + std::to_string(s.drained) +
            " udp_flows=" + std::to_string(s.udp_flows) +
            " update_us=" + std::to_string(s.last_update_duration.count()));
  SyncResult r;
  r.full = true;
  r.operations = applied.address_changes;
  r.duration = applied.duration;
  r.error = applied.error;
  return r;
}

}  // namespace svcproxy::proxy
