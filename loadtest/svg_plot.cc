#include "loadtest/svg_plot.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace svcproxy::loadtest::svg {

std::string fixed(double value, int decimals) {
  if (!std::isfinite(value)) return "0";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed, decimals);
  if (ec != std::errc{}) return "0";
  std::string out(buf, end);
  if (out[0] == '-' && out.find_first_not_of("-0.") == std::string::npos) out.erase(0, 1);  // "-0.0"
  return out;
}

std::string count(uint64_t value) {
  std::string digits = std::to_string(value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string latency(double micros) {
  if (!std::isfinite(micros) || micros < 0) micros = 0;
  auto three_digits = [](double v) { return fixed(v, v < 10 ? 2 : v < 100 ? 1 : 0); };
  if (micros < 1000) return fixed(micros, 0) + " µs";
  if (micros < 1e6) return three_digits(micros / 1e3) + " ms";
  return three_digits(micros / 1e6) + " s";
}

std::string percent(double fraction) { return fixed(fraction * 100, 1) + "%"; }

std::string truncate(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  size_t cut = max_bytes;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // a continuation byte
  return std::string(text.substr(0, cut)) + "…";
}

std::vector<double> Ticks::values() const {
  std::vector<double> out;
  for (int i = 0; i * step <= top * (1 + 1e-9) && i <= 100; ++i) out.push_back(i * step);
  return out;
}

Ticks round_ticks(double max, int wanted) {
  if (!std::isfinite(max) || max <= 0) max = 1;
  const double raw = max / std::max(wanted, 1);
  const double magnitude = std::pow(10, std::floor(std::log10(raw)));
  double step = 10 * magnitude;
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * magnitude >= raw * (1 - 1e-9)) {
      step = m * magnitude;
      break;
    }
  }
  return {step, std::ceil(max / step - 1e-9) * step};
}

double Scale::operator()(double value) const {
  if (!std::isfinite(value) || !(hi > lo)) return from;
  const double t = (std::clamp(value, lo, hi) - lo) / (hi - lo);
  return from + t * (to - from);
}

namespace {
std::string class_attr(std::string_view cls) {
  return cls.empty() ? std::string() : " class=\"" + std::string(cls) + "\"";
}
}  // namespace

std::string line(double x1, double y1, double x2, double y2, std::string_view cls) {
  return "<line x1=\"" + fixed(x1, 1) + "\" y1=\"" + fixed(y1, 1) + "\" x2=\"" + fixed(x2, 1) + "\" y2=\"" +
         fixed(y2, 1) + "\"" + class_attr(cls) + "/>";
}

std::string text(double x, double y, std::string_view escaped, std::string_view cls, std::string_view anchor) {
  return "<text x=\"" + fixed(x, 1) + "\" y=\"" + fixed(y, 1) + "\" text-anchor=\"" + std::string(anchor) + "\"" +
         class_attr(cls) + ">" + std::string(escaped) + "</text>";
}

std::string rect(double x, double y, double w, double h, std::string_view cls) {
  return "<rect x=\"" + fixed(x, 1) + "\" y=\"" + fixed(y, 1) + "\" width=\"" + fixed(std::max(w, 0.0), 1) +
         "\" height=\"" + fixed(std::max(h, 0.0), 1) + "\"" + class_attr(cls) + "/>";
}

std::string points(const std::vector<std::pair<double, double>>& xy) {
  std::string out;
  for (const auto& [x, y] : xy) {
    if (!out.empty()) out += ' ';
    out += fixed(x, 1) + "," + fixed(y, 1);
  }
  return out;
}

}  // namespace svcproxy::loadtest::svg
