// Address literals for tests: ip("10.0.0.1"), cidr("fd00::/64").
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include "model/ip.h"

namespace svcproxy::test_support {

// Malformed text is a mistake in the test: it throws, which fails the test
// (GoogleTest reports the exception) instead of going on with a wrong value.
inline model::IPAddress ip(std::string_view text) {
  const auto parsed = model::IPAddress::parse(text);
  if (!parsed) throw std::invalid_argument("not an IP address: " + std::string(text));
  return *parsed;
}

inline model::CIDR cidr(std::string_view text) {
  const auto parsed = model::CIDR::parse(text);
  if (!parsed) throw std::invalid_argument("not a CIDR: " + std::string(text));
  return *parsed;
}

}  // namespace svcproxy::test_support
