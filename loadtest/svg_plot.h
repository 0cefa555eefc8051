// Small pieces the HTML report draws its SVG charts with: number and
// duration text, round axis ticks, a linear scale, a plot frame. Pure
// functions of values; nothing here knows the Report.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace svcproxy::loadtest::svg {

// Fixed-point text; NaN and infinities print as "0" (a non-finite number in
// an SVG attribute is an error the browser logs).
std::string fixed(double value, int decimals);
// 1234567 -> "1,234,567".
std::string count(uint64_t value);
// Three significant digits: "850 µs", "1.25 ms", "12.5 s".
std::string latency(double micros);
// 0.3333 -> "33.3%".
std::string percent(double fraction);
// At most `max_bytes` of UTF-8 (cut on a character boundary) plus "…".
std::string truncate(std::string_view text, size_t max_bytes);

// Axis ticks 0, step, 2*step, ... top, with step 1, 2 or 5 x 10^k and about
// `wanted` steps to reach at least `max` (1 when max is not positive).
struct Ticks {
  double step = 1;
  double top = 1;
  std::vector<double> values() const;
};
Ticks round_ticks(double max, int wanted);

// Maps [lo, hi] onto [from, to] (pixels), clamping outside values.
struct Scale {
  double lo = 0, hi = 1, from = 0, to = 1;
  double operator()(double value) const;
};

// The plotting area inside an <svg>, in pixels.
struct Frame {
  double left = 0, top = 0, width = 0, height = 0;
  double right() const { return left + width; }
  double bottom() const { return top + height; }
};

// An SVG element as text: <line>, <text>, <rect>; `cls` is its CSS class
// (empty: none). Text is escaped by the caller.
std::string line(double x1, double y1, double x2, double y2, std::string_view cls);
std::string text(double x, double y, std::string_view escaped, std::string_view cls,
                 std::string_view anchor = "start");
std::string rect(double x, double y, double w, double h, std::string_view cls);
// "x,y x,y ..." for a <polyline points="...">.
std::string points(const std::vector<std::pair<double, double>>& xy);

}  // namespace svcproxy::loadtest::svg
