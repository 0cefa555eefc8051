// The compiler, tested by behaviour: every case compiles a small set of
// service ports and asks the trace evaluator where packets go, so the tests
// exercise the IR the kernel gets, not its text.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <random>
#include <sstream>

#include "dataplane/compile.h"
#include "dataplane/render.h"
#include "dataplane/trace.h"
#include "tests/support/ip.h"

namespace svcproxy::dataplane {
namespace {

using model::CIDR;
using model::EndpointAddress;
using model::IPAddress;
using model::Protocol;
using model::ServicePortState;
using model::TrafficPolicy;

using test_support::cidr;
using test_support::ip;
EndpointAddress ep(const char* addr, uint16_t port) { return {ip(addr), port}; }

const IPAddress kNode = ip("203.0.113.1");
const IPAddress kExternalClient = ip("198.51.100.7");
const IPAddress kPodClient = ip("10.244.9.9");

model::NodeConfig node_config() {
  model::NodeConfig node;
  node.node_name = "node-a";
  node.node_ips = {kNode, ip("2001:db8::1")};
  node.nodeport_ips = node.node_ips;
  node.cluster_cidrs = {cidr("10.244.0.0/16"), cidr("fd00:10:244::/56")};
  node.service_cidrs = {cidr("10.96.0.0/16"), cidr("fd00:10:96::/112")};
  return node;
}

ServicePortState port(const char* name, const char* cluster_ip, uint16_t svc_port,
                      std::vector<EndpointAddress> cluster, std::vector<EndpointAddress> local = {},
                      Protocol proto = Protocol::TCP) {
  ServicePortState sp;
  sp.name.service = {"default", name};
  sp.name.port_name = "p";
  sp.name.protocol = proto;
  sp.cluster_ip = ip(cluster_ip);
  sp.name.family = sp.cluster_ip.family;
  sp.port = svc_port;
  sp.cluster_endpoints = std::move(cluster);
  sp.local_endpoints = std::move(local);
  return sp;
}

struct Fixture {
  model::NodeConfig node = node_config();
  std::vector<ServicePortState> ports;
  CompileResult compiled;
  std::optional<std::string> iif;  // the input interface of packets sent

