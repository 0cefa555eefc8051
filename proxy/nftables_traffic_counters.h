// The nftables backend's TrafficCounters: the service ports the SyncLoop
// last applied (published after every sync, O(changes)) joined, at read
// time, with one netlink dump of svcproxy's counter objects. What each
// counter counts is laid out in README.md ("Traffic counters"): new
// connections (their first packet), in the nat hooks.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "dataplane/netlink_decode.h"
#include "model/objects.h"
#include "model/service_ports.h"
#include "proxy/traffic_counters.h"

namespace svcproxy::proxy {

class NftablesTrafficCounters final : public TrafficCounters {
 public:
  using Ports = std::shared_ptr<const std::vector<model::ServicePortState>>;
  // Every counter object of svcproxy's tables (the real one:
  // dataplane::read_counters on a socket of its own; tests: a fake).
  using ReadKernel = std::function<std::vector<dataplane::CounterValue>()>;

  explicit NftablesTrafficCounters(ReadKernel read_kernel) : read_kernel_(std::move(read_kernel)) {}

  // The event thread, after a sync: a service's ports as applied (null:
  // the service is gone), or all of them at once.
  void set(const model::ObjectRef& service, Ports ports);
  void set_all(std::map<model::ObjectRef, Ports> services);

  // Any thread (a scrape, the /debug page).
  base::Result<TrafficSnapshot> read() override;

 private:
  ReadKernel read_kernel_;
  std::mutex mutex_;
  std::map<model::ObjectRef, Ports> services_;
};

// The real ReadKernel: a netlink socket per read, one dump.
NftablesTrafficCounters::ReadKernel netlink_counter_reader();

// The snapshot of `services` given their counters' values: accepted =
// service − rejected − dropped; both families of a dual-stack port in one
// entry. Pure; the unit tests' entry point.
TrafficSnapshot join_counters(const std::map<model::ObjectRef, NftablesTrafficCounters::Ports>& services,
                              const std::vector<dataplane::CounterValue>& values);

}  // namespace svcproxy::proxy
