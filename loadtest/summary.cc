#include "loadtest/summary.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

#include "loadtest/format.h"

namespace svcproxy::loadtest {
namespace {

constexpr int kBarWidth = 30;

std::string percent(double fraction) {
  char text[16];
  std::snprintf(text, sizeof text, "%5.1f%%", fraction * 100);
  return text;
}

std::string latency_row(const char* name, const Percentiles& p) {
  std::ostringstream out;
  out << "  " << name << "p50 " << format_latency(p.p50_us) << "  p90 " << format_latency(p.p90_us) << "  p99 "
      << format_latency(p.p99_us) << "  p99.9 " << format_latency(p.p999_us) << "  max " << format_latency(p.max_us)
      << "\n";
  return out.str();
}

void endpoints_section(std::ostringstream& out, const Report& r) {
  if (r.endpoints.empty()) return;
  size_t width = 8;
  for (const auto& e : r.endpoints) width = std::max(width, e.endpoint.size());
  out << "\nEndpoints (" << r.endpoints.size() << "):\n";
  for (const auto& e : r.endpoints) {
    const int bar = static_cast<int>(std::lround(e.share * kBarWidth));
    char line[512];
    std::snprintf(line, sizeof line, "  %-*s %-*s %9llu %s  p99 %s", static_cast<int>(width), e.endpoint.c_str(), kBarWidth,
                  std::string(static_cast<size_t>(bar), '#').c_str(), static_cast<unsigned long long>(e.count),
                  percent(e.share).c_str(), format_latency(e.latency.p99_us).c_str());
    out << line;
    if (e.expected_share) out << "  (expected " << percent(*e.expected_share) << ")";
    if (!e.expected) out << "  VIOLATION";
    out << "\n";
  }
}

std::string ratio_text(double ratio) {
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", ratio);
  return text;
}

void fairness_section(std::ostringstream& out, const Report& r) {
  if (r.fairness.compared < 2) return;
  char line[256];
  std::snprintf(line, sizeof line, "\nFairness over %zu endpoints (%s): chi-square p = %.4g, max/min = %s\n",
                r.fairness.compared, r.fairness.basis.c_str(), r.fairness.chi2_p,
                std::isinf(r.fairness.max_min_ratio) ? "inf (one got nothing)"
                                                     : ratio_text(r.fairness.max_min_ratio).c_str());
  out << line;
  out << (r.fairness.chi2_p < 0.01 ? "  uneven: a spread this far from even happens by chance less than 1% of the time\n"
                                   : "  consistent with an even spread\n");
}

void changes_section(std::ostringstream& out, const Report& r) {
  if (r.changes.empty()) return;
  out << "\nEndpoint changes:\n";
  for (const auto& c : r.changes) {
    out << "  at " << format_rate(static_cast<double>(c.at_us) / 1e6) << "s";
    if (!c.removed.empty()) {
      out << "  removed";
      for (const auto& e : c.removed) out << " " << e;
      if (c.drain_us) {
        out << ": last answer " << (*c.drain_us < 0 ? "-" : "+") << format_latency(static_cast<uint64_t>(std::llabs(*c.drain_us)))
            << (*c.drain_us < 0 ? " before" : " after");
      } else {
        out << ": no answer from it";
      }
    }
    if (!c.added.empty()) {
      out << "  added";
      for (const auto& e : c.added) out << " " << e;
      out << (c.first_answer_us ? ": first answer after " + format_latency(static_cast<uint64_t>(*c.first_answer_us))
                                : std::string(": no answer yet"));
    }
    out << "\n";
  }
}

}  // namespace

std::string render_summary(const Report& r, const std::vector<std::string>& failed) {
  std::ostringstream out;
  out << to_string(r.mode) << " load on " << r.address;
  if (r.target != r.address && !r.target.empty()) out << " (" << r.target << ")";
  out << ", " << r.concurrency << " in flight over " << r.threads << (r.threads == 1 ? " thread" : " threads") << ", ";
  out << (r.open_loop ? "open loop at " + format_rate(r.rate) + "/s" : std::string("closed loop")) << "\n";
  const double rps = r.duration_s > 0 ? static_cast<double>(r.requests) / r.duration_s : 0;
  out << "  " << r.requests << " requests in " << format_rate(r.duration_s) << "s, " << format_rate(rps) << "/s; "
      << r.answers << " answered, " << r.errors.total() << " errors\n";
  if (r.errors.total()) {
    out << "  errors: refused " << r.errors.refused << ", timeout " << r.errors.timeout << ", reset " << r.errors.reset
        << ", other " << r.errors.other;
    if (r.mode == Mode::udp) out << " (udp lost " << r.errors.udp_lost << ")";
    out << "\n";
    for (const auto& s : r.error_samples) out << "    e.g. " << s << "\n";
  }
  if (r.answers == 0) out << "\nNo answers.\n";
  else out << "\nLatency" << (r.open_loop ? " (corrected: from each request's planned send time)" : "") << ":\n";
  if (r.answers) out << latency_row(r.open_loop ? "corrected    " : "", r.latency);
  if (r.open_loop && r.answers) out << latency_row("uncorrected  ", r.latency_uncorrected);
  endpoints_section(out, r);
  fairness_section(out, r);
  if (!r.violations.empty()) {
    out << "\nViolations (answers from endpoints that must not serve this client):\n";
    for (const auto& v : r.violations)
      out << "  " << v.endpoint << ": " << v.count << " answers (" << (v.reason.empty() ? "?" : v.reason) << ")\n";
  }
  changes_section(out, r);
  if (!r.warnings.empty()) {
    out << "\n";
    for (const auto& w : r.warnings) out << "warning: " << w << "\n";
  }
  if (!failed.empty()) {
    out << "\nFAILED:";
    for (const auto& f : failed) out << " " << f << ";";
    out.seekp(-1, std::ios_base::cur);
    out << "\n";
  }
  return out.str();
}

}  // namespace svcproxy::loadtest