  void build() { compiled = compile(ports, node); }
  TraceResult send(IPAddress src, IPAddress dst, uint16_t dport, Protocol proto = Protocol::TCP) {
    TracePacket packet{src, dst, proto, dport, false, iif};
    TraceEnvironment env;
    env.local_addresses = node.node_ips;
    packet.locally_generated = std::find(env.local_addresses.begin(), env.local_addresses.end(), src) !=
                               env.local_addresses.end();
    return trace(compiled.ruleset, packet, env);
  }
};

const std::vector<EndpointAddress> kThree = {ep("10.244.1.2", 8080), ep("10.244.1.3", 8080),
                                             ep("10.244.2.4", 8080)};
const std::vector<EndpointAddress> kLocalOne = {ep("10.244.1.2", 8080)};

TEST(Compile, ClusterIpSpreadsOverEveryUsableEndpoint) {
  Fixture f;
  f.ports.push_back(port("web", "10.96.0.10", 80, kThree, kLocalOne));
  f.build();
  auto r = f.send(kPodClient, ip("10.96.0.10"), 80);
  EXPECT_EQ(r.verdict, TraceVerdict::DNAT);
  EXPECT_EQ(r.endpoints, kThree);
  EXPECT_FALSE(r.masquerade) << "pod-to-service traffic keeps its source";
}

TEST(Compile, OffClusterClientToClusterIpIsMasqueraded) {
  Fixture f;
  f.ports.push_back(port("web", "10.96.0.10", 80, kThree));
  f.build();
  auto r = f.send(kExternalClient, ip("10.96.0.10"), 80);
  EXPECT_EQ(r.verdict, TraceVerdict::DNAT);
  EXPECT_TRUE(r.masquerade);
  EXPECT_EQ(r.masquerade_endpoints, kThree);
}

TEST(Compile, MasqueradeAllMarksPodTraffic) {
  Fixture f;
  f.node.masquerade_all = true;
  f.ports.push_back(port("web", "10.96.0.10", 80, kThree));
  f.build();
  EXPECT_TRUE(f.send(kPodClient, ip("10.96.0.10"), 80).masquerade);
}

TEST(Compile, NoClusterCidrMeansNoMasqueradeForClusterIp) {
  Fixture f;
  f.node.cluster_cidrs.clear();
  f.ports.push_back(port("web", "10.96.0.10", 80, kThree));
  f.build();
  EXPECT_FALSE(f.send(kExternalClient, ip("10.96.0.10"), 80).masquerade);
}

TEST(Compile, NoEndpointsRejectsOnEveryAddress) {
  Fixture f;
  auto sp = port("empty", "10.96.0.11", 80, {});
  sp.node_port = 30080;
  sp.external_ips = {ip("198.51.100.50")};
  sp.load_balancer_ips = {ip("198.51.100.60")};
  f.ports.push_back(sp);
  f.build();
  EXPECT_EQ(f.send(kPodClient, ip("10.96.0.11"), 80).verdict, TraceVerdict::REJECT);
  EXPECT_EQ(f.send(kExternalClient, ip("198.51.100.50"), 80).verdict, TraceVerdict::REJECT);
  EXPECT_EQ(f.send(kExternalClient, ip("198.51.100.60"), 80).verdict, TraceVerdict::REJECT);
  EXPECT_EQ(f.send(kExternalClient, kNode, 30080).verdict, TraceVerdict::REJECT);
}

TEST(Compile, UndefinedPortRejectsAndUnallocatedServiceIpDrops) {
  Fixture f;
  f.ports.push_back(port("web", "10.96.0.10", 80, kThree));
  f.build();
  EXPECT_EQ(f.send(kPodClient, ip("10.96.0.10"), 81).verdict, TraceVerdict::REJECT);
  EXPECT_EQ(f.send(kPodClient, ip("10.96.0.10"), 80, Protocol::UDP).verdict, TraceVerdict::REJECT);
  EXPECT_EQ(f.send(kPodClient, ip("10.96.5.5"), 80).verdict, TraceVerdict::DROP);
  EXPECT_EQ(f.send(kPodClient, ip("10.97.0.1"), 80).verdict, TraceVerdict::ACCEPT) << "outside the service CIDR";
}

TEST(Compile, InternalTrafficPolicyLocal) {
  Fixture f;
  auto remote_only = port("remote", "10.96.0.12", 80, {ep("10.244.2.4", 8080)}, {});
  remote_only.internal_traffic_policy = TrafficPolicy::Local;
  auto with_local = port("local", "10.96.0.13", 80, kThree, kLocalOne);
  with_local.internal_traffic_policy = TrafficPolicy::Local;
  f.ports = {remote_only, with_local};
  f.build();
  EXPECT_EQ(f.send(kPodClient, ip("10.96.0.12"), 80).verdict, TraceVerdict::DROP);
  auto r = f.send(kPodClient, ip("10.96.0.13"), 80);
  EXPECT_EQ(r.verdict, TraceVerdict::DNAT);
  EXPECT_EQ(r.endpoints, kLocalOne);
}

TEST(Compile, ExternalTrafficPolicyClusterMasqueradesEveryExternalAddress) {
  Fixture f;
  auto sp = port("web", "10.96.0.10", 80, kThree, kLocalOne);
  sp.node_port = 30080;
  sp.external_ips = {ip("198.51.100.50")};
  sp.load_balancer_ips = {ip("198.51.100.60")};
  f.ports.push_back(sp);
  f.build();
  for (auto [dst, dport] : {std::pair{ip("198.51.100.50"), 80}, {ip("198.51.100.60"), 80}, {kNode, 30080}}) {
    auto r = f.send(kExternalClient, dst, static_cast<uint16_t>(dport));
    EXPECT_EQ(r.verdict, TraceVerdict::DNAT) << dst.str();
    EXPECT_EQ(r.endpoints, kThree) << dst.str();
    EXPECT_TRUE(r.masquerade) << dst.str();
  }
}

TEST(Compile, ExternalTrafficPolicyLocal) {
  Fixture f;
  auto sp = port("web", "10.96.0.10", 80, kThree, kLocalOne);
  sp.external_traffic_policy = TrafficPolicy::Local;
  sp.node_port = 30080;
  sp.load_balancer_ips = {ip("198.51.100.60")};
  f.ports.push_back(sp);
  f.build();
  for (auto [dst, dport] : {std::pair{ip("198.51.100.60"), 80}, {kNode, 30080}}) {
    auto external = f.send(kExternalClient, dst, static_cast<uint16_t>(dport));
    EXPECT_EQ(external.verdict, TraceVerdict::DNAT);
    EXPECT_EQ(external.endpoints, kLocalOne) << "external clients only reach local pods";
    EXPECT_FALSE(external.masquerade) << "the client address is preserved";
    auto pod = f.send(kPodClient, dst, static_cast<uint16_t>(dport));
    EXPECT_EQ(pod.endpoints, kThree) << "pods short-circuit to every endpoint";
    EXPECT_FALSE(pod.masquerade);
    auto node = f.send(kNode, dst, static_cast<uint16_t>(dport));
    EXPECT_EQ(node.endpoints, kThree);
    EXPECT_TRUE(node.masquerade) << "the node's own traffic is masqueraded";
  }
}

TEST(Compile, ExternalTrafficPolicyLocalWithoutLocalEndpointsDropsExternalClients) {
  Fixture f;
  auto sp = port("web", "10.96.0.10", 80, {ep("10.244.2.4", 8080)}, {});
  sp.external_traffic_policy = TrafficPolicy::Local;
  sp.node_port = 30080;
  f.ports.push_back(sp);
  f.build();
  EXPECT_EQ(f.send(kExternalClient, kNode, 30080).verdict, TraceVerdict::DROP);
  EXPECT_EQ(f.send(kPodClient, kNode, 30080).verdict, TraceVerdict::DNAT);
}

TEST(Compile, LoadBalancerSourceRangesFilterOnlyLoadBalancerIps) {
  Fixture f;
  auto sp = port("lb", "10.96.0.20", 80, kThree);
  sp.node_port = 30081;
  sp.load_balancer_ips = {ip("198.51.100.60")};
  sp.load_balancer_source_ranges = {cidr("198.51.100.0/28")};
  f.ports.push_back(sp);
  f.build();
  EXPECT_EQ(f.send(ip("198.51.100.7"), ip("198.51.100.60"), 80).verdict, TraceVerdict::DNAT);
  EXPECT_EQ(f.send(ip("198.51.100.77"), ip("198.51.100.60"), 80).verdict, TraceVerdict::DROP);
  EXPECT_EQ(f.send(ip("198.51.100.77"), kNode, 30081).verdict, TraceVerdict::DNAT) << "NodePort is not filtered";
}

TEST(Compile, SourceRangeContainingNodeIpAdmitsTheNode) {
  Fixture f;
  auto sp = port("lb", "10.96.0.20", 80, kThree);
  sp.load_balancer_ips = {ip("198.51.100.60")};
  sp.load_balancer_source_ranges = {cidr("203.0.113.0/24")};
  f.ports.push_back(sp);
  f.build();
  EXPECT_EQ(f.send(kNode, ip("198.51.100.60"), 80).verdict, TraceVerdict::DNAT);
  EXPECT_EQ(f.send(kExternalClient, ip("198.51.100.60"), 80).verdict, TraceVerdict::DROP);
}

TEST(Compile, HairpinMasqueradesOnlyWhenLandingOnItself) {
  Fixture f;
  f.ports.push_back(port("web", "10.96.0.10", 80, kThree, {ep("10.244.1.3", 8080)}));
  f.build();
  auto r = f.send(ip("10.244.1.3"), ip("10.96.0.10"), 80);
  EXPECT_EQ(r.verdict, TraceVerdict::DNAT);
  EXPECT_TRUE(r.masquerade);
  EXPECT_EQ(r.masquerade_endpoints, (std::vector<EndpointAddress>{ep("10.244.1.3", 8080)}));
  // Another client is not masqueraded, whichever endpoint it lands on.
  auto other = f.send(ip("10.244.1.2"), ip("10.96.0.10"), 80);
  EXPECT_EQ(other.masquerade_endpoints, (std::vector<EndpointAddress>{ep("10.244.1.2", 8080)}));
}

// kube-proxy masquerades hairpin for every endpoint, not only for those whose
// slice names this node: a selectorless service's endpoints have no
// nodeName, and a pod's connection may reach this node from anywhere.
TEST(Compile, HairpinMasqueradesEveryEndpointWhereverItsSliceSaysItRuns) {
  Fixture f;
  // 10.244.2.4 is in no local list (remote, or no nodeName); 10.244.7.7 is
  // only in the local list (the cluster list is narrowed by topology hints).
  f.ports.push_back(port("web", "10.96.0.10", 80, kThree, {ep("10.244.7.7", 8080)}));
  auto v6 = port("web", "fd00:10:96::10", 80, {ep("fd00:10:244:2::4", 8080)});
  f.ports.push_back(v6);
  f.build();
  for (const char* client : {"10.244.2.4", "10.244.1.2"}) {
    auto r = f.send(ip(client), ip("10.96.0.10"), 80);
    EXPECT_EQ(r.masquerade_endpoints, (std::vector<EndpointAddress>{ep(client, 8080)})) << client;
  }
  auto r6 = f.send(ip("fd00:10:244:2::4"), ip("fd00:10:96::10"), 80);
  EXPECT_TRUE(r6.masquerade);
  EXPECT_EQ(r6.masquerade_endpoints, (std::vector<EndpointAddress>{ep("fd00:10:244:2::4", 8080)}));
  // One pair per endpoint address, looked up by one rule: the set, not rules.
  auto pairs = [&](model::IPFamily family) {
    std::vector<std::string> out;
    for (const auto& e : f.compiled.ruleset.find_table(family)->find_set(names::kHairpin)->elements)
      out.push_back(std::get<IPAddress>(e.key[0]).str() + " . " + std::get<IPAddress>(e.key[1]).str());
    return out;
  };
  EXPECT_EQ(pairs(model::IPFamily::V4),
            (std::vector<std::string>{"10.244.1.2 . 10.244.1.2", "10.244.1.3 . 10.244.1.3", "10.244.2.4 . 10.244.2.4",
                                      "10.244.7.7 . 10.244.7.7"}));
  EXPECT_EQ(pairs(model::IPFamily::V6), (std::vector<std::string>{"fd00:10:244:2::4 . fd00:10:244:2::4"}));
}

TEST(Compile, SessionAffinityUsesPerEndpointDynamicSets) {
  Fixture f;
  auto sp = port("sticky", "10.96.0.30", 80, kThree);
  sp.affinity_timeout_seconds = 600;
  f.ports.push_back(sp);
  f.build();
  const auto* table = f.compiled.ruleset.find_table(model::IPFamily::V4);
  ASSERT_NE(table, nullptr);
  int affinity_sets = 0;
  for (const auto& s : table->sets) {
    if (s.dynamic) {
      ++affinity_sets;
      EXPECT_EQ(s.timeout_seconds, 600u);
    }
  }
  EXPECT_EQ(affinity_sets, 3);
  auto r = f.send(kPodClient, ip("10.96.0.30"), 80);
  EXPECT_EQ(r.verdict, TraceVerdict::DNAT);
  EXPECT_EQ(r.endpoints, kThree);
}

TEST(Compile, TcpAndUdpOnTheSamePortAreIndependent) {
  Fixture f;
  f.ports.push_back(port("dns", "10.96.0.53", 53, {ep("10.244.1.2", 53)}, {}, Protocol::UDP));
  f.ports.push_back(port("dns", "10.96.0.53", 53, {ep("10.244.1.3", 5353)}, {}, Protocol::TCP));
  f.ports[0].name.port_name = "dns";
  f.ports[1].name.port_name = "dns-tcp";
  f.build();
  EXPECT_EQ(f.send(kPodClient, ip("10.96.0.53"), 53, Protocol::UDP).endpoints,
            (std::vector<EndpointAddress>{ep("10.244.1.2", 53)}));
  EXPECT_EQ(f.send(kPodClient, ip("10.96.0.53"), 53, Protocol::TCP).endpoints,
            (std::vector<EndpointAddress>{ep("10.244.1.3", 5353)}));
}

// Localhost NodePorts (KEP-6032): TCP is the userspace relay's (nothing in
// the rules: the connection reaches the relay's socket on 127.0.0.1), UDP
// and SCTP NodePorts are refused on the loopback range, other UDP to it is
// left alone.
TEST(Compile, LocalhostNodePortsRefuseUdpAndSctpOnLoopbackOnly) {
  Fixture f;
  f.node.localhost_nodeport_ranges = {cidr("127.0.0.0/8")};
  auto web = port("web", "10.96.0.10", 80, kThree);
  web.node_port = 30080;
  auto dns = port("dns", "10.96.0.53", 53, {ep("10.244.1.2", 53)}, {}, Protocol::UDP);
  dns.node_port = 30053;
  auto sig = port("sig", "10.96.0.54", 9000, {}, {}, Protocol::SCTP);
  sig.node_port = 30054;
  f.ports = {web, dns, sig};
  f.build();
  const IPAddress loopback = ip("127.0.0.1");
  f.node.node_ips.push_back(loopback);  // local, and the client is the node (output hook)
  EXPECT_EQ(f.send(loopback, loopback, 30053, Protocol::UDP).verdict, TraceVerdict::REJECT);
  EXPECT_EQ(f.send(loopback, ip("127.0.0.9"), 30053, Protocol::UDP).verdict, TraceVerdict::REJECT);
  EXPECT_EQ(f.send(loopback, loopback, 30054, Protocol::SCTP).verdict, TraceVerdict::REJECT);
  EXPECT_EQ(f.send(loopback, loopback, 30080, Protocol::TCP).verdict, TraceVerdict::ACCEPT) << "the relay's";
  EXPECT_EQ(f.send(loopback, loopback, 30099, Protocol::UDP).verdict, TraceVerdict::ACCEPT) << "not a NodePort";
  EXPECT_EQ(f.send(loopback, loopback, 30080, Protocol::UDP).verdict, TraceVerdict::ACCEPT) << "a TCP NodePort";
  // The node IP still serves the UDP NodePort.
  EXPECT_EQ(f.send(kExternalClient, kNode, 30053, Protocol::UDP).verdict, TraceVerdict::DNAT);
  const std::string text = render_nft(f.compiled.ruleset);
  for (const char* proto : {"udp", "sctp"}) {
    EXPECT_NE(text.find("ip daddr 127.0.0.0/8 meta l4proto " + std::string(proto) +
                        " meta l4proto . th dport @localhost-nodeport-reject-ports counter name "
                        "\"localhost-nodeport-rejected-" +
                        proto + "\" reject"),
              std::string::npos)
        << text;
  }
  // Counted per protocol in the IPv4 table (kube-proxy's metric is per
  // family and protocol).
  ASSERT_EQ(f.compiled.ruleset.tables.size(), 2u);
  // (The per-service counters are there too.)
  const auto localhost_counters = [](const ir::Table& table) {
    std::vector<ir::Counter> out;
    for (const auto& c : table.counters)
      if (c.name.starts_with("localhost-")) out.push_back(c);
    return out;
  };
  EXPECT_EQ(localhost_counters(f.compiled.ruleset.tables[0]),
            (std::vector<ir::Counter>{{"localhost-nodeport-rejected-sctp"}, {"localhost-nodeport-rejected-udp"}}));
  EXPECT_TRUE(localhost_counters(f.compiled.ruleset.tables[1]).empty());
  // IPv6 has no range: no set, no rule.
  EXPECT_EQ(text.find("table ip6 svcproxy {\n\tset localhost-nodeport-reject-ports"), std::string::npos);
  EXPECT_EQ(text.find("ip6 daddr ::1"), std::string::npos) << text;
}

TEST(Compile, WithoutLocalhostNodePortsNoLoopbackRejectExists) {
  Fixture f;
  auto dns = port("dns", "10.96.0.53", 53, {ep("10.244.1.2", 53)}, {}, Protocol::UDP);
  dns.node_port = 30053;
  f.ports = {dns};
  f.build();
  EXPECT_EQ(render_nft(f.compiled.ruleset).find("localhost-nodeport"), std::string::npos);
}

// --nodeport-addresses 0.0.0.0/0: every local address but loopback (a
// connection from 127.0.0.1 DNATed to a pod would be dropped by the kernel;
// kube-proxy's noLocalhost).
TEST(Compile, EveryLocalAddressModeLeavesLoopbackOut) {
  Fixture f;
  f.node.nodeport_all_local_v4 = true;
  auto web = port("web", "10.96.0.10", 80, kThree);
  web.node_port = 30080;
  f.ports = {web};
  f.build();
  EXPECT_EQ(f.send(kExternalClient, kNode, 30080).verdict, TraceVerdict::DNAT);
  f.node.node_ips.push_back(ip("127.0.0.1"));  // loopback is local (the trace's fib)
  EXPECT_EQ(f.send(ip("127.0.0.1"), ip("127.0.0.1"), 30080).verdict, TraceVerdict::ACCEPT);
  EXPECT_NE(render_nft(f.compiled.ruleset).find("fib daddr type local ip daddr != 127.0.0.0/8 jump nodeports"),
            std::string::npos);
}

TEST(Compile, Ipv6ServicesLiveInTheIp6Table) {
  Fixture f;
  f.ports.push_back(port("web6", "fd00:10:96::10", 80, {ep("fd00:10:244:1::2", 8080)}));
  f.build();
  auto r = f.send(ip("fd00:10:244:9::9"), ip("fd00:10:96::10"), 80);
  EXPECT_EQ(r.verdict, TraceVerdict::DNAT);
  EXPECT_EQ(r.endpoints, (std::vector<EndpointAddress>{ep("fd00:10:244:1::2", 8080)}));
  EXPECT_EQ(f.send(ip("fd00:10:244:9::9"), ip("fd00:10:96::99"), 80).verdict, TraceVerdict::DROP);
  const auto* v4 = f.compiled.ruleset.find_table(model::IPFamily::V4);
  ASSERT_NE(v4, nullptr);
  EXPECT_TRUE(v4->find_set(names::kServiceIPs)->elements.empty());
}

TEST(Compile, ConflictingClusterIpKeepsTheFirstAndWarns) {
  Fixture f;
  f.ports.push_back(port("a", "10.96.0.10", 80, {ep("10.244.1.2", 8080)}));
  f.ports.push_back(port("b", "10.96.0.10", 80, {ep("10.244.1.3", 8080)}));
  f.build();
  ASSERT_EQ(f.compiled.warnings.size(), 1u);
  EXPECT_NE(f.compiled.warnings[0].find("default/b"), std::string::npos);
  EXPECT_NE(f.compiled.warnings[0].find("default/a"), std::string::npos);
  EXPECT_EQ(f.send(kPodClient, ip("10.96.0.10"), 80).endpoints,
            (std::vector<EndpointAddress>{ep("10.244.1.2", 8080)}));
}

TEST(Compile, OutputIsDeterministicWhateverTheInputOrder) {
  Fixture f;
  for (int i = 0; i < 50; ++i) {
    auto sp = port(("svc" + std::to_string(i)).c_str(), ("10.96.1." + std::to_string(i + 1)).c_str(), 80,
                   {ep(("10.244.3." + std::to_string(i + 1)).c_str(), 8080)});
    sp.node_port = static_cast<uint16_t>(30000 + i);
    f.ports.push_back(sp);
  }
  f.build();
  const std::string first = render_nft(f.compiled.ruleset);
  std::mt19937 rng(7);
  std::shuffle(f.ports.begin(), f.ports.end(), rng);
  f.build();
  EXPECT_EQ(render_nft(f.compiled.ruleset), first);
}

TEST(Compile, SetsAndMapBindingsDoNotGrowWithServices) {
  // The kernel's cost per transaction grows with sets and map bindings, so
  // their number must depend on the distinct endpoint counts, not on the
  // number of services.
  auto count_sets = [](int services) {
    Fixture f;
    for (int i = 0; i < services; ++i) {
      std::vector<EndpointAddress> eps;
      for (int e = 0; e <= i % 3; ++e)
        eps.push_back({IPAddress::v4(10, 244, static_cast<uint8_t>(i / 250), static_cast<uint8_t>(i % 250)),
                       static_cast<uint16_t>(8080 + e)});
      auto sp = port(("svc" + std::to_string(i)).c_str(), "10.96.0.1", 80, eps);
      sp.cluster_ip = IPAddress::v4(10, 96, static_cast<uint8_t>(i / 250), static_cast<uint8_t>(i % 250 + 1));
      f.ports.push_back(sp);
    }
    f.build();
    return f.compiled.ruleset.find_table(model::IPFamily::V4)->sets.size();
  };
  EXPECT_EQ(count_sets(30), count_sets(3000));
}

TEST(Compile, ChainNamesAreStableAndValidNftIdentifiers) {
  model::ServicePortName name{{"kube-system", "kube-dns"}, "dns-tcp", Protocol::TCP, model::IPFamily::V6};
  const std::string id = service_port_id(name);
  EXPECT_EQ(id, service_port_id(name));
  EXPECT_EQ(id.substr(8), "-kube-system/kube-dns/tcp/dns-tcp");
  for (char c : id) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || std::strchr("/-_.", c)) << c;
  name.family = model::IPFamily::V4;
  EXPECT_NE(service_port_id(name), id) << "families get distinct ids";
}

// ---- --detect-local-mode BridgeInterface / InterfaceNamePrefix ------------

Fixture interface_fixture(model::LocalDetect mode, const char* name) {
  Fixture f;
  f.node.local_detect = mode;
  f.node.local_interface = name;
  f.ports.push_back(port("web", "10.96.0.10", 80, kThree, kLocalOne));
  auto sticky = port("sticky", "10.96.0.30", 80, kThree, kLocalOne);
  sticky.affinity_timeout_seconds = 600;
  f.ports.push_back(sticky);
  auto local = port("lb-local", "10.96.0.12", 443, kThree, kLocalOne);
  local.external_traffic_policy = TrafficPolicy::Local;
  local.node_port = 30443;
  local.load_balancer_ips = {ip("198.51.100.60")};
  f.ports.push_back(local);
  auto sticky_local = port("sticky-local", "10.96.0.13", 443, kThree, kLocalOne);
  sticky_local.external_traffic_policy = TrafficPolicy::Local;
  sticky_local.load_balancer_ips = {ip("198.51.100.61")};
  sticky_local.affinity_timeout_seconds = 600;
  f.ports.push_back(sticky_local);
  f.ports.push_back(port("web6", "fd00:10:96::10", 80, {ep("fd00:10:244:1::2", 8080)}));
  f.build();
  return f;
}

// Every rule line of the rendered ruleset that mentions `what`.
std::vector<std::string> lines_with(const CompileResult& compiled, const std::string& what) {
  std::vector<std::string> out;
  std::istringstream text(render_nft(compiled.ruleset));
  for (std::string line; std::getline(text, line);) {
    if (line.find(what) == std::string::npos) continue;
    line.erase(0, line.find_first_not_of('\t'));
    out.push_back(line);
  }
  return out;
}

TEST(Compile, BridgeInterfaceMatchesTheInputInterfaceWhereClusterCidrMatchedTheSource) {
  auto f = interface_fixture(model::LocalDetect::BridgeInterface, "cbr0");
  // Both families (an interface has no family), in the ClusterIP class chain
  // and affinity chain (not local: masquerade) and the eTP=Local class and
  // affinity chains (local: short-circuit); the cluster-cidrs set stays,
  // looked up by no rule.
  EXPECT_EQ(lines_with(f.compiled, "iifname"),
            (std::vector<std::string>{
                // ip: cluster-ip, then ext-... of sticky-local (eTP=Local with affinity)
                "iifname != \"cbr0\" jump mark-for-masquerade",
                "iifname \"cbr0\" goto affinity-cluster-XQFGNDJR-default/sticky-local/tcp/p",
                "iifname \"cbr0\" goto dnat-shortcut-maps",  // external-local
                "iifname \"cbr0\" goto dnat-nodeport-shortcut-maps",  // nodeport-external-local
                "iifname != \"cbr0\" jump mark-for-masquerade",  // svc-... of sticky
                "iifname != \"cbr0\" jump mark-for-masquerade",  // svc-... of sticky-local
                // ip6: cluster-ip, external-local, nodeport-external-local
                "iifname != \"cbr0\" jump mark-for-masquerade",
                "iifname \"cbr0\" goto dnat-shortcut-maps",
                "iifname \"cbr0\" goto dnat-nodeport-shortcut-maps",
            }))
      << render_nft(f.compiled.ruleset);
  EXPECT_TRUE(lines_with(f.compiled, "@cluster-cidrs").empty());
  EXPECT_EQ(f.compiled.ruleset.find_table(model::IPFamily::V4)->find_set(names::kClusterCIDRs)->elements.size(), 1u);
}

TEST(Compile, InterfaceNamePrefixRendersAsNftListsIt) {
  auto f = interface_fixture(model::LocalDetect::InterfaceNamePrefix, "veth");
  const auto lines = lines_with(f.compiled, "iifname");
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.front(), "iifname != \"veth*\" jump mark-for-masquerade");
  EXPECT_EQ(lines[2], "iifname \"veth*\" goto dnat-shortcut-maps");
  EXPECT_EQ(lines, lines_with(f.compiled, "veth*\""));
  // The JSON dump renders rules with the same text.
  EXPECT_NE(render_json(f.compiled.ruleset).find("\"iifname != \\\"veth*\\\" jump mark-for-masquerade\""),
            std::string::npos);
}

