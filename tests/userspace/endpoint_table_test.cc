// The userspace proxy's choice rules without sockets: round-robin order and
// reshuffle on change, table reuse across updates, ClientIP affinity,
// passive ejection, listeners per address kind.
#include "userspace/endpoint_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "tests/support/ip.h"

namespace svcproxy::userspace {
namespace {

using model::EndpointAddress;
using model::IPAddress;

using test_support::ip;
EndpointAddress ep(const char* text, uint16_t port = 8080) { return {ip(text), port}; }

model::ServicePortState port(const char* name, const char* cluster_ip, std::vector<EndpointAddress> endpoints) {
  model::ServicePortState p;
  p.name.service = {"default", name};
  p.name.port_name = "http";
  p.port = 80;
  p.cluster_ip = ip(cluster_ip);
  p.cluster_endpoints = std::move(endpoints);
  return p;
}

const PortTable& table_at(const Routes& routes, const char* vip, uint16_t p,
                          model::Protocol proto = model::Protocol::TCP) {
  const Route* r = routes.find({ip(vip), p, proto});
  EXPECT_NE(r, nullptr) << vip << ":" << p;
  return *r->table;
}

TEST(PortTable, RoundRobinVisitsEveryEndpointInTurn) {
  RoutesBuilder b(1);
  auto routes = b.build({port("web", "10.96.0.10", {ep("10.244.1.2"), ep("10.244.2.2"), ep("10.244.3.2")})}, {}, nullptr);
  const auto& t = table_at(*routes, "10.96.0.10", 80);
  const auto now = Clock::now();
  std::vector<EndpointAddress> first;
  for (int i = 0; i < 3; ++i) first.push_back(t.pick(ip("1.1.1.1"), now)->address);
  EXPECT_EQ(std::set<EndpointAddress>(first.begin(), first.end()).size(), 3u);
  // The same cycle repeats, whoever the client is.
  for (int round = 0; round < 5; ++round)
    for (int i = 0; i < 3; ++i) EXPECT_EQ(t.pick(ip("1.1.1.2"), now)->address, first[i]);
}

TEST(PortTable, OrderIsShuffledWhenTheSetChanges) {
  // Over several seeds, the order is not always the sorted order.
  std::set<std::vector<EndpointAddress>> orders;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    RoutesBuilder b(seed);
    auto routes = b.build({port("web", "10.96.0.10", {ep("10.244.1.2"), ep("10.244.2.2"), ep("10.244.3.2"),
                                                       ep("10.244.4.2")})},
                          {}, nullptr);
    std::vector<EndpointAddress> order;
    for (const auto& be : table_at(*routes, "10.96.0.10", 80).backends) order.push_back(be.address);
    orders.insert(order);
  }
  EXPECT_GT(orders.size(), 5u);
}

TEST(RoutesBuilder, UnchangedSetKeepsTheTableAndItsCursor) {
  RoutesBuilder b(7);
  auto eps = std::vector{ep("10.244.1.2"), ep("10.244.2.2")};
  auto r1 = b.build({port("web", "10.96.0.10", eps), port("db", "10.96.0.11", {ep("10.244.9.2")})}, {}, nullptr);
  const auto* t1 = r1->find({ip("10.96.0.10"), 80, model::Protocol::TCP})->table.get();
  t1->pick(ip("1.1.1.1"), Clock::now());
  // Another service changes; web's table is shared as is.
  auto r2 = b.build({port("web", "10.96.0.10", eps), port("db", "10.96.0.11", {ep("10.244.8.2")})}, {}, nullptr);
  EXPECT_EQ(r2->find({ip("10.96.0.10"), 80, model::Protocol::TCP})->table.get(), t1);
  EXPECT_EQ(t1->cursor.load(), 1u);
  EXPECT_NE(r2->find({ip("10.96.0.11"), 80, model::Protocol::TCP})->table.get(),
            r1->find({ip("10.96.0.11"), 80, model::Protocol::TCP})->table.get());
}

TEST(RoutesBuilder, SnapshotsAreIndependent) {
  // A connection holding the old snapshot still sees the old endpoints;
  // the new one never offers the removed endpoint.
  RoutesBuilder b(3);
  auto r1 = b.build({port("web", "10.96.0.10", {ep("10.244.1.2"), ep("10.244.2.2")})}, {}, nullptr);
  auto r2 = b.build({port("web", "10.96.0.10", {ep("10.244.1.2")})}, {}, nullptr);
  EXPECT_EQ(table_at(*r1, "10.96.0.10", 80).backends.size(), 2u);
  const auto& t2 = table_at(*r2, "10.96.0.10", 80);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(t2.pick(ip("1.1.1.1"), Clock::now())->address, ep("10.244.1.2"));
}

TEST(RoutesBuilder, HealthCarriesOverForEndpointsThatStay) {
  RoutesBuilder b(3);
  auto r1 = b.build({port("web", "10.96.0.10", {ep("10.244.1.2"), ep("10.244.2.2")})}, {}, nullptr);
  auto h = table_at(*r1, "10.96.0.10", 80).find(ep("10.244.1.2"))->health;
  auto r2 = b.build({port("web", "10.96.0.10", {ep("10.244.1.2"), ep("10.244.3.2")})}, {}, nullptr);
  EXPECT_EQ(table_at(*r2, "10.96.0.10", 80).find(ep("10.244.1.2"))->health, h);
}

TEST(PortTable, EjectedEndpointsAreSkippedUntilTheBackOffEnds) {
  RoutesBuilder b(5);
  auto routes = b.build({port("web", "10.96.0.10", {ep("10.244.1.2"), ep("10.244.2.2"), ep("10.244.3.2")})}, {}, nullptr);
  const auto& t = table_at(*routes, "10.96.0.10", 80);
  const auto now = Clock::now();
  t.find(ep("10.244.2.2"))->health->ejected_until_ns = (now + std::chrono::seconds(5)).time_since_epoch().count();
  std::map<EndpointAddress, int> seen;
  for (int i = 0; i < 30; ++i) seen[t.pick(ip("1.1.1.1"), now)->address]++;
  EXPECT_EQ(seen.count(ep("10.244.2.2")), 0u);
  EXPECT_EQ(seen[ep("10.244.1.2")], 15);
  EXPECT_EQ(seen[ep("10.244.3.2")], 15);
  // After the back-off it is back in rotation.
  seen.clear();
  for (int i = 0; i < 30; ++i) seen[t.pick(ip("1.1.1.1"), now + std::chrono::seconds(6))->address]++;
  EXPECT_EQ(seen[ep("10.244.2.2")], 10);
}

TEST(PortTable, EveryEndpointEjectedStillPicksOne) {
  RoutesBuilder b(5);
  auto routes = b.build({port("web", "10.96.0.10", {ep("10.244.1.2"), ep("10.244.2.2")})}, {}, nullptr);
  const auto& t = table_at(*routes, "10.96.0.10", 80);
  const auto now = Clock::now();
  for (const auto& be : t.backends)
    be.health->ejected_until_ns = (now + std::chrono::seconds(5)).time_since_epoch().count();
  EXPECT_NE(t.pick(ip("1.1.1.1"), now), nullptr);
}

TEST(PortTable, NoEndpointsPicksNothing) {
  RoutesBuilder b;
  auto routes = b.build({port("web", "10.96.0.10", {})}, {}, nullptr);
  EXPECT_EQ(table_at(*routes, "10.96.0.10", 80).pick(ip("1.1.1.1"), Clock::now()), nullptr);
}

TEST(PortTable, ClientIPAffinitySticksAndExpires) {
  auto p = port("web", "10.96.0.10", {ep("10.244.1.2"), ep("10.244.2.2"), ep("10.244.3.2")});
  p.affinity_timeout_seconds = 10;
  RoutesBuilder b(9);
  auto routes = b.build({p}, {}, nullptr);
  const auto& t = table_at(*routes, "10.96.0.10", 80);
  const auto now = Clock::now();
  const auto a = t.pick(ip("1.1.1.1"), now)->address;
  const auto c = t.pick(ip("1.1.1.2"), now)->address;
  EXPECT_NE(a, c);  // round robin across clients
  for (int i = 0; i < 20; ++i) EXPECT_EQ(t.pick(ip("1.1.1.1"), now + std::chrono::seconds(i % 5))->address, a);
  // Each use refreshes the entry; 11 s of silence forgets it.
  const auto later = now + std::chrono::seconds(4 + 11);
  std::set<EndpointAddress> after;
  for (int i = 0; i < 3; ++i) {
    after.insert(t.pick(ip("1.1.1.1"), later)->address);
    t.affinity->forget(ip("1.1.1.1"));
  }
  EXPECT_EQ(after.size(), 3u);
}

// A client's first connections arrive together on several workers (the e2e
// test's 4 parallel connections did): they must all reach one endpoint.
// With the affinity lookup and record apart, two of them could each miss,
// pick in turn, and the later record overwrite the earlier.
TEST(PortTable, RacingFirstConnectionsOfAClientAgree) {
  auto p = port("web", "10.96.0.10", {ep("10.244.1.2"), ep("10.244.2.2"), ep("10.244.3.2")});
  p.affinity_timeout_seconds = 100;
  RoutesBuilder b(3);
  auto routes = b.build({p}, {}, nullptr);
  const auto& t = table_at(*routes, "10.96.0.10", 80);
  const auto now = Clock::now();
  for (int round = 0; round < 200; ++round) {
    const IPAddress client = ip(("1.2." + std::to_string(round / 250) + "." + std::to_string(round % 250)).c_str());
    std::vector<EndpointAddress> chosen(2);
    std::atomic<size_t> ready{0};
    std::vector<std::thread> threads;
    for (size_t i = 0; i < chosen.size(); ++i)
      threads.emplace_back([&, i] {
        ready.fetch_add(1);
        while (ready.load() < chosen.size()) {
          std::this_thread::yield();  // all at once
        }
        chosen[i] = t.pick(client, now)->address;
      });
    for (auto& th : threads) th.join();
    const std::set<EndpointAddress> distinct(chosen.begin(), chosen.end());
    ASSERT_EQ(distinct.size(), 1u) << "round " << round;
    ASSERT_EQ(t.pick(client, now)->address, chosen[0]);
  }
}

TEST(PortTable, AffinityMovesOffAnEjectedOrRemovedEndpoint) {
  auto p = port("web", "10.96.0.10", {ep("10.244.1.2"), ep("10.244.2.2")});
  p.affinity_timeout_seconds = 100;
  RoutesBuilder b(2);
  auto r1 = b.build({p}, {}, nullptr);
  const auto now = Clock::now();
  const auto first = table_at(*r1, "10.96.0.10", 80).pick(ip("1.1.1.1"), now)->address;
  // The endpoint is removed: the client moves, and sticks to the new one.
  p.cluster_endpoints = {first == ep("10.244.1.2") ? ep("10.244.2.2") : ep("10.244.1.2"), ep("10.244.3.2")};
  auto r2 = b.build({p}, {}, nullptr);
  const auto& t2 = table_at(*r2, "10.96.0.10", 80);
  EXPECT_EQ(t2.affinity, table_at(*r1, "10.96.0.10", 80).affinity);  // the map carries over
  const auto second = t2.pick(ip("1.1.1.1"), now)->address;
  EXPECT_NE(second, first);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(t2.pick(ip("1.1.1.1"), now)->address, second);
  // Ejected: moves again.
  t2.find(second)->health->ejected_until_ns = (now + std::chrono::seconds(5)).time_since_epoch().count();
  const auto third = t2.pick(ip("1.1.1.1"), now)->address;
  EXPECT_NE(third, second);
  // A retry resets the entry.
  EXPECT_NE(t2.pick(ip("1.1.1.1"), now, /*reset_affinity=*/true), nullptr);
}

TEST(RoutesBuilder, ListenersForEveryAddressKind) {
  auto p = port("web", "10.96.0.10", {ep("10.244.1.2")});
  p.node_port = 30080;
  p.external_ips = {ip("192.0.2.10")};
  p.load_balancer_ips = {ip("192.0.2.20")};
  p.load_balancer_source_ranges = {*model::CIDR::parse("203.0.113.0/24")};
  p.external_traffic_policy = model::TrafficPolicy::Local;
  p.local_endpoints = {};
  NodePortAddresses np;
  np.ips = {ip("203.0.113.1"), ip("2001:db8::1")};
  RoutesBuilder b;
  auto routes = b.build({p}, np, nullptr);
  EXPECT_EQ(routes->by_listener.size(), 4u);
  // ClusterIP: cluster endpoints; external addresses: local ones (none here).
  EXPECT_EQ(table_at(*routes, "10.96.0.10", 80).backends.size(), 1u);
  EXPECT_TRUE(table_at(*routes, "192.0.2.10", 80).backends.empty());
  EXPECT_TRUE(table_at(*routes, "203.0.113.1", 30080).backends.empty());
  const Route* lb = routes->find({ip("192.0.2.20"), 80, model::Protocol::TCP});
  ASSERT_NE(lb, nullptr);
  EXPECT_TRUE(lb->allows(ip("203.0.113.7")));
  EXPECT_FALSE(lb->allows(ip("198.51.100.7")));
  EXPECT_TRUE(routes->find({ip("192.0.2.10"), 80, model::Protocol::TCP})->allows(ip("198.51.100.7")));
  EXPECT_EQ(RoutesBuilder::service_addresses({p}),
            (std::vector{ip("10.96.0.10"), ip("192.0.2.10"), ip("192.0.2.20")}));
}

TEST(RoutesBuilder, NodePortOnEveryLocalAddressListensOnTheWildcard) {
  auto p = port("web", "10.96.0.10", {ep("10.244.1.2")});
  p.node_port = 30080;
  NodePortAddresses np;
  np.all_v4 = true;
  RoutesBuilder b;
  auto routes = b.build({p}, np, nullptr);
  EXPECT_NE(routes->find({ip("0.0.0.0"), 30080, model::Protocol::TCP}), nullptr);
}

TEST(RoutesBuilder, ConflictingClaimsKeepTheFirstAndWarn) {
  auto a = port("a", "10.96.0.10", {ep("10.244.1.2")});
  auto c = port("c", "10.96.0.11", {ep("10.244.2.2")});
  a.external_ips = {ip("192.0.2.10")};
  c.external_ips = {ip("192.0.2.10")};
  std::vector<std::string> warnings;
  RoutesBuilder b;
  auto routes = b.build({a, c}, {}, &warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("192.0.2.10:80"), std::string::npos);
  EXPECT_EQ(table_at(*routes, "192.0.2.10", 80).backends[0].address, ep("10.244.1.2"));
}

}  // namespace
}  // namespace svcproxy::userspace
