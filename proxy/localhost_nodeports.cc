#include "proxy/localhost_nodeports.h"

#include <algorithm>
#include <utility>

#include "dataplane/compile.h"
#include "dataplane/netlink_decode.h"

namespace svcproxy::proxy {
namespace {

userspace::ProxierOptions relay_options(const model::IPAddress& address, const UserspaceFlags& flags, Log& log) {
  userspace::ProxierOptions out;
  out.workers = flags.workers != 0 ? flags.workers : 1;
  out.max_connections = flags.max_connections;
  out.drain_timeout = flags.drain_timeout;
  out.nodeports.ips = {address};
  // Events come from the relay's worker threads; Log writes each line whole.
  out.on_event = [&log](const std::string& event) { log.info("localhost nodeports " + event); };
  return out;
}

}  // namespace

std::optional<model::ServicePortState> localhost_nodeport_view(const model::ServicePortState& port) {
  if (port.node_port == 0 || port.name.protocol != model::Protocol::TCP) return std::nullopt;
  model::ServicePortState view = port;
  view.cluster_ip = model::IPAddress{};
  view.cluster_ip.family = port.name.family;  // unspecified: no ClusterIP listener
  view.external_ips.clear();
  view.load_balancer_ips.clear();
  view.load_balancer_source_ranges.clear();
  return view;
}

LocalhostNodePorts::LocalhostNodePorts(const std::vector<model::IPAddress>& addresses, const UserspaceFlags& flags,
                                       Log& log) {
  for (const auto& address : addresses)
    relays_.push_back(
        {address.family, std::make_unique<userspace::UserspaceProxier>(relay_options(address, flags, log))});
}

LocalhostNodePorts::~LocalhostNodePorts() {
  for (auto& relay : relays_) relay.proxier->stop();
}

std::vector<LocalhostNodePorts::FamilyStats> LocalhostNodePorts::stats() const {
  std::vector<FamilyStats> out;
  for (const auto& relay : relays_) {
    const auto s = relay.proxier->stats();
    // TCP listeners: one socket, counted once per worker.
    out.push_back({relay.family, s.listeners / std::max(1u, relay.proxier->workers()), s.listen_errors});
  }
  return out;
}

void LocalhostNodePorts::add_views(Views& views, const std::vector<model::ServicePortState>& ports) {
  for (const auto& port : ports)
    if (auto view = localhost_nodeport_view(port)) views[port.name.service].push_back(std::move(*view));
}

std::vector<std::string> LocalhostNodePorts::set_all(const std::vector<model::ServicePortState>& ports) {
  Views next;
  add_views(next, ports);
  views_ = std::move(next);
  return apply();
}

std::vector<std::string> LocalhostNodePorts::set_services(const std::vector<model::ObjectRef>& services,
                                                          const std::vector<model::ServicePortState>& ports) {
  Views changed;
  add_views(changed, ports);
  bool any = false;
  for (const auto& ref : services) {
    auto now = changed.find(ref);
    auto before = views_.find(ref);
    const bool has_now = now != changed.end(), had = before != views_.end();
    if (!has_now && !had) continue;  // not a TCP NodePort service, before or now
    if (has_now && had && now->second == before->second) continue;
    any = true;
    if (has_now)
      views_[ref] = std::move(now->second);
    else
      views_.erase(before);
  }
  return any ? apply() : warnings_;
}

LocalhostRejectCounters::LocalhostRejectCounters(const std::vector<model::IPFamily>& families) {
  for (auto family : families)
    for (auto protocol : {model::Protocol::SCTP, model::Protocol::UDP}) seen_.push_back({0, {family, protocol, 0}});
}

std::vector<LocalhostRejectCounters::Total> LocalhostRejectCounters::read() {
  std::lock_guard lock(mutex_);
  return read_locked();
}

std::vector<LocalhostRejectCounters::Total> LocalhostRejectCounters::read_locked() {
  std::vector<Total> out;
  std::vector<dataplane::CounterValue> values;
  bool readable = false;
  try {
    values = dataplane::read_counters(socket_, dataplane::names::kTable);  // both families, one dump
    readable = true;
  } catch (const std::exception&) {
    readable = false;  // this scrape shows the totals so far
  }
  for (auto& seen : seen_) {
    const std::string name =
        dataplane::names::kLocalhostNodePortRejectedPrefix + std::string(model::to_lower(seen.total.protocol));
    auto it = std::find_if(values.begin(), values.end(),
                           [&](const auto& v) { return v.family == seen.total.family && v.name == name; });
    if (readable && it != values.end()) {
      // Below the last read: the table was recreated behind our back (by
      // hand, or by another daemon), counting from 0.
      seen.total.packets += it->packets >= seen.kernel ? it->packets - seen.kernel : it->packets;
      seen.kernel = it->packets;
    } else if (readable) {
      seen.kernel = 0;  // no such counter (yet): the next one starts from 0
    }
    out.push_back(seen.total);
  }
  return out;
}

std::vector<std::string> LocalhostNodePorts::apply() {
  std::vector<model::ServicePortState> all;
  for (const auto& [ref, ports] : views_) all.insert(all.end(), ports.begin(), ports.end());
  warnings_.clear();
  for (auto& relay : relays_)
    for (auto& w : relay.proxier->update(all)) warnings_.push_back("localhost nodeports: " + w);
  return warnings_;
}

}  // namespace svcproxy::proxy
