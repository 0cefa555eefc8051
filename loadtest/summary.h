// The human summary printed at the end of a run.
#pragma once

#include <string>
#include <vector>

#include "loadtest/report.h"

namespace svcproxy::loadtest {

// `failed`: the --fail-if conditions that hold (named at the end).
std::string render_summary(const Report& report, const std::vector<std::string>& failed = {});

}  // namespace svcproxy::loadtest
