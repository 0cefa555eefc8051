// Small text helpers shared by the renderers.
#pragma once

#include <cstdint>
#include <string>

namespace svcproxy::loadtest {

// "850us", "12.3ms", "1.52s".
std::string format_latency(uint64_t us);
// A rate (or a duration in seconds) with one decimal: "41230.5".
std::string format_rate(double per_s);

}  // namespace svcproxy::loadtest