TEST(Compile, BridgeInterfaceDecidesMasqueradeByInputInterfaceNotSource) {
  auto f = interface_fixture(model::LocalDetect::BridgeInterface, "cbr0");
  for (const char* vip : {"10.96.0.10", "10.96.0.30"}) {  // plain and affinity
    f.iif = "cbr0";
    auto pod = f.send(kPodClient, ip(vip), 80);
    EXPECT_EQ(pod.verdict, TraceVerdict::DNAT) << vip;
    EXPECT_FALSE(pod.masquerade) << vip << ": from the bridge: a local pod";
    EXPECT_TRUE(pod.notes.empty());
    f.iif = "cbr01";
    EXPECT_TRUE(f.send(kPodClient, ip(vip), 80).masquerade) << vip << ": the name must match exactly";
    f.iif = "eth0";
    EXPECT_TRUE(f.send(kPodClient, ip(vip), 80).masquerade) << vip << ": a pod address off the bridge is not local";
    f.iif = "cbr0";
    EXPECT_FALSE(f.send(kExternalClient, ip(vip), 80).masquerade) << vip << ": any source from the bridge is local";
  }
  f.iif = "cbr0";
  auto pod6 = f.send(ip("fd00:10:244:9::9"), ip("fd00:10:96::10"), 80);
  EXPECT_FALSE(pod6.masquerade);
  f.iif = "eth0";
  EXPECT_TRUE(f.send(ip("fd00:10:244:9::9"), ip("fd00:10:96::10"), 80).masquerade);
  // The node's own traffic has no input interface: not local, masqueraded.
  f.iif.reset();
  auto node = f.send(kNode, ip("10.96.0.10"), 80);
  EXPECT_TRUE(node.masquerade);
  EXPECT_TRUE(node.notes.empty()) << "locally generated packets have iifname \"\"";
}

