#include "proxy/service_counters_collector.h"

#include <prometheus/client_metric.h>
#include <prometheus/metric_type.h>

namespace svcproxy::proxy {
namespace {

prometheus::MetricFamily counter_family(const char* name, const char* help) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = prometheus::MetricType::Counter;
  return f;
}

void add_sample(prometheus::MetricFamily& family, std::vector<prometheus::ClientMetric::Label> labels,
                std::uint64_t value) {
  prometheus::ClientMetric m;
  m.label = std::move(labels);
  m.counter.value = static_cast<double>(value);
  family.metric.push_back(std::move(m));
}

}  // namespace

std::vector<prometheus::MetricFamily> counter_families(const TrafficSnapshot& snapshot) {
  auto packets = counter_family("svcproxy_service_packets_total",
                                "New connections (first packets) to the service port, whatever became of them");
  auto bytes = counter_family("svcproxy_service_bytes_total", "Bytes of the first packets counted in packets_total");
  auto rejected = counter_family("svcproxy_service_rejected_packets_total",
                                 "New connections refused because the service port has no endpoints");
  auto dropped = counter_family("svcproxy_service_dropped_packets_total",
                                "New connections dropped: Local traffic policy without a local endpoint, or "
                                "outside loadBalancerSourceRanges");
  auto endpoints = counter_family("svcproxy_endpoint_packets_total",
                                  "New connections DNATed to the endpoint (by any service that has it)");
  for (const auto& p : snapshot.ports) {
    std::vector<prometheus::ClientMetric::Label> labels{{"namespace", p.ns}, {"service", p.service}, {"port", p.port}};
    add_sample(packets, labels, p.accepted.packets + p.rejected.packets + p.dropped.packets);
    add_sample(bytes, labels, p.accepted.bytes + p.rejected.bytes + p.dropped.bytes);
    add_sample(rejected, labels, p.rejected.packets);
    add_sample(dropped, labels, p.dropped.packets);
    for (const auto& ep : p.endpoints) {
      auto with_endpoint = labels;
      with_endpoint.push_back({"endpoint", ep.endpoint});
      add_sample(endpoints, std::move(with_endpoint), ep.count.packets);
    }
  }
  return {std::move(packets), std::move(bytes), std::move(rejected), std::move(dropped), std::move(endpoints)};
}

void ServiceCountersCollector::set_source(std::shared_ptr<TrafficCounters> source) {
  std::lock_guard lock(mutex_);
  source_ = std::move(source);
}

std::vector<prometheus::MetricFamily> ServiceCountersCollector::Collect() const {
  std::shared_ptr<TrafficCounters> source;
  {
    std::lock_guard lock(mutex_);
    source = source_;
  }
  if (!source) return {};
  auto snapshot = source->read();
  if (!snapshot) return {};
  return counter_families(*snapshot);
}

}  // namespace svcproxy::proxy
