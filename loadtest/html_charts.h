// The HTML report's three inline SVG charts, each a complete <svg> element
// with a stable id (the Chromium test looks for them): "latency-curve",
// "endpoint-bars", "timeline". An empty report still gets each frame, with a
// "no data" note in it.
#pragma once

#include <string>

#include "loadtest/report.h"

namespace svcproxy::loadtest::charts {

// Latency by percentile, x in "nines" as HDR histogram plots draw it
// (0%, 90%, 99%, 99.9%, ... equally spaced), corrected curve plus markers for
// the corrected and uncorrected p50/p90/p99/p99.9.
std::string latency_curve(const Report& r);

// One bar per endpoint (busiest first, at most 40): actual share, a tick at
// the expected share, violations in red.
std::string endpoint_bars(const Report& r);

// Requests/s, errors and p99 over the run, one panel each, with every
// endpoint change (Report::changes) a dashed line across all three.
std::string timeline(const Report& r);

}  // namespace svcproxy::loadtest::charts
