// IPAddress::append_to must print exactly what inet_ntop prints.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <random>

#include "model/ip.h"

namespace svcproxy::model {
namespace {

std::string reference(const IPAddress& ip) {
  char buf[INET6_ADDRSTRLEN];
  inet_ntop(ip.family == IPFamily::V4 ? AF_INET : AF_INET6, ip.bytes.data(), buf, sizeof buf);
  return buf;
}

TEST(IPFormat, MatchesInetNtopOnRandomAndSparseAddresses) {
  std::mt19937 rng(42);
  for (int n = 0; n < 200000; ++n) {
    IPAddress ip;
    ip.family = n % 3 == 0 ? IPFamily::V4 : IPFamily::V6;
    for (size_t i = 0; i < ip.size(); ++i) {
      // Mostly zero bytes, so zero-run compression and its tie rules are hit.
      const unsigned r = rng();
      ip.bytes[i] = (r & 3) == 0 ? static_cast<uint8_t>(r >> 8) : 0;
    }
    if (n % 7 == 0 && ip.family == IPFamily::V6) ip.bytes[10] = ip.bytes[11] = 0xff;  // v4-mapped
    ASSERT_EQ(ip.str(), reference(ip)) << "address #" << n;
  }
}

TEST(IPFormat, KnownForms) {
  for (const char* text : {"0.0.0.0", "255.255.255.255", "10.0.0.1", "::", "::1", "fd00::", "fd00::1",
                           "1:0:0:1::1", "1::1:0:0:1", "::ffff:10.1.2.3", "::10.1.2.3", "2001:db8:0:1:1:1:1:1"}) {
    auto ip = IPAddress::parse(text);
    ASSERT_TRUE(ip) << text;
    EXPECT_EQ(ip->str(), reference(*ip)) << text;
  }
}

}  // namespace
}  // namespace svcproxy::model