TEST(Compile, InterfaceNamePrefixShortCircuitsExternalTrafficPolicyLocal) {
  auto f = interface_fixture(model::LocalDetect::InterfaceNamePrefix, "veth");
  for (auto [dst, dport] : {std::pair{ip("198.51.100.60"), 443}, {kNode, 30443}, {ip("198.51.100.61"), 443}}) {
    f.iif = "veth1a2b";
    auto pod = f.send(kPodClient, dst, static_cast<uint16_t>(dport));
    EXPECT_EQ(pod.endpoints, kThree) << dst.str() << ": pods short-circuit to every endpoint";
    EXPECT_FALSE(pod.masquerade);
    f.iif = "eth0";
    auto external = f.send(kPodClient, dst, static_cast<uint16_t>(dport));
    EXPECT_EQ(external.endpoints, kLocalOne) << dst.str() << ": not from a pod interface: local endpoints only";
    EXPECT_FALSE(external.masquerade);
    f.iif = "vet";
    EXPECT_EQ(f.send(kPodClient, dst, static_cast<uint16_t>(dport)).endpoints, kLocalOne) << "shorter than the prefix";
  }
  f.iif = "veth0";
  EXPECT_FALSE(f.send(kExternalClient, ip("10.96.0.10"), 80).masquerade);
  f.iif = "eth0";
  EXPECT_TRUE(f.send(kPodClient, ip("10.96.0.10"), 80).masquerade);
}

