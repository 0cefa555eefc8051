// The per-service traffic counters on /metrics: a prometheus-cpp Collectable
// that reads the dataplane's TrafficCounters at scrape time (one netlink
// dump per scrape), so nothing is kept per service between scrapes.
//
//   svcproxy_service_packets_total{namespace,service,port}   new connections to the port
//   svcproxy_service_bytes_total{namespace,service,port}     their first packets' bytes
//   svcproxy_service_rejected_packets_total{...}             of those, refused: no endpoints
//   svcproxy_service_dropped_packets_total{...}              of those, dropped (Local policy, source ranges)
//   svcproxy_endpoint_packets_total{namespace,service,port,endpoint}   DNATed to the endpoint
#pragma once

#include <memory>
#include <mutex>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include "proxy/traffic_counters.h"

namespace svcproxy::proxy {

// The families of one snapshot (pure: the unit tests' entry point).
std::vector<prometheus::MetricFamily> counter_families(const TrafficSnapshot& snapshot);

class ServiceCountersCollector final : public prometheus::Collectable {
 public:
  // The dataplane's counters, once it exists (null: none, e.g. userspace
  // mode or --no-counters: no families at all).
  void set_source(std::shared_ptr<TrafficCounters> source);
  // A failed read exports nothing (the scrape still succeeds).
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<TrafficCounters> source_;
};

}  // namespace svcproxy::proxy
