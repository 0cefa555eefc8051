#include "loadtest/html_charts.h"

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "loadtest/html_report.h"
#include "loadtest/svg_plot.h"

namespace svcproxy::loadtest::charts {
namespace {

using svg::fixed;
using XY = std::vector<std::pair<double, double>>;

constexpr size_t kMaxBars = 40;       // endpoint rows drawn; the table under the chart lists all
constexpr size_t kMaxNameBytes = 34;  // endpoint label width in the bar chart
constexpr int kMaxNines = 7;          // 99.99999%: the finest percentile the curve's x axis goes to

std::string svg_open(std::string_view id, int width, int height, std::string_view label) {
  const std::string w = std::to_string(width), h = std::to_string(height);
  return "<svg id=\"" + std::string(id) + "\" xmlns=\"http://www.w3.org/2000/svg\" width=\"" + w + "\" height=\"" +
         h + "\" viewBox=\"0 0 " + w + " " + h + "\" role=\"img\" aria-label=\"" + html_escape(label) + "\">\n";
}

std::string no_data(const svg::Frame& f, std::string_view why) {
  return svg::rect(f.left, f.top, f.width, f.height, "grid") + "\n" +
         svg::text(f.left + f.width / 2, f.top + f.height / 2, html_escape(why), "nodata", "middle") + "\n";
}

// A <title> child: the browser shows it as a tooltip over its parent.
std::string tip(const std::string& escaped) { return "<title>" + escaped + "</title>"; }

std::string circle(double x, double y, std::string_view cls, const std::string& escaped_tip) {
  return "<circle cx=\"" + fixed(x, 1) + "\" cy=\"" + fixed(y, 1) + "\" r=\"4\" class=\"" + std::string(cls) +
         "\">" + tip(escaped_tip) + "</circle>\n";
}

// Horizontal grid lines with latency/value labels on the left of `f`.
std::string y_grid(const svg::Frame& f, const svg::Ticks& ticks, const svg::Scale& y,
                   std::string (*label)(double)) {
  std::string out;
  for (double v : ticks.values()) {
    out += svg::line(f.left, y(v), f.right(), y(v), "grid") +
           svg::text(f.left - 6, y(v) + 4, label(v), "label", "end") + "\n";
  }
  return out;
}

std::string latency_label(double us) { return svg::latency(us); }

// --- latency curve ------------------------------------------------------------

// HDR plots' x position: 0 at p0, 1 at p90, 2 at p99, 3 at p99.9, ...
double nines(double percentile) {
  const double rest = 1 - std::clamp(percentile, 0.0, 100.0) / 100;
  return rest <= 0 ? kMaxNines : std::min(-std::log10(rest), double{kMaxNines});
}

std::string nines_label(int k) {
  if (k == 0) return "0%";
  return fixed(100 - std::pow(10, 2 - k), std::max(0, k - 2)) + "%";
}

}  // namespace

std::string latency_curve(const Report& r) {
  const svg::Frame f{75, 15, 620, 250};
  std::string out = svg_open("latency-curve", 720, 310, "latency by percentile");
  if (r.latency_curve.empty()) return out + no_data(f, "no answers") + "</svg>\n";

  double x_top = 3;  // at least up to p99.9
  double y_max = static_cast<double>(r.latency_uncorrected.p999_us);
  for (const auto& p : r.latency_curve) {
    if (p.percentile < 100) x_top = std::max(x_top, std::ceil(nines(p.percentile) - 1e-9));
    y_max = std::max(y_max, static_cast<double>(p.latency_us));
  }
  const svg::Ticks y_ticks = svg::round_ticks(y_max, 5);
  const svg::Scale x{0, x_top, f.left, f.right()};
  const svg::Scale y{0, y_ticks.top, f.bottom(), f.top};

  out += y_grid(f, y_ticks, y, latency_label);
  for (int k = 0; k <= static_cast<int>(x_top); ++k) {
    out += svg::line(x(k), f.top, x(k), f.bottom(), "grid") +
           svg::text(x(k), f.bottom() + 16, nines_label(k), "label", "middle") + "\n";
  }
  out += svg::text(f.left + f.width / 2, f.bottom() + 34, "percentile", "label", "middle") + "\n";

  XY curve;
  for (const auto& p : r.latency_curve) curve.emplace_back(x(nines(p.percentile)), y(p.latency_us));
  out += "<polyline class=\"curve\" points=\"" + svg::points(curve) + "\"/>\n";

  const std::pair<const char*, double> marks[] = {{"p50", 50}, {"p90", 90}, {"p99", 99}, {"p99.9", 99.9}};
  const uint64_t corrected[] = {r.latency.p50_us, r.latency.p90_us, r.latency.p99_us, r.latency.p999_us};
  const uint64_t uncorrected[] = {r.latency_uncorrected.p50_us, r.latency_uncorrected.p90_us,
                                  r.latency_uncorrected.p99_us, r.latency_uncorrected.p999_us};
  for (size_t i = 0; i < 4; ++i) {
    const double px = x(nines(marks[i].second));
    const std::string name = marks[i].first;
    out += circle(px, y(corrected[i]), "corrected", name + " corrected: " + svg::latency(corrected[i]));
    out += circle(px, y(uncorrected[i]), "uncorrected", name + " uncorrected: " + svg::latency(uncorrected[i]));
  }
  out += svg::line(f.left + 12, f.top + 12, f.left + 36, f.top + 12, "curve") +
         svg::text(f.left + 42, f.top + 16, "corrected (from the intended send time)", "label") + "\n";
  out += circle(f.left + 24, f.top + 30, "uncorrected", "uncorrected") +
         svg::text(f.left + 42, f.top + 34, "uncorrected (from the actual send)", "label") + "\n";
  return out + "</svg>\n";
}

std::string endpoint_bars(const Report& r) {
  const size_t rows = std::min(r.endpoints.size(), kMaxBars);
  const bool more = r.endpoints.size() > rows;
  const int height = 50 + static_cast<int>(std::max<size_t>(rows, 3)) * 24 + (more ? 20 : 0);
  const svg::Frame f{240, 25, 330, static_cast<double>(std::max<size_t>(rows, 3) * 24)};
  std::string out = svg_open("endpoint-bars", 720, height, "share of answers by endpoint, against the expected");
  if (rows == 0) return out + no_data(f, "no endpoint answered") + "</svg>\n";

  double top = 0;
  for (const auto& e : r.endpoints) top = std::max({top, e.share, e.expected_share.value_or(0)});
  const svg::Ticks ticks = svg::round_ticks(top, 4);
  const svg::Scale x{0, ticks.top, f.left, f.right()};
  for (double v : ticks.values()) {
    out += svg::line(x(v), f.top, x(v), f.bottom(), "grid") +
           svg::text(x(v), f.top - 8, svg::percent(v), "label", "middle") + "\n";
  }
  for (size_t i = 0; i < rows; ++i) {
    const auto& e = r.endpoints[i];
    const double top_y = f.top + static_cast<double>(i) * 24 + 4;
    const std::string name = html_escape(e.endpoint);
    std::string what = name + ": " + svg::count(e.count) + " answers, " + svg::percent(e.share);
    if (e.expected_share) what += ", expected " + svg::percent(*e.expected_share);
    if (!e.expected) what += ", VIOLATION: must not serve this client";
    out += "<g class=\"endpoint\">" + tip(what);
    out += svg::text(f.left - 8, top_y + 12, html_escape(svg::truncate(e.endpoint, kMaxNameBytes)),
                     e.expected ? "label" : "violation", "end");
    out += svg::rect(f.left, top_y, x(e.share) - f.left, 16, e.expected ? "bar" : "bar violation");
    if (e.expected_share) {
      out += svg::line(x(*e.expected_share), top_y - 3, x(*e.expected_share), top_y + 19, "expected");
    }
    out += svg::text(f.right() + 8, top_y + 12,
                     svg::count(e.count) + " · " + svg::percent(e.share) + (e.expected ? "" : " ✗ violation"),
                     e.expected ? "label" : "violation");
    out += "</g>\n";
  }
  const double legend_y = f.bottom() + 18;
  out += svg::rect(f.left, legend_y - 9, 12, 10, "bar") + svg::text(f.left + 16, legend_y, "actual share", "label");
  out += svg::line(f.left + 110, legend_y - 11, f.left + 110, legend_y + 2, "expected") +
         svg::text(f.left + 116, legend_y, "expected share", "label");
  out += svg::rect(f.left + 220, legend_y - 9, 12, 10, "bar violation") +
         svg::text(f.left + 236, legend_y, "violation", "label") + "\n";
  if (more) {
    out += svg::text(f.left, legend_y + 18,
                     "… and " + std::to_string(r.endpoints.size() - rows) + " more endpoints (see the table)",
                     "label") + "\n";
  }
  return out + "</svg>\n";
}

namespace {

struct Panel {
  const char* title;
  svg::Frame frame;
  svg::Ticks ticks;
  svg::Scale y;
};

// `counted`: the values are whole numbers (errors), so no tick between them.
Panel panel(const char* title, double top, double max, bool counted = false) {
  const svg::Frame f{75, top, 620, 90};
  svg::Ticks ticks = svg::round_ticks(counted ? std::max(max, 1.0) : max, 3);
  if (counted && ticks.step < 1) ticks = {1, std::ceil(ticks.top)};
  return {title, f, ticks, svg::Scale{0, ticks.top, f.bottom(), f.top}};
}

std::string count_label(double v) { return svg::count(static_cast<uint64_t>(std::llround(std::max(v, 0.0)))); }

std::string panel_frame(const Panel& p, std::string (*label)(double)) {
  return svg::text(p.frame.left, p.frame.top - 6, p.title, "title") + "\n" + y_grid(p.frame, p.ticks, p.y, label);
}

std::string change_marks(const Report& r, const svg::Scale& x, double top, double bottom) {
  std::string out;
  for (size_t i = 0; i < r.changes.size(); ++i) {
    const auto& c = r.changes[i];
    const double px = x(static_cast<double>(c.at_us) / 1e6);
    std::string what = "change " + std::to_string(i + 1) + " at " + fixed(static_cast<double>(c.at_us) / 1e6, 2) + " s";
    for (const auto& e : c.removed) what += ", −" + html_escape(e);
    for (const auto& e : c.added) what += ", +" + html_escape(e);
    out += "<g class=\"change\">" + tip(what) + svg::line(px, top, px, bottom, "change") +
           svg::text(px + 3, top + 10, std::to_string(i + 1), "change") + "</g>\n";
  }
  return out;
}

}  // namespace

std::string timeline(const Report& r) {
  const auto& t = r.timeline;
  std::string out = svg_open("timeline", 720, 420, "requests/s, errors and p99 over the run");
  if (t.empty()) return out + no_data({75, 20, 620, 350}, "no timeline") + "</svg>\n";

  const double step_s = t.size() >= 2 ? static_cast<double>(t[1].at_us - t[0].at_us) / 1e6 : std::max(r.duration_s, 1.0);
  const double end_s = std::max(r.duration_s, static_cast<double>(t.back().at_us) / 1e6 + step_s);
  double max_rps = 0, max_errors = 0, max_p99 = 0;
  for (const auto& p : t) {
    max_rps = std::max(max_rps, p.requests_per_s);
    max_errors = std::max(max_errors, static_cast<double>(p.errors));
    max_p99 = std::max(max_p99, static_cast<double>(p.p99_us));
  }
  const Panel rps = panel("requests/s", 20, max_rps), errors = panel("errors", 150, max_errors, true),
              p99 = panel("p99", 280, max_p99);
  const svg::Ticks x_ticks = svg::round_ticks(end_s, 8);
  const svg::Scale x{0, x_ticks.top, rps.frame.left, rps.frame.right()};

  out += panel_frame(rps, count_label) + panel_frame(errors, count_label) + panel_frame(p99, latency_label);
  for (double v : x_ticks.values()) {
    out += svg::line(x(v), rps.frame.top, x(v), p99.frame.bottom(), "grid") +
           svg::text(x(v), p99.frame.bottom() + 16, fixed(v, v == std::floor(v) ? 0 : 1) + " s", "label", "middle") +
           "\n";
  }
  XY rps_line, p99_line;
  for (const auto& p : t) {
    const double mid = static_cast<double>(p.at_us) / 1e6 + step_s / 2;
    rps_line.emplace_back(x(mid), rps.y(p.requests_per_s));
    p99_line.emplace_back(x(mid), p99.y(static_cast<double>(p.p99_us)));
    if (p.errors > 0) {
      const double left = x(static_cast<double>(p.at_us) / 1e6);
      out += svg::rect(left, errors.y(static_cast<double>(p.errors)), std::max(x(mid + step_s / 2) - left - 1, 1.0),
                       errors.frame.bottom() - errors.y(static_cast<double>(p.errors)), "errors") + "\n";
    }
  }
  out += "<polyline class=\"rps\" points=\"" + svg::points(rps_line) + "\"/>\n";
  out += "<polyline class=\"p99\" points=\"" + svg::points(p99_line) + "\"/>\n";
  out += svg::line(errors.frame.left, errors.frame.bottom(), errors.frame.right(), errors.frame.bottom(), "axis") + "\n";
  return out + change_marks(r, x, rps.frame.top, p99.frame.bottom()) + "</svg>\n";
}

}  // namespace svcproxy::loadtest::charts
