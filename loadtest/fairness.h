// How evenly answers spread over the endpoints that should share them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "loadtest/report.h"

namespace svcproxy::loadtest {

// Pearson's chi-square test of `counts` against an even spread, and the
// busiest/least busy ratio (infinity when one got nothing). Fewer than two
// endpoints: p = 1, ratio 1 (nothing to compare).
Fairness fairness_of(const std::vector<uint64_t>& counts, std::string basis);

}  // namespace svcproxy::loadtest
