// The live progress line: on a terminal one line redrawn in place, else
// plain lines (a log keeps every one).
#pragma once

#include <string>

#include "loadtest/engine.h"

namespace svcproxy::loadtest {

// "3.2s  41230 req/s  errors 0  p99 1.2ms  10.0.1.1:80 3312, ..." (no newline).
std::string render_progress(const Progress& progress);

}  // namespace svcproxy::loadtest