TEST(Compile, TraceWithoutAnInterfaceTakesIifnameAsNotMatchingAndSaysSo) {
  auto f = interface_fixture(model::LocalDetect::BridgeInterface, "cbr0");
  auto r = f.send(kExternalClient, ip("10.96.0.10"), 80);
  EXPECT_EQ(r.verdict, TraceVerdict::DNAT);
  EXPECT_FALSE(r.masquerade) << "iifname != \"cbr0\" is not taken as matching either";
  ASSERT_EQ(r.notes.size(), 1u);
  EXPECT_NE(r.to_text().find("note: iifname matches were taken as not matching"), std::string::npos) << r.to_text();
  EXPECT_NE(r.to_json().find("\"notes\": [\"iifname matches"), std::string::npos) << r.to_json();
  // ClusterCIDR mode: no iifname match, no note, JSON as before.
  Fixture plain;
  plain.ports.push_back(port("web", "10.96.0.10", 80, kThree));
  plain.build();
  auto before = plain.send(kExternalClient, ip("10.96.0.10"), 80);
  EXPECT_TRUE(before.notes.empty());
  EXPECT_EQ(before.to_json().find("notes"), std::string::npos);
}

TEST(Compile, ClusterCidrModeIsUnchangedByTheInterfaceSupport) {
  Fixture f;
  f.ports.push_back(port("web", "10.96.0.10", 80, kThree));
  f.build();
  EXPECT_EQ(lines_with(f.compiled, "cluster-cidrs"),
            (std::vector<std::string>{"set cluster-cidrs {", "ip saddr != @cluster-cidrs jump mark-for-masquerade",
                                      "ip saddr @cluster-cidrs goto dnat-shortcut-maps",
                                      "ip saddr @cluster-cidrs goto dnat-nodeport-shortcut-maps", "set cluster-cidrs {",
                                      "ip6 saddr != @cluster-cidrs jump mark-for-masquerade",
                                      "ip6 saddr @cluster-cidrs goto dnat-shortcut-maps",
                                      "ip6 saddr @cluster-cidrs goto dnat-nodeport-shortcut-maps"}))
      << render_nft(f.compiled.ruleset);
  EXPECT_TRUE(lines_with(f.compiled, "iifname").empty());
}

}  // namespace
}  // namespace svcproxy::dataplane
