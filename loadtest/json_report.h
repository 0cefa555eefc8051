// The report as one JSON object (--json); the schema is documented in
// README ("Load-testing a Service").
#pragma once

#include <string>

#include "loadtest/report.h"

namespace svcproxy::loadtest {

std::string render_json(const Report& report);

}  // namespace svcproxy::loadtest
