#include "loadtest/format.h"

#include <cstdio>

namespace svcproxy::loadtest {

std::string format_latency(uint64_t us) {
  char text[32];
  if (us < 1000) std::snprintf(text, sizeof text, "%lluus", static_cast<unsigned long long>(us));
  else if (us < 1'000'000) std::snprintf(text, sizeof text, "%.3gms", static_cast<double>(us) / 1e3);
  else std::snprintf(text, sizeof text, "%.3gs", static_cast<double>(us) / 1e6);
  return text;
}

std::string format_rate(double per_s) {
  char text[32];
  std::snprintf(text, sizeof text, "%.1f", per_s);
  return text;
}

}  // namespace svcproxy::loadtest
