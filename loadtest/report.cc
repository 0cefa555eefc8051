#include "loadtest/report.h"

namespace svcproxy::loadtest {

std::string_view to_string(Mode mode) {
  switch (mode) {
    case Mode::connect: return "connect";
    case Mode::request: return "request";
    case Mode::http: return "http";
    case Mode::udp: return "udp";
  }
  return "?";
}

std::optional<Mode> parse_mode(std::string_view text) {
  for (Mode m : {Mode::connect, Mode::request, Mode::http, Mode::udp}) {
    if (to_string(m) == text) return m;
  }
  return std::nullopt;
}

}  // namespace svcproxy::loadtest
