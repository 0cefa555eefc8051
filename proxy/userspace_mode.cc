#include "proxy/userspace_mode.h"

#include "proxy/node_flags.h"

namespace svcproxy::proxy {

userspace::BackendOptions userspace_backend_options(const UserspaceFlags& flags, const model::NodeConfig& node,
                                                    Log& log) {
  userspace::BackendOptions out;
  out.proxier.workers = flags.workers;
  out.proxier.max_connections = flags.max_connections;
  out.proxier.udp_timeout = flags.udp_timeout;
  out.proxier.drain_timeout = flags.drain_timeout;
  out.proxier.nodeports.ips = node.nodeport_ips;
  // Loopback in --nodeport-addresses: the proxy answers there itself (TCP
  // and UDP; nftables mode relays TCP only, as kube-proxy).
  for (const auto& ip : localhost_relay_addresses(node)) out.proxier.nodeports.ips.push_back(ip);
  out.proxier.nodeports.all_v4 = node.nodeport_all_local_v4;
  out.proxier.nodeports.all_v6 = node.nodeport_all_local_v6;
  // Events come from the proxy's worker threads; Log writes each line whole.
  out.proxier.on_event = [&log](const std::string& event) { log.info("userspace " + event); };
  return out;
}

UserspaceDataplane::UserspaceDataplane(const UserspaceFlags& flags, const model::NodeConfig& node, Log& log)
    : flags_(flags), log_(log), node_(node) {
  start(node);
}

void UserspaceDataplane::start(const model::NodeConfig& node) {
  backend_.reset();  // the old listeners close before the new ones bind
  backend_ = std::make_unique<userspace::UserspaceBackend>(userspace_backend_options(flags_, node, log_));
  log_.info("userspace proxy started", {{"interface", backend_->interface().name()},
                                        {"kind", backend_->interface().kind()},
                                        {"workers", backend_->workers()}});
}

void UserspaceDataplane::set_node(const model::NodeConfig& node) {
  if (node == node_) return;
  const bool nodeports_moved = node.nodeport_ips != node_.nodeport_ips ||
                               node.nodeport_all_local_v4 != node_.nodeport_all_local_v4 ||
                               node.nodeport_all_local_v6 != node_.nodeport_all_local_v6 ||
                               node.localhost_nodeport_ranges != node_.localhost_nodeport_ranges;
  node_ = node;
  if (nodeports_moved) start(node_);
  needs_full_ = true;
}

SyncResult UserspaceDataplane::apply() {
  std::vector<model::ServicePortState> all;
  for (const auto& [ref, ports] : services_) all.insert(all.end(), ports.begin(), ports.end());
  last_ = backend_->apply(all);
  SyncResult r;
  r.operations = last_.address_changes;
  r.duration = last_.duration;
  r.error = last_.error;
  r.warnings = last_.warnings;
  needs_full_ = !r.error.empty();
  return r;
}

SyncResult UserspaceDataplane::full_sync(const std::vector<model::ServicePortState>& ports) {
  services_.clear();
  for (const auto& p : ports) services_[p.name.service].push_back(p);
  SyncResult r = apply();
  r.full = true;
  return r;
}

SyncResult UserspaceDataplane::apply_changes(const std::vector<model::ObjectRef>& services,
                                             const std::vector<model::ServicePortState>& ports) {
  for (const auto& ref : services) services_.erase(ref);
  for (const auto& p : ports) services_[p.name.service].push_back(p);
  return apply();
}

void UserspaceDataplane::log_stats() {
  const auto s = backend_->stats();
  log_.info("userspace stats", {{"listeners", last_.listeners},
                                {"addresses_changed", last_.address_changes},
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
}

}  // namespace svcproxy::proxy
