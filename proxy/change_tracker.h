// What changed since the last sync, as the store's change stream reports it
// (on the watch thread for the API source): which services are dirty (a
// Service change: that service; an EndpointSlice change: the service it
// belongs to, old and new if its label changed), whether the node's
// configuration must be recomputed (Node, ServiceCIDR), and when the oldest
// change arrived. Changes coalesce until the daemon takes them: a burst of
// 10k changes of one service is one dirty service, one sync. Wakes the
// daemon's loop through an eventfd. kube-proxy's endpointschangetracker
// plays this part.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "model/objects.h"
#include "watch/store.h"

namespace svcproxy::proxy {

// Changes not yet synced, merged.
struct ChangeBatch {
  std::set<model::ObjectRef> services;  // dirty services
  bool node_changed = false;            // Node or ServiceCIDR objects changed
  // How many changes arrived, by resource (for the metrics).
  size_t service_changes = 0;
  size_t endpoint_slice_changes = 0;
  size_t other_changes = 0;
  // When the oldest change arrived (the daemon-side latency's start).
  std::optional<std::chrono::steady_clock::time_point> oldest;
  // EndpointSlice trigger times (kube-proxy's network programming latency),
  // with the slice's IP family (FQDN slices are not programmed: none).
  struct TriggerTime {
    model::IPFamily family = model::IPFamily::V4;
    std::string time;
  };
  std::vector<TriggerTime> trigger_times;

  bool any() const { return service_changes + endpoint_slice_changes + other_changes > 0; }
  // Adds `later`'s changes to these.
  void merge(ChangeBatch later);
};

class ChangeTracker {
 public:
  using Clock = std::chrono::steady_clock;
  ChangeTracker();
  ChangeTracker(const ChangeTracker&) = delete;
  ChangeTracker& operator=(const ChangeTracker&) = delete;

  // Any thread. `now` is the arrival time (a parameter for tests).
  void on_change(const watch::Change& change, Clock::time_point now = Clock::now());
  // Wakes the loop without a change (a relist that changed nothing: the
  // loop may be waiting for the source to be synced).
  void wake();
  // Readable when changes (or a wake) arrived.
  int fd() const { return wake_fd_.get(); }
  // The changes that arrived since the last call (drains the eventfd).
  ChangeBatch take();

 private:
  base::UniqueFd wake_fd_;
  std::mutex mutex_;
  ChangeBatch arrived_;
};

}  // namespace svcproxy::proxy
