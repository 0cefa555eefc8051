// Small text helpers shared by the renderers.
#pragma once

#include <cstdint>
#include <string>

namespace svcproxy::loadtest {

// "850us", "12.3ms", "1.52s".
std::string format_latency(uint64_t us);
// "12345", "123k"-free: plain digits, and a rate with one decimal.
std::string format_rate(double per_s);

}  // namespace svcproxy::loadtest
