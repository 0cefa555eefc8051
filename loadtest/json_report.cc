#include "loadtest/json_report.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "base/json.h"

namespace svcproxy::loadtest {
namespace {

using base::json_string;

// JSON has no infinity or NaN: those are written as null.
std::string number(double v) {
  if (!std::isfinite(v)) return "null";
  char text[32];
  std::snprintf(text, sizeof text, "%.6g", v);
  return text;
}

std::string percentiles(const Percentiles& p) {
  return "{\"p50\":" + std::to_string(p.p50_us) + ",\"p90\":" + std::to_string(p.p90_us) +
         ",\"p99\":" + std::to_string(p.p99_us) + ",\"p999\":" + std::to_string(p.p999_us) +
         ",\"max\":" + std::to_string(p.max_us) + "}";
}

template <typename T, typename F>
std::string array(const std::vector<T>& items, F each) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + each(items[i]);
  return out + "]";
}

std::string optional_int(const std::optional<int64_t>& v) { return v ? std::to_string(*v) : "null"; }

std::string endpoint(const EndpointStats& e) {
  return json_string(e.endpoint) + ":{\"count\":" + std::to_string(e.count) + ",\"share\":" + number(e.share) +
         ",\"p99_us\":" + std::to_string(e.latency.p99_us) + ",\"latency_us\":" + percentiles(e.latency) +
         ",\"expected\":" + (e.expected ? "true" : "false") +
         ",\"expected_share\":" + (e.expected_share ? number(*e.expected_share) : "null") +
         ",\"first_at_us\":" + optional_int(e.first_at_us) + ",\"last_at_us\":" + optional_int(e.last_at_us) + "}";
}

std::string change(const EndpointChange& c) {
  auto names = [](const std::string& s) { return json_string(s); };
  return "{\"at_us\":" + std::to_string(c.at_us) + ",\"removed\":" + array(c.removed, names) +
         ",\"added\":" + array(c.added, names) + ",\"drain_us\":" + optional_int(c.drain_us) +
         ",\"first_answer_us\":" + optional_int(c.first_answer_us) + "}";
}

}  // namespace

std::string render_json(const Report& r) {
  std::ostringstream out;
  auto text = [](const std::string& s) { return json_string(s); };
  out << "{\"target\":" << json_string(r.target) << ",\"address\":" << json_string(r.address)
      << ",\"mode\":" << json_string(to_string(r.mode)) << ",\"open_loop\":" << (r.open_loop ? "true" : "false")
      << ",\"rate\":" << (r.open_loop ? number(r.rate) : "null") << ",\"concurrency\":" << r.concurrency
      << ",\"threads\":" << r.threads << ",\"duration_s\":" << number(r.duration_s) << ",\"requests\":" << r.requests
      << ",\"answers\":" << r.answers
      << ",\"rps\":" << number(r.duration_s > 0 ? static_cast<double>(r.requests) / r.duration_s : 0)
      << ",\"errors\":{\"refused\":" << r.errors.refused << ",\"timeout\":" << r.errors.timeout
      << ",\"reset\":" << r.errors.reset << ",\"other\":" << r.errors.other << ",\"udp_lost\":" << r.errors.udp_lost
      << "},\"error_samples\":" << array(r.error_samples, text) << ",\"latency_us\":" << percentiles(r.latency)
      << ",\"latency_uncorrected_us\":" << percentiles(r.latency_uncorrected) << ",\"latency_curve\":"
      << array(r.latency_curve,
               [](const CurvePoint& p) {
                 return "{\"percentile\":" + number(p.percentile) + ",\"latency_us\":" + std::to_string(p.latency_us) + "}";
               })
      << ",\"endpoints\":{";
  for (size_t i = 0; i < r.endpoints.size(); ++i) out << (i ? "," : "") << endpoint(r.endpoints[i]);
  out << "},\"fairness\":{\"chi2_p\":" << number(r.fairness.chi2_p)
      << ",\"max_min_ratio\":" << number(r.fairness.max_min_ratio) << ",\"compared\":" << r.fairness.compared
      << ",\"basis\":" << json_string(r.fairness.basis) << "},\"violations\":"
      << array(r.violations,
               [](const Violation& v) {
                 return "{\"endpoint\":" + json_string(v.endpoint) + ",\"count\":" + std::to_string(v.count) +
                        ",\"reason\":" + json_string(v.reason) + "}";
               })
      << ",\"changes\":" << array(r.changes, change) << ",\"timeline\":"
      << array(r.timeline,
               [](const TimelinePoint& t) {
                 return "{\"at_us\":" + std::to_string(t.at_us) + ",\"requests_per_s\":" + number(t.requests_per_s) +
                        ",\"errors\":" + std::to_string(t.errors) + ",\"p99_us\":" + std::to_string(t.p99_us) + "}";
               })
      << ",\"schedule_misses\":" << r.schedule_misses << ",\"warnings\":" << array(r.warnings, text) << "}";
  return out.str();
}

}  // namespace svcproxy::loadtest
