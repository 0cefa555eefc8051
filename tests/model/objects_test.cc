#include "model/objects.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

namespace svcproxy::model {
namespace {

TEST(ProtocolTest, ToString) {
  EXPECT_EQ(to_string(Protocol::TCP), "TCP");
  EXPECT_EQ(to_string(Protocol::UDP), "UDP");
  EXPECT_EQ(to_string(Protocol::SCTP), "SCTP");
  EXPECT_EQ(to_lower(Protocol::TCP), "tcp");
  EXPECT_EQ(to_lower(Protocol::UDP), "udp");
  EXPECT_EQ(to_lower(Protocol::SCTP), "sctp");
}

TEST(ProtocolTest, ParseIsCaseSensitive) {
  EXPECT_EQ(parse_protocol("TCP"), Protocol::TCP);
  EXPECT_EQ(parse_protocol("UDP"), Protocol::UDP);
  EXPECT_EQ(parse_protocol("SCTP"), Protocol::SCTP);
  for (std::string_view bad : {"", "tcp", "Tcp", "udp", "sctp", "ICMP", " TCP", "TCP "}) {
    EXPECT_FALSE(parse_protocol(bad)) << "'" << bad << "'";
  }
}

TEST(ProtocolTest, RoundTrips) {
  for (Protocol p : {Protocol::TCP, Protocol::UDP, Protocol::SCTP}) {
    EXPECT_EQ(parse_protocol(to_string(p)), p);
  }
}

TEST(ProtocolTest, ValuesAreIPProtocolNumbers) {
  EXPECT_EQ(static_cast<int>(Protocol::TCP), 6);
  EXPECT_EQ(static_cast<int>(Protocol::UDP), 17);
  EXPECT_EQ(static_cast<int>(Protocol::SCTP), 132);
}

TEST(ObjectRefTest, Str) {
  EXPECT_EQ((ObjectRef{"default", "web"}).str(), "default/web");
  EXPECT_EQ((ObjectRef{"", "node-1"}).str(), "node-1");
}

Service service(std::string ns, std::string name, std::string rv = "1") {
  Service s;
  s.ref = {std::move(ns), std::move(name)};
  s.resource_version = std::move(rv);
  return s;
}

EndpointSlice slice(std::string ns, std::string name) {
  EndpointSlice s;
  s.ref = {std::move(ns), std::move(name)};
  return s;
}

TEST(ClusterStateTest, SortOrdersEveryListByRefOrName) {
  ClusterState state;
  state.services = {service("b", "a"), service("a", "z"), service("a", "b")};
  state.endpoint_slices = {slice("z", "s1"), slice("a", "s2"), slice("a", "s1")};
  state.nodes.resize(2);
  state.nodes[0].name = "n2";
  state.nodes[1].name = "n1";
  state.service_cidrs.resize(2);
  state.service_cidrs[0].name = "secondary";
  state.service_cidrs[1].name = "kubernetes";

  state.sort();

  ASSERT_EQ(state.services.size(), 3u);
  EXPECT_EQ(state.services[0].ref.str(), "a/b");
  EXPECT_EQ(state.services[1].ref.str(), "a/z");
  EXPECT_EQ(state.services[2].ref.str(), "b/a");
  EXPECT_EQ(state.endpoint_slices[0].ref.str(), "a/s1");
  EXPECT_EQ(state.endpoint_slices[1].ref.str(), "a/s2");
  EXPECT_EQ(state.endpoint_slices[2].ref.str(), "z/s1");
  EXPECT_EQ(state.nodes[0].name, "n1");
  EXPECT_EQ(state.service_cidrs[0].name, "kubernetes");
}

TEST(ClusterStateTest, SortKeepsInnerOrder) {
  // Only the object lists are sorted: clusterIPs[0] is the primary family
  // and must stay first.
  ClusterState state;
  Service s = service("ns", "svc");
  s.cluster_ips = {*IPAddress::parse("fd00::1"), *IPAddress::parse("10.0.0.1")};
  state.services = {s};
  state.sort();
  EXPECT_EQ(state.services[0].cluster_ips[0].family, IPFamily::V6);
}

TEST(ClusterStateTest, SortIsIndependentOfInputOrderEvenWithDuplicateRefs) {
  ClusterState base;
  base.services = {service("a", "x", "3"), service("a", "x", "1"), service("a", "y"), service("a", "x", "2")};
  base.endpoint_slices = {slice("a", "s"), slice("a", "s"), slice("b", "s")};
  base.endpoint_slices[0].service_name = "x";
  base.endpoint_slices[1].service_name = "y";
  ClusterState expected = base;
  expected.sort();
  EXPECT_EQ(expected.services[0].resource_version, "1");
  EXPECT_EQ(expected.services[2].resource_version, "3");

  std::mt19937 rng(42);
  for (int i = 0; i < 20; ++i) {
    ClusterState shuffled = base;
    std::shuffle(shuffled.services.begin(), shuffled.services.end(), rng);
    std::shuffle(shuffled.endpoint_slices.begin(), shuffled.endpoint_slices.end(), rng);
    shuffled.sort();
    EXPECT_EQ(shuffled, expected);
  }
}

}  // namespace
}  // namespace svcproxy::model
