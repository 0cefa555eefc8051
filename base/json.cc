#include "base/json.h"

// Boost.JSON header-only: its sources are compiled here, once for the tree
// (Debian's Boost 1.81 has no libboost_json package installed here).
#include <boost/json/src.hpp>

namespace svcproxy::base {

void append_json_string(std::string& out, std::string_view text) {
  boost::json::serializer serializer;
  serializer.reset(boost::json::string_view(text.data(), text.size()));
  // Most strings fit in one read; a long one with many escapes takes more.
  char buffer[256];
  while (!serializer.done()) {
    const auto part = serializer.read(buffer, sizeof buffer);
    out.append(part.data(), part.size());
  }
}

std::string json_string(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  append_json_string(out, text);
  return out;
}

}  // namespace svcproxy::base
