#include "loadtest/fail_if.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <string>

#include "loadtest/format.h"

namespace svcproxy::loadtest {
namespace {

constexpr std::array<std::string_view, 5> kLatencyKeys = {"p50", "p90", "p99", "p999", "max"};
constexpr std::array<std::string_view, 11> kOtherKeys = {"rps",     "requests", "errors",     "refused",  "timeout", "reset",
                                                         "other",   "udp_lost", "violations", "fairness", "ratio"};

bool is_latency(std::string_view key) {
  return std::find(kLatencyKeys.begin(), kLatencyKeys.end(), key) != kLatencyKeys.end();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
  return s;
}

std::string parse_one(std::string_view item, FailCondition& out) {
  const size_t op_at = item.find_first_of("<>");
  if (op_at == std::string_view::npos) return "\"" + std::string(item) + "\": want KEY>VALUE or KEY<VALUE";
  out.text = std::string(item);
  out.key = std::string(trim(item.substr(0, op_at)));
  const bool equal = op_at + 1 < item.size() && item[op_at + 1] == '=';
  out.op = std::string(1, item[op_at]) + (equal ? "=" : "");
  std::string value(trim(item.substr(op_at + (equal ? 2 : 1))));
  const bool known = is_latency(out.key) || std::find(kOtherKeys.begin(), kOtherKeys.end(), out.key) != kOtherKeys.end();
  if (!known) return "unknown key \"" + out.key + "\" (want p50, p90, p99, p999, max, rps, requests, errors, refused, "
                     "timeout, reset, other, udp_lost, violations, fairness, ratio)";
  size_t used = 0;
  try {
    out.value = std::stod(value, &used);
  } catch (const std::exception&) {
    return "\"" + out.text + "\": invalid number";
  }
  const std::string unit = value.substr(used);
  if (is_latency(out.key)) {
    if (unit == "ms") out.value *= 1e3;
    else if (unit == "s") out.value *= 1e6;
    else if (!unit.empty() && unit != "us") return "\"" + out.text + "\": unit \"" + unit + "\" (want us, ms or s)";
  } else if (!unit.empty()) {
    return "\"" + out.text + "\": \"" + out.key + "\" takes a plain number";
  }
  if (!std::isfinite(out.value)) return "\"" + out.text + "\": invalid number";
  return {};
}

double metric(const std::string& key, const Report& r) {
  if (key == "p50") return static_cast<double>(r.latency.p50_us);
  if (key == "p90") return static_cast<double>(r.latency.p90_us);
  if (key == "p99") return static_cast<double>(r.latency.p99_us);
  if (key == "p999") return static_cast<double>(r.latency.p999_us);
  if (key == "max") return static_cast<double>(r.latency.max_us);
  if (key == "rps") return r.duration_s > 0 ? static_cast<double>(r.requests) / r.duration_s : 0;
  if (key == "requests") return static_cast<double>(r.requests);
  if (key == "errors") return static_cast<double>(r.errors.total());
  if (key == "refused") return static_cast<double>(r.errors.refused);
  if (key == "timeout") return static_cast<double>(r.errors.timeout);
  if (key == "reset") return static_cast<double>(r.errors.reset);
  if (key == "other") return static_cast<double>(r.errors.other);
  if (key == "udp_lost") return static_cast<double>(r.errors.udp_lost);
  if (key == "violations") {
    uint64_t n = 0;
    for (const auto& v : r.violations) n += v.count;
    return static_cast<double>(n);
  }
  if (key == "fairness") return r.fairness.chi2_p;
  return r.fairness.max_min_ratio;  // "ratio"
}

std::string show(const std::string& key, double value) {
  if (is_latency(key)) return format_latency(static_cast<uint64_t>(value));
  char text[32];
  std::snprintf(text, sizeof text, "%.4g", value);
  return text;
}

}  // namespace

FailIfParse parse_fail_if(std::string_view text) {
  FailIfParse result;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = trim(text.substr(pos, comma - pos));
    pos = comma + 1;
    if (item.empty()) continue;
    FailCondition condition;
    result.error = parse_one(item, condition);
    if (!result.error.empty()) {
      result.conditions.clear();
      return result;
    }
    result.conditions.push_back(std::move(condition));
  }
  if (result.conditions.empty()) result.error = "no condition given";
  return result;
}

std::vector<std::string> evaluate_fail_if(const std::vector<FailCondition>& conditions, const Report& report) {
  std::vector<std::string> held;
  for (const auto& c : conditions) {
    const double v = metric(c.key, report);
    const bool holds = c.op == ">" ? v > c.value : c.op == "<" ? v < c.value : c.op == ">=" ? v >= c.value : v <= c.value;
    if (holds) held.push_back(c.text + " (" + c.key + " was " + show(c.key, v) + ")");
  }
  return held;
}

}  // namespace svcproxy::loadtest
