// A hand-built Report with every part the HTML page draws: three expected
// endpoints and one violation (whose name tries to inject markup), an
// open-loop run with a stall, a minute of timeline, two endpoint changes.
#pragma once

#include <cmath>
#include <string>

#include "loadtest/report.h"

namespace svcproxy::loadtest::testing {

inline constexpr const char* kHostileName = "<img src=x onerror=alert(1)>\"'&:80";

inline Report sample_report() {
  Report r;
  r.target = "default/web:http";
  r.address = "10.96.0.10:80";
  r.mode = Mode::http;
  r.open_loop = true;
  r.rate = 2000;
  r.concurrency = 64;
  r.threads = 2;
  r.duration_s = 60;
  r.requests = 120000;
  r.answers = 119890;
  r.errors = {.refused = 40, .timeout = 60, .reset = 10, .other = 0, .udp_lost = 0};
  r.error_samples = {"connect: Connection refused <10.244.1.3:8080>"};
  r.latency = {.p50_us = 420, .p90_us = 900, .p99_us = 48000, .p999_us = 310000, .max_us = 505000};
  r.latency_uncorrected = {.p50_us = 410, .p90_us = 820, .p99_us = 2100, .p999_us = 9000, .max_us = 501000};
  for (int nines10 = 0; nines10 <= 50; ++nines10) {  // 0 .. 99.999%
    const double p = 100 * (1 - std::pow(10, -nines10 / 10.0));
    r.latency_curve.push_back({p, static_cast<uint64_t>(400 + 12 * std::pow(nines10, 2.6))});
  }
  r.latency_curve.push_back({100, 505000});
  const char* names[] = {"10.244.1.2:8080", "10.244.2.2:8080", "10.244.3.2:8080"};
  for (int i = 0; i < 3; ++i) {
    EndpointStats e;
    e.endpoint = names[i];
    e.count = 39900 + static_cast<uint64_t>(i) * 40;
    e.share = static_cast<double>(e.count) / r.answers;
    e.expected_share = 1.0 / 3;
    e.latency = {.p50_us = 400, .p90_us = 880, .p99_us = 47000, .p999_us = 300000, .max_us = 505000};
    e.first_at_us = 1200;
    e.last_at_us = 59990000;
    r.endpoints.push_back(e);
  }
  EndpointStats bad;
  bad.endpoint = kHostileName;
  bad.count = 170;
  bad.share = 170.0 / r.answers;
  bad.expected_share = 0;
  bad.expected = false;
  bad.first_at_us = 30000000;
  bad.last_at_us = 30400000;
  r.endpoints.push_back(bad);
  r.fairness = {.chi2_p = 0.52, .max_min_ratio = 1.002, .compared = 3, .basis = "expected"};
  r.violations.push_back({kHostileName, 170, "unready"});
  r.changes.push_back({.at_us = 30000000, .removed = {kHostileName}, .added = {}, .drain_us = 400000,
                       .first_answer_us = std::nullopt});
  r.changes.push_back({.at_us = 45000000, .removed = {}, .added = {"10.244.3.2:8080"}, .drain_us = std::nullopt,
                       .first_answer_us = 1800});
  for (int s = 0; s < 60; ++s) {
    const bool stall = s == 20;
    r.timeline.push_back({.at_us = s * 1000000LL, .requests_per_s = stall ? 1500.0 : 2000.0,
                          .errors = s == 30 ? 110u : 0u, .p99_us = stall ? 480000u : 2000u});
  }
  r.schedule_misses = 12;
  r.warnings = {"generator missed its schedule 12 times <check the CPU>"};
  return r;
}

}  // namespace svcproxy::loadtest::testing
