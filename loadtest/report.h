// What a load test found: the value every output (summary, --json, --html,
// --fail-if) is rendered from. Plain data, filled by the engine at the end of
// a run; renderers never see the engine.
//
// Times are microseconds. "at_us" fields count from the run's start.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace svcproxy::loadtest {

enum class Mode { connect, request, http, udp };
std::string_view to_string(Mode mode);
std::optional<Mode> parse_mode(std::string_view text);

struct Percentiles {
  uint64_t p50_us = 0;
  uint64_t p90_us = 0;
  uint64_t p99_us = 0;
  uint64_t p999_us = 0;
  uint64_t max_us = 0;
};

// Failed attempts by cause. refused: RST to SYN or ICMP port unreachable (a
// reject rule, no listener); timeout: no answer in time (a drop, a dead
// path); reset: the connection was reset after it was established; other:
// anything else (the text of the first few is in Report::error_samples).
struct ErrorCounts {
  uint64_t refused = 0;
  uint64_t timeout = 0;
  uint64_t reset = 0;
  uint64_t other = 0;
  uint64_t udp_lost = 0;  // udp mode: datagrams sent and never answered (also counted in timeout)
  uint64_t total() const { return refused + timeout + reset + other; }
};

struct EndpointStats {
  std::string endpoint;              // "IP:PORT" or "[v6]:PORT"; "?" when unattributed
  uint64_t count = 0;                // answered requests attributed to it
  double share = 0;                  // count / all attributed answers
  std::optional<double> expected_share;  // set when the expected set is known
  bool expected = true;              // false: a violation (outside the expected set)
  Percentiles latency;               // corrected latency of its requests
  std::optional<int64_t> first_at_us;  // first and last answer it gave
  std::optional<int64_t> last_at_us;
};

struct Fairness {
  double chi2_p = 1.0;          // p-value of the counts against an even spread
  double max_min_ratio = 1.0;   // busiest / least busy endpoint of the set compared
  size_t compared = 0;          // how many endpoints the test was over
  std::string basis;            // "answered" or "expected"
};

// An answer from an endpoint outside the set the model says must serve this
// client (unready, other zone, remote under a Local policy, not an endpoint).
struct Violation {
  std::string endpoint;
  uint64_t count = 0;
  std::string reason;  // why it is outside the set, when known ("unready", "not an endpoint", ...)
};

// One endpoint change seen with --watch, and how the traffic followed it.
struct EndpointChange {
  int64_t at_us = 0;                  // when the source reported it
  std::vector<std::string> removed;   // removed or turned unready ("IP:PORT")
  std::vector<std::string> added;     // added or turned ready
  // Change -> the last answer from any of `removed` (negative: it stopped
  // before the change was seen); unset when none answered after it... or never.
  std::optional<int64_t> drain_us;
  // Change -> the first answer from any of `added`; unset if none answered.
  std::optional<int64_t> first_answer_us;
};

// One interval of the run (the engine picks the width, ~250 ms - 1 s).
struct TimelinePoint {
  int64_t at_us = 0;  // start of the interval
  double requests_per_s = 0;
  uint64_t errors = 0;
  uint64_t p99_us = 0;
};

struct CurvePoint {
  double percentile = 0;  // 0..100
  uint64_t latency_us = 0;
};

struct Report {
  // What was run.
  std::string target;            // as given (service name or address)
  std::string address;           // the IP:PORT actually loaded
  Mode mode = Mode::request;
  bool open_loop = false;        // --rate given
  double rate = 0;               // requests/s asked for (open loop)
  unsigned concurrency = 0;
  unsigned threads = 0;
  double duration_s = 0;         // measured wall time of the run

  // What happened.
  uint64_t requests = 0;         // attempts finished (answers + errors)
  uint64_t answers = 0;
  ErrorCounts errors;
  std::vector<std::string> error_samples;
  Percentiles latency;               // from each request's intended send time
  Percentiles latency_uncorrected;   // from its actual send time
  std::vector<CurvePoint> latency_curve;  // corrected, for the percentile plot
  std::vector<EndpointStats> endpoints;   // busiest first
  Fairness fairness;
  std::vector<Violation> violations;
  std::vector<EndpointChange> changes;
  std::vector<TimelinePoint> timeline;
  uint64_t schedule_misses = 0;  // open loop: sends later than planned (the generator was the bottleneck)
  std::vector<std::string> warnings;
};

}  // namespace svcproxy::loadtest
