// --nodeport-addresses and the node IPs resolved against a fixed list of
// addresses (the seam), never the interfaces of the machine running the test.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "proxy/local_addresses.h"
#include "proxy/node_flags.h"
#include "tests/support/ip.h"

namespace svcproxy::proxy {
namespace {

using model::IPAddress;

using test_support::ip;

std::vector<IPAddress> ips(std::initializer_list<const char*> texts) {
  std::vector<IPAddress> out;
  for (const char* t : texts) out.push_back(ip(t));
  return out;
}

NodeFlags parse_flags(std::vector<std::string> args) {
  CLI::App app;
  NodeFlags flags;
  add_node_flags(app, flags);
  args.insert(args.begin(), "svcproxy");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  return flags;
}

struct Resolved {
  model::NodeConfig node;
  std::vector<std::string> warnings;
};

Resolved resolve_with(std::vector<std::string> args, const LocalAddresses& addresses,
                      const model::ClusterState& cluster = {}) {
  Resolved out;
  out.node = resolve_node_config(parse_flags(std::move(args)), cluster, addresses, &out.warnings);
  return out;
}

// A workstation's interfaces: nothing of the node's.
const FixedAddresses kWorkstation(ips({"127.0.0.1", "10.1.2.3", "::1", "2001:db8:1::3"}), "the fake interfaces");

model::ClusterState cluster_with_node(const char* name, std::vector<IPAddress> internal_ips) {
  model::ClusterState cluster;
  model::Node node;
  node.name = name;
  node.internal_ips = std::move(internal_ips);
  cluster.nodes.push_back(node);
  return cluster;
}

TEST(NodePortAddresses, CidrsSelectAmongTheGivenAddresses) {
  const FixedAddresses node(ips({"127.0.0.1", "192.168.0.2", "192.168.1.7", "10.0.0.9", "2001:db8::2"}), "fake");
  const auto r = resolve_with({"--nodeport-addresses", "192.168.0.0/16,2001:db8::/64"}, node);
  EXPECT_EQ(r.node.nodeport_ips, ips({"192.168.0.2", "192.168.1.7", "2001:db8::2"}));
  EXPECT_TRUE(r.warnings.empty());
  EXPECT_FALSE(r.node.nodeport_all_local_v4);
  // `primary` adds the node IPs (here: the first address per family).
  const auto both = resolve_with({"--nodeport-addresses", "primary,192.168.1.0/24"}, node);
  EXPECT_EQ(both.node.nodeport_ips, ips({"10.0.0.9", "192.168.1.7", "2001:db8::2"}));
}

TEST(NodePortAddresses, ZeroPrefixMeansEveryLocalAddressOfItsFamily) {
  const auto r = resolve_with({"--nodeport-addresses", "0.0.0.0/0"}, kWorkstation);
  EXPECT_TRUE(r.node.nodeport_all_local_v4);
  EXPECT_FALSE(r.node.nodeport_all_local_v6);
  EXPECT_TRUE(r.node.nodeport_ips.empty());
  EXPECT_TRUE(r.warnings.empty());
}

TEST(NodePortAddresses, ACidrThatSelectsNothingIsWarnedAboutOnceNamingIt) {
  const FixedAddresses node(ips({"192.168.0.2"}), "--node-ip 192.168.0.2");
  const auto r = resolve_with({"--nodeport-addresses", "192.168.0.2/32,10.99.0.0/16,10.99.0.0/16"}, node);
  EXPECT_EQ(r.node.nodeport_ips, ips({"192.168.0.2"}));
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0],
            "--nodeport-addresses 10.99.0.0/16: selects none of the node's addresses (--node-ip 192.168.0.2), so no "
            "NodePort answers on an address from it");
}

std::vector<model::CIDR> cidrs(std::initializer_list<const char*> texts) {
  std::vector<model::CIDR> out;
  for (const char* t : texts) out.push_back(*model::CIDR::parse(t));
  return out;
}

