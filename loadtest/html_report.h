// `loadtest --html FILE`: the Report as one self-contained page. Inline SVG
// charts, inline CSS, no script, no external asset (a Content-Security-Policy
// of default-src 'none' makes the browser refuse any that slipped in), so the
// file can be mailed or attached to a CI run and opened anywhere offline.
#pragma once

#include <string>
#include <string_view>

#include "loadtest/report.h"

namespace svcproxy::loadtest {

// The whole page (UTF-8). Every string of the report is escaped: endpoint
// names and error texts come from the network.
std::string render_html(const Report& report);

// Text safe in HTML content and in quoted attribute values: & < > " ' are
// escaped, and control characters (which HTML forbids) become U+FFFD.
std::string html_escape(std::string_view text);

}  // namespace svcproxy::loadtest
