// JSON string literals for every hand-built JSON document we print (rules
// --json, trace --json, the loadtest report, healthz, the exec plugin's
// input, JSON logs). Boost.JSON's serializer does the escaping (RFC 8259):
// `"` and `\` escaped, \b \f \n \r \t as such, other control characters as
// \u00xx (lowercase hex), every other byte (UTF-8 included) copied as is.
#pragma once

#include <string>
#include <string_view>

namespace svcproxy::base {

// Appends `text` as a quoted JSON string.
void append_json_string(std::string& out, std::string_view text);
// `text` as a quoted JSON string.
std::string json_string(std::string_view text);

}  // namespace svcproxy::base