// KEP-6032: `localhost` names both loopback ranges and turns localhost
// NodePorts on for both families; loopback is never a NodePort address of
// the nftables rules (nodeport_ips), and no warning is due.
TEST(LocalhostNodePortFlags, LocalhostKeywordTurnsOnBothFamilies) {
  const auto r = resolve_with({"--nodeport-addresses", "primary,localhost"}, kWorkstation);
  EXPECT_EQ(r.node.localhost_nodeport_ranges, cidrs({"127.0.0.0/8", "::1/128"}));
  EXPECT_EQ(localhost_relay_addresses(r.node), ips({"127.0.0.1", "::1"}));
  EXPECT_EQ(r.node.nodeport_ips, ips({"10.1.2.3", "2001:db8:1::3"}));  // primary: the first per family
  EXPECT_TRUE(r.warnings.empty());
}

TEST(LocalhostNodePortFlags, AnExplicitLoopbackCidrTurnsOnItsFamilyOnly) {
  const auto r = resolve_with({"--nodeport-addresses", "127.0.0.1/32"}, kWorkstation);
  EXPECT_EQ(r.node.localhost_nodeport_ranges, cidrs({"127.0.0.1/32"}));
  EXPECT_EQ(localhost_relay_addresses(r.node), ips({"127.0.0.1"}));
  EXPECT_TRUE(r.node.nodeport_ips.empty());
  EXPECT_TRUE(r.warnings.empty());
  const auto v6 = resolve_with({"--nodeport-addresses", "::1/128"}, kWorkstation);
  EXPECT_EQ(localhost_relay_addresses(v6.node), ips({"::1"}));
}

TEST(LocalhostNodePortFlags, TheWidestRangePerFamilyIsKept) {
  const auto r = resolve_with({"--nodeport-addresses", "127.0.0.1/32,localhost,127.0.0.0/16"}, kWorkstation);
  EXPECT_EQ(r.node.localhost_nodeport_ranges, cidrs({"127.0.0.0/8", "::1/128"}));
}

// `all` and /0 include loopback only by arithmetic: kube-proxy does not
// count them as naming it (its ContainsExplicitLoopback), neither do we.
TEST(LocalhostNodePortFlags, AllAndZeroPrefixesDoNotTurnItOn) {
  const auto all = resolve_with({"--nodeport-addresses", "all"}, kWorkstation);
  EXPECT_TRUE(all.node.nodeport_all_local_v4);
  EXPECT_TRUE(all.node.nodeport_all_local_v6);
  EXPECT_TRUE(all.node.localhost_nodeport_ranges.empty());
  EXPECT_TRUE(
      resolve_with({"--nodeport-addresses", "0.0.0.0/0,::/0"}, kWorkstation).node.localhost_nodeport_ranges.empty());
  const auto both = resolve_with({"--nodeport-addresses", "all,localhost"}, kWorkstation);
  EXPECT_TRUE(both.node.nodeport_all_local_v4);
  EXPECT_EQ(both.node.localhost_nodeport_ranges, cidrs({"127.0.0.0/8", "::1/128"}));
}

TEST(LocalhostNodePortFlags, OffByDefaultAndWithPrimary) {
  EXPECT_TRUE(resolve_with({}, kWorkstation).node.localhost_nodeport_ranges.empty());
  EXPECT_TRUE(resolve_with({"--nodeport-addresses", "primary"}, kWorkstation).node.localhost_nodeport_ranges.empty());
  // A node IP on loopback is not a NodePort address either.
  EXPECT_TRUE(resolve_with({"--node-ip", "127.0.0.1"}, kWorkstation).node.nodeport_ips.empty());
}

// A wide CIDR that also covers 127.0.0.1 names loopback: kube-proxy's
// relay would listen there too. Its loopback part is the whole /8.
TEST(LocalhostNodePortFlags, AWideCidrCoveringTheRelayAddressSelectsTheLoopbackRange) {
  const auto r = resolve_with({"--nodeport-addresses", "0.0.0.0/1"}, kWorkstation);
  EXPECT_EQ(r.node.localhost_nodeport_ranges, cidrs({"127.0.0.0/8"}));
  EXPECT_EQ(r.node.nodeport_ips, ips({"10.1.2.3"}));
}

