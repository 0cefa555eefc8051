// Helpers shared by the manifests tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "model/objects.h"
#include "watch/manifests.h"

namespace svcproxy::watch::testing {

inline constexpr const char* kOrigin = "test.yaml";

inline DecodeResult decode(std::string_view text) {
  DecodeResult result;
  decode_manifests(text, kOrigin, result);
  return result;
}

inline std::string fixture(std::string_view name) {
  return std::string(SVCPROXY_TEST_DATA) + "/manifests/" + std::string(name);
}

inline model::IPAddress ip(std::string_view text) {
  const auto parsed = model::IPAddress::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed.value_or(model::IPAddress{});
}

inline model::CIDR cidr(std::string_view text) {
  const auto parsed = model::CIDR::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed.value_or(model::CIDR{});
}

inline std::string all_diagnostics(const DecodeResult& result) {
  std::string out;
  for (const Diagnostic& d : result.diagnostics) out += d.str() + "\n";
  return out;
}

}  // namespace svcproxy::watch::testing
