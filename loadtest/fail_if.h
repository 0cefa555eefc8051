// --fail-if: conditions on the report that make the exit status 1, for CI.
//   'p99>50ms,errors>0,violations>0,fairness<0.01'
// Keys: p50 p90 p99 p999 max (corrected latency; units us, ms, s; a bare
// number is microseconds), rps, requests, errors, refused, timeout, reset,
// other, udp_lost, violations (violating answers), fairness (chi-square p),
// ratio (max/min). Operators: > < >= <=.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "loadtest/report.h"

namespace svcproxy::loadtest {

struct FailCondition {
  std::string key;
  std::string op;  // ">", "<", ">=", "<="
  double value = 0;
  std::string text;  // as written
};

struct FailIfParse {
  std::vector<FailCondition> conditions;
  std::string error;  // empty: parsed
};

FailIfParse parse_fail_if(std::string_view text);

// The conditions that hold, each as "p99>50ms (p99 was 73.2ms)".
std::vector<std::string> evaluate_fail_if(const std::vector<FailCondition>& conditions, const Report& report);

}  // namespace svcproxy::loadtest
