#include "proxy/nftables_traffic_counters.h"

#include <algorithm>
#include <set>
#include <stdexcept>
#include <tuple>

#include "dataplane/compile.h"
#include "dataplane/netlink_socket.h"

namespace svcproxy::proxy {
namespace {

using CounterKey = std::pair<model::IPFamily, std::string>;
using Values = std::map<CounterKey, PacketCount>;

PacketCount value_of(const Values& values, model::IPFamily family, const std::string& name) {
  auto it = values.find({family, name});
  return it == values.end() ? PacketCount{} : it->second;
}

void add(PacketCount& to, const PacketCount& from) {
  to.packets += from.packets;
  to.bytes += from.bytes;
}

// What is left after taking `part` out of `whole` (never below zero: the
// counters are read one after another while traffic flows).
PacketCount minus(PacketCount whole, const PacketCount& part) {
  whole.packets -= std::min(whole.packets, part.packets);
  whole.bytes -= std::min(whole.bytes, part.bytes);
  return whole;
}

void add_port(const model::ServicePortState& sp, const Values& values, ServicePortTraffic& out) {
  const auto names = dataplane::port_counter_names(sp.name);
  const model::IPFamily family = sp.name.family;
  const PacketCount total = value_of(values, family, names.service);
  const PacketCount rejected = value_of(values, family, names.rejected);
  const PacketCount dropped = value_of(values, family, names.dropped);
  add(out.accepted, minus(minus(total, rejected), dropped));
  add(out.rejected, rejected);
  add(out.dropped, dropped);
  std::set<model::EndpointAddress> endpoints(sp.cluster_endpoints.begin(), sp.cluster_endpoints.end());
  endpoints.insert(sp.local_endpoints.begin(), sp.local_endpoints.end());
  for (const auto& ep : endpoints) {
    out.endpoints.push_back(
        {ep.str(), value_of(values, family, dataplane::endpoint_counter_name(ep, sp.name.protocol))});
  }
}

}  // namespace

TrafficSnapshot join_counters(const std::map<model::ObjectRef, NftablesTrafficCounters::Ports>& services,
                              const std::vector<dataplane::CounterValue>& values) {
  Values by_name;
  for (const auto& v : values) by_name[{v.family, v.name}] = {v.packets, v.bytes};
  // (ns, service, port, protocol): the families of a dual-stack port meet.
  std::map<std::tuple<std::string, std::string, std::string, std::string>, ServicePortTraffic> ports;
  for (const auto& [service, list] : services) {
    if (!list) continue;
    for (const auto& sp : *list) {
      const std::string port = sp.name.port_name.empty() ? std::to_string(sp.port) : sp.name.port_name;
      const std::string protocol(model::to_string(sp.name.protocol));
      auto& entry = ports[{service.ns, service.name, port, protocol}];
      entry.ns = service.ns;
      entry.service = service.name;
      entry.port = port;
      entry.protocol = protocol;
      add_port(sp, by_name, entry);
    }
  }
  TrafficSnapshot out;
  out.ports.reserve(ports.size());
  for (auto& [key, entry] : ports) {
    std::sort(entry.endpoints.begin(), entry.endpoints.end(),
              [](const auto& a, const auto& b) { return a.endpoint < b.endpoint; });
    out.ports.push_back(std::move(entry));
  }
  return out;
}

void NftablesTrafficCounters::set(const model::ObjectRef& service, Ports ports) {
  std::lock_guard lock(mutex_);
  if (ports) {
    services_[service] = std::move(ports);
  } else {
    services_.erase(service);
  }
}

void NftablesTrafficCounters::set_all(std::map<model::ObjectRef, Ports> services) {
  std::lock_guard lock(mutex_);
  services_ = std::move(services);
}

base::Result<TrafficSnapshot> NftablesTrafficCounters::read() {
  std::map<model::ObjectRef, Ports> services;
  {
    // Pointers to immutable vectors: the copy is cheap, the join runs unlocked.
    std::lock_guard lock(mutex_);
    services = services_;
  }
  try {
    return join_counters(services, read_kernel_());
  } catch (const std::exception& e) {
    return base::Error{std::string("reading the traffic counters: ") + e.what()};
  }
}

NftablesTrafficCounters::ReadKernel netlink_counter_reader() {
  return [] {
    dataplane::NetlinkSocket socket;
    return dataplane::read_counters(socket, dataplane::names::kTable);
  };
}

}  // namespace svcproxy::proxy