TEST(LocalhostNodePortFlags, OtherLoopbackAddressesAreWarnedAbout) {
  const FixedAddresses node(ips({"127.0.0.1", "127.0.0.2", "10.1.2.3"}), "fake");
  const auto r = resolve_with({"--nodeport-addresses", "127.0.0.2/32"}, node);
  EXPECT_TRUE(r.node.localhost_nodeport_ranges.empty());
  EXPECT_TRUE(r.node.nodeport_ips.empty());
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0],
            "--nodeport-addresses 127.0.0.2/32: selects only loopback addresses other than 127.0.0.1 and ::1, where "
            "NodePorts are not served");
}

TEST(LocalhostNodePortFlags, UnknownKeywordsAreRefusedNamingTheFlag) {
  try {
    resolve_with({"--nodeport-addresses", "primary,loopback"}, kWorkstation);
    FAIL() << "no FlagError";
  } catch (const FlagError& e) {
    EXPECT_EQ(std::string(e.what()),
              "--nodeport-addresses: invalid CIDR \"loopback\" (want CIDRs, 'primary', 'localhost' or 'all')");
  }
}

TEST(OfflineNodeAddresses, NodeIpFlagIsTheNodesAddressNotTheWorkstations) {
  // rules --manifests … --node-ip 192.168.0.2 --nodeport-addresses 192.168.0.2/32 on a workstation.
  const auto args = std::vector<std::string>{"--node-ip", "192.168.0.2", "--nodeport-addresses", "192.168.0.2/32"};
  const auto node = offline_node_addresses(parse_flags(args), {});
  EXPECT_EQ(node.list(), ips({"192.168.0.2"}));
  EXPECT_EQ(node.origin(), "--node-ip 192.168.0.2");
  const auto r = resolve_with(args, node);
  EXPECT_EQ(r.node.nodeport_ips, ips({"192.168.0.2"}));
  EXPECT_TRUE(r.warnings.empty());
  // What the workstation's interfaces would have given: nothing, the bug.
  EXPECT_TRUE(resolve_with(args, kWorkstation).node.nodeport_ips.empty());
}

TEST(OfflineNodeAddresses, ElseEveryInternalIpOfTheNode) {
  const auto cluster = cluster_with_node("node-a", ips({"10.0.0.5", "10.0.1.5", "fd00::5"}));
  const auto args = std::vector<std::string>{"--hostname-override", "Node-A", "--nodeport-addresses", "10.0.1.0/24"};
  const auto node = offline_node_addresses(parse_flags(args), cluster);
  EXPECT_EQ(node.list(), ips({"10.0.0.5", "10.0.1.5", "fd00::5"}));
  EXPECT_EQ(node.origin(), "the InternalIPs of Node node-a: 10.0.0.5, 10.0.1.5, fd00::5");
  const auto r = resolve_with(args, node, cluster);
  EXPECT_EQ(r.node.node_ips, ips({"10.0.0.5", "fd00::5"})) << "the first InternalIP per family";
  EXPECT_EQ(r.node.nodeport_ips, ips({"10.0.1.5"}));
  // --node-ip wins over the Node: its InternalIPs are then not the node's.
  const auto flagged = offline_node_addresses(
      parse_flags({"--hostname-override", "node-a", "--node-ip", "192.168.0.2"}), cluster);
  EXPECT_EQ(flagged.list(), ips({"192.168.0.2"}));
}

TEST(OfflineNodeAddresses, NoNodeIpAtAllIsWarnedAbout) {
  const auto args = std::vector<std::string>{"--hostname-override", "node-a"};
  const auto node = offline_node_addresses(parse_flags(args), cluster_with_node("node-b", ips({"10.0.0.6"})));
  EXPECT_TRUE(node.list().empty());
  const auto r = resolve_with(args, node);
  EXPECT_TRUE(r.node.node_ips.empty()) << "never the workstation's addresses";
  EXPECT_TRUE(r.node.nodeport_ips.empty());
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0],
            "--nodeport-addresses primary: this node has no node IP (no --node-ip, and no Node node-a with an "
            "InternalIP), so no NodePort answers on a primary IP");
}

TEST(InterfaceAddresses, ListsSortedWithoutDuplicates) {
  // The real implementation, on whatever this machine has: the shape only.
  const auto list = InterfaceAddresses().list();
  EXPECT_TRUE(std::is_sorted(list.begin(), list.end()));
  EXPECT_EQ(std::adjacent_find(list.begin(), list.end()), list.end());
}

}  // namespace
}  // namespace svcproxy::proxy
