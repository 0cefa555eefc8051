#include "loadtest/progress_line.h"

#include <cstdio>

#include "loadtest/format.h"

namespace svcproxy::loadtest {

std::string render_progress(const Progress& p) {
  char head[128];
  std::snprintf(head, sizeof head, "%6.1fs %10.0f req/s  errors %llu  p99 %s", p.elapsed_s, p.requests_per_s,
                static_cast<unsigned long long>(p.errors), p.p99_us ? format_latency(p.p99_us).c_str() : "-");
  std::string line = head;
  for (size_t i = 0; i < p.busiest.size(); ++i)
    line += (i == 0 ? "  " : ", ") + p.busiest[i].first + " " + std::to_string(p.busiest[i].second);
  return line;
}

}  // namespace svcproxy::loadtest
