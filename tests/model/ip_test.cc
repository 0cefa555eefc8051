#include "model/ip.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include "tests/model/printers.h"
#include "tests/support/ip.h"

namespace svcproxy::model {
namespace {

using test_support::ip;

using test_support::cidr;

TEST(IPFamilyTest, ToString) {
  EXPECT_EQ(to_string(IPFamily::V4), "IPv4");
  EXPECT_EQ(to_string(IPFamily::V6), "IPv6");
}

TEST(IPAddressTest, ParsesIPv4) {
  const IPAddress a = ip("10.1.2.3");
  EXPECT_EQ(a.family, IPFamily::V4);
  EXPECT_EQ(a.size(), 4u);
  EXPECT_EQ(a, IPAddress::v4(10, 1, 2, 3));
  for (size_t i = 4; i < 16; ++i) EXPECT_EQ(a.bytes[i], 0) << i;
}

TEST(IPAddressTest, ParsesIPv6) {
  const IPAddress a = ip("fd00::1");
  EXPECT_EQ(a.family, IPFamily::V6);
  EXPECT_EQ(a.size(), 16u);
  EXPECT_EQ(a.bytes[0], 0xfd);
  EXPECT_EQ(a.bytes[15], 1);
}

TEST(IPAddressTest, IPv4MappedIsIPv6) {
  const IPAddress a = ip("::ffff:1.2.3.4");
  EXPECT_EQ(a.family, IPFamily::V6);
  EXPECT_NE(a, IPAddress::v4(1, 2, 3, 4));
  EXPECT_EQ(a.str(), "::ffff:1.2.3.4");
}

TEST(IPAddressTest, RejectsGarbage) {
  for (std::string_view bad :
       {"", " ", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.04", "0x1.2.3.4", " 1.2.3.4",
        "1.2.3.4 ", "1.2.3.4/32", "fe80::1%eth0", "::g", "1:2:3:4:5:6:7:8:9", "[fd00::1]", "localhost",
        "1.2.3.4:80"}) {
    EXPECT_FALSE(IPAddress::parse(bad)) << "'" << bad << "'";
  }
}

TEST(IPAddressTest, RejectsEmbeddedNulAndOverlongInput) {
  EXPECT_FALSE(IPAddress::parse(std::string_view("1.2.3.4\0junk", 12)));
  EXPECT_FALSE(IPAddress::parse(std::string(200, '1')));
}

TEST(IPAddressTest, StrIsCanonical) {
  EXPECT_EQ(ip("10.0.0.1").str(), "10.0.0.1");
  EXPECT_EQ(ip("FD00:0:0:0:0:0:0:1").str(), "fd00::1");
  EXPECT_EQ(ip("2001:db8:0:0:1:0:0:1").str(), "2001:db8::1:0:0:1");
  EXPECT_EQ(ip("2001:db8:0:1:1:1:1:1").str(), "2001:db8:0:1:1:1:1:1");  // lone zero not compressed
  EXPECT_EQ(ip("::").str(), "::");
  EXPECT_EQ(IPAddress::v4(192, 168, 0, 255).str(), "192.168.0.255");
}

TEST(IPAddressTest, RoundTrips) {
  for (std::string_view text : {"0.0.0.0", "255.255.255.255", "::1", "fd00:10:96::a", "2001:db8::1:0:0:1"}) {
    EXPECT_EQ(ip(text).str(), text);
    EXPECT_EQ(ip(ip(text).str()), ip(text));
  }
}

TEST(IPAddressTest, Loopback) {
  EXPECT_TRUE(ip("127.0.0.1").is_loopback());
  EXPECT_TRUE(ip("127.255.0.9").is_loopback());
  EXPECT_TRUE(ip("::1").is_loopback());
  EXPECT_TRUE(ip("::ffff:127.0.0.1").is_loopback());
  EXPECT_FALSE(ip("128.0.0.1").is_loopback());
  EXPECT_FALSE(ip("10.0.0.1").is_loopback());
  EXPECT_FALSE(ip("::").is_loopback());
  EXPECT_FALSE(ip("::2").is_loopback());
  EXPECT_FALSE(ip("1::1").is_loopback());
}

TEST(IPAddressTest, Unspecified) {
  EXPECT_TRUE(ip("0.0.0.0").is_unspecified());
  EXPECT_TRUE(ip("::").is_unspecified());
  EXPECT_FALSE(ip("0.0.0.1").is_unspecified());
  EXPECT_FALSE(ip("::1").is_unspecified());
  EXPECT_FALSE(ip("8000::").is_unspecified());
}

TEST(IPAddressTest, OrdersV4BeforeV6ThenByBytes) {
  EXPECT_LT(ip("10.0.0.2"), ip("10.0.0.10"));
  EXPECT_LT(ip("9.255.255.255"), ip("10.0.0.0"));
  EXPECT_LT(ip("255.255.255.255"), ip("::"));
  EXPECT_LT(ip("fd00::2"), ip("fd00::10"));
}

// operator<=> compares two big-endian words; it must give the order of
// (family, bytes) compared byte by byte, on both sides of the word boundary.
TEST(IPAddressTest, OrderIsFamilyThenBytesLexicographically) {
  const std::vector<IPAddress> all = {ip("0.0.0.0"),
                                      ip("0.0.0.1"),
                                      ip("0.0.1.0"),
                                      ip("1.0.0.0"),
                                      ip("10.244.0.255"),
                                      ip("10.244.1.0"),
                                      ip("127.0.0.1"),
                                      ip("128.0.0.0"),
                                      ip("255.255.255.255"),
                                      ip("::"),
                                      ip("::1"),
                                      ip("::ff00"),
                                      ip("0:0:0:1::"),
                                      ip("0:0:0:0:1::"),
                                      ip("0:0:0:0:8000::"),
                                      ip("0:0:0:ffff:ffff::"),
                                      ip("8000::"),
                                      ip("fd00::2"),
                                      ip("fd00::10"),
                                      ip("fd00:0:0:1::"),
                                      ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")};
  for (const IPAddress& a : all) {
    for (const IPAddress& b : all) {
      const auto want = std::tie(a.family, a.bytes) <=> std::tie(b.family, b.bytes);
      EXPECT_EQ(a <=> b, want) << a.str() << " vs " << b.str();
      EXPECT_EQ(a == b, want == 0) << a.str() << " vs " << b.str();
    }
  }
}

TEST(CIDRTest, ParsesAndMasksHostBits) {
  const CIDR c = cidr("10.1.2.3/8");
  EXPECT_EQ(c.address, ip("10.0.0.0"));
  EXPECT_EQ(c.prefix, 8);
  EXPECT_EQ(c.family(), IPFamily::V4);
  EXPECT_EQ(c.str(), "10.0.0.0/8");
  EXPECT_EQ(cidr("10.1.2.3/20").str(), "10.1.0.0/20");
  EXPECT_EQ(cidr("fd00:1:2:3::5/48").str(), "fd00:1:2::/48");
  EXPECT_EQ(cidr("fd00::ff/121").str(), "fd00::80/121");
  EXPECT_EQ(cidr("1.2.3.4/0").str(), "0.0.0.0/0");
  EXPECT_EQ(cidr("::1/0").str(), "::/0");
}

TEST(CIDRTest, BareAddressIsHostPrefix) {
  EXPECT_EQ(cidr("10.1.2.3"), CIDR::host(ip("10.1.2.3")));
  EXPECT_EQ(cidr("10.1.2.3").str(), "10.1.2.3/32");
  EXPECT_EQ(cidr("fd00::1").str(), "fd00::1/128");
  EXPECT_EQ(CIDR::host(ip("fd00::1")).prefix, 128);
}

TEST(CIDRTest, MaximumPrefixes) {
  EXPECT_EQ(cidr("1.2.3.4/32").str(), "1.2.3.4/32");
  EXPECT_EQ(cidr("fd00::1/128").str(), "fd00::1/128");
}

TEST(CIDRTest, RejectsGarbage) {
  for (std::string_view bad :
       {"", "/8", "10.0.0.0/", "10.0.0.0/33", "fd00::/129", "10.0.0.0/-1", "10.0.0.0/+8", "10.0.0.0/08",
        "10.0.0.0/8/8", "10.0.0.0/ 8", "10.0.0.0/8 ", " 10.0.0.0/8", "10.0.0.0/1000", "10.0.0/8", "x/8",
        "10.0.0.0/a"}) {
    EXPECT_FALSE(CIDR::parse(bad)) << "'" << bad << "'";
  }
}

TEST(CIDRTest, Contains) {
  const CIDR c = cidr("10.1.0.0/16");
  EXPECT_TRUE(c.contains(ip("10.1.0.0")));
  EXPECT_TRUE(c.contains(ip("10.1.255.255")));
  EXPECT_FALSE(c.contains(ip("10.2.0.0")));
  EXPECT_FALSE(c.contains(ip("::ffff:10.1.0.1")));  // other family
  EXPECT_TRUE(cidr("0.0.0.0/0").contains(ip("1.2.3.4")));
  EXPECT_FALSE(cidr("0.0.0.0/0").contains(ip("::1")));
  EXPECT_TRUE(cidr("::/0").contains(ip("fd00::1")));
  EXPECT_FALSE(cidr("::/0").contains(ip("1.2.3.4")));
  EXPECT_TRUE(cidr("fd00::/121").contains(ip("fd00::7f")));
  EXPECT_FALSE(cidr("fd00::/121").contains(ip("fd00::80")));
  EXPECT_TRUE(cidr("1.2.3.4/32").contains(ip("1.2.3.4")));
  EXPECT_FALSE(cidr("1.2.3.4/32").contains(ip("1.2.3.5")));
  EXPECT_TRUE(cidr("10.0.0.0/9").contains(ip("10.127.0.1")));
  EXPECT_FALSE(cidr("10.0.0.0/9").contains(ip("10.128.0.1")));
}

TEST(CIDRTest, ContainsToleratesUnmaskedHandBuiltCIDR) {
  CIDR c;
  c.address = ip("10.1.2.3");
  c.prefix = 24;
  EXPECT_TRUE(c.contains(ip("10.1.2.200")));
  EXPECT_FALSE(c.contains(ip("10.1.3.1")));
}

TEST(CIDRTest, Last) {
  EXPECT_EQ(cidr("10.0.0.0/8").last(), ip("10.255.255.255"));
  EXPECT_EQ(cidr("10.1.2.0/23").last(), ip("10.1.3.255"));
  EXPECT_EQ(cidr("10.1.2.3/32").last(), ip("10.1.2.3"));
  EXPECT_EQ(cidr("0.0.0.0/0").last(), ip("255.255.255.255"));
  EXPECT_EQ(cidr("fd00::/64").last(), ip("fd00::ffff:ffff:ffff:ffff"));
  EXPECT_EQ(cidr("fd00::/121").last(), ip("fd00::7f"));
  EXPECT_EQ(cidr("::/0").last(), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
  // IPv4 never spills into the unused bytes.
  const IPAddress last = cidr("0.0.0.0/0").last();
  for (size_t i = 4; i < 16; ++i) EXPECT_EQ(last.bytes[i], 0) << i;
}

TEST(FormatEndpointTest, BracketsIPv6) {
  EXPECT_EQ(format_endpoint(ip("1.2.3.4"), 80), "1.2.3.4:80");
  EXPECT_EQ(format_endpoint(ip("fd00::1"), 80), "[fd00::1]:80");
  EXPECT_EQ(format_endpoint(ip("10.0.0.1"), 65535), "10.0.0.1:65535");
  EXPECT_EQ(format_endpoint(ip("::"), 0), "[::]:0");
}

TEST(ToSockaddrTest, IPv4) {
  const SocketAddress a = to_sockaddr(ip("10.1.2.3"), 8080);
  ASSERT_EQ(a.length, sizeof(sockaddr_in));
  EXPECT_EQ(a.family(), AF_INET);
  sockaddr_in v4{};
  std::memcpy(&v4, a.get(), sizeof v4);
  EXPECT_EQ(ntohs(v4.sin_port), 8080);
  EXPECT_EQ(ntohl(v4.sin_addr.s_addr), 0x0a010203u);
}

TEST(ToSockaddrTest, IPv6) {
  const SocketAddress a = to_sockaddr(ip("fd00::1"), 443);
  ASSERT_EQ(a.length, sizeof(sockaddr_in6));
  EXPECT_EQ(a.family(), AF_INET6);
  sockaddr_in6 v6{};
  std::memcpy(&v6, a.get(), sizeof v6);
  EXPECT_EQ(ntohs(v6.sin6_port), 443);
  char text[INET6_ADDRSTRLEN] = {};
  ASSERT_NE(inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text), nullptr);
  EXPECT_STREQ(text, "fd00::1");
  EXPECT_EQ(v6.sin6_scope_id, 0u);
  EXPECT_EQ(v6.sin6_flowinfo, 0u);
}

}  // namespace
}  // namespace svcproxy::model
