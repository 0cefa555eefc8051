// The netlink backend against the real kernel. Every kernel test forks a child
// that enters a fresh network namespace of its own (run_in_fresh_netns): the
// host's ruleset is never read or written. They need root (CAP_NET_ADMIN and
// CAP_SYS_ADMIN for unshare) and skip otherwise; the encoder tests at the
// end need neither.
#include <gtest/gtest.h>
#include <linux/netfilter.h>
#include <linux/netlink.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <sstream>

#include "dataplane/compile.h"
#include "dataplane/kernel.h"
#include "dataplane/netlink_encode.h"
#include "dataplane/render.h"
#include "tests/dataplane/netlink_test_kernel.h"
#include "tests/dataplane/netlink_test_ruleset.h"

namespace svcproxy::dataplane {
namespace {

using testing::kernel_snapshot;
using testing::run_in_fresh_netns;
using testing::shell;

bool have_root() { return geteuid() == 0; }
bool have_nft() { return access("/usr/sbin/nft", X_OK) == 0 || access("/sbin/nft", X_OK) == 0; }

#define REQUIRE_ROOT() \
  if (!have_root()) GTEST_SKIP() << "needs root (network namespaces, nf_tables)"
#define REQUIRE_NFT() \
  if (!have_nft()) GTEST_SKIP() << "needs the nft binary for comparison"

// "" if equal, else the first line where the rendered rulesets differ.
std::string difference(const ir::Ruleset& want, const ir::Ruleset& got) {
  if (want == got) return {};
  std::istringstream a(render_nft(want, {false}));
  std::istringstream b(render_nft(got, {false}));
  std::string la, lb;
  for (int line = 1;; ++line) {
    const bool more_a = static_cast<bool>(std::getline(a, la));
    const bool more_b = static_cast<bool>(std::getline(b, lb));
    if (!more_a && !more_b) return "IR differs outside what render_nft shows";
    if (!more_a || !more_b || la != lb) {
      return "line " + std::to_string(line) + ": want \"" + (more_a ? la : "<end>") + "\", got \"" +
             (more_b ? lb : "<end>") + "\"";
    }
  }
}

std::string list_svcproxy() { return shell("nft list table ip svcproxy") + shell("nft list table ip6 svcproxy"); }
std::string snapshot_svcproxy(bool with_handles = true) {
  return kernel_snapshot(NFPROTO_IPV4, "svcproxy", with_handles) +
         kernel_snapshot(NFPROTO_IPV6, "svcproxy", with_handles);
}

// Fails the test with the child's message unless the check succeeded.
#define EXPECT_NETNS_OK(result) EXPECT_TRUE((result).ok) << (result).output

TEST(NetlinkBackend, ReadBackEqualsTheCompiledRuleset) {
  REQUIRE_ROOT();
  const ir::Ruleset rules = testing::rich_ruleset();
  auto result = run_in_fresh_netns([&] {
    NetlinkBackend backend;
    backend.apply_full(rules);
    const std::string diff = difference(rules, backend.read_back());
    if (!diff.empty()) throw std::runtime_error(diff);
    if (!backend.in_sync()) throw std::runtime_error("not in sync after apply_full");
    return std::string();
  });
  EXPECT_NETNS_OK(result);
}

TEST(NetlinkBackend, KernelHoldsExactlyWhatNftCreatesFromTheScript) {
  REQUIRE_ROOT();
  REQUIRE_NFT();
  const ir::Ruleset rules = testing::rich_ruleset();
  // Programmed over netlink ...
  auto ours = run_in_fresh_netns([&] {
    NetlinkBackend backend;
    backend.apply_full(rules);
    return list_svcproxy() + "----\n" + snapshot_svcproxy();
  });
  // ... and by `nft -f` of what `svcproxy rules` prints, in another namespace.
  auto nft = run_in_fresh_netns([&] {
    shell("nft -f -", render_nft(rules));
    return list_svcproxy() + "----\n" + snapshot_svcproxy();
  });
  ASSERT_TRUE(ours.ok) << ours.output;
  ASSERT_TRUE(nft.ok) << nft.output;
  const auto split = [](const std::string& s) {
    const size_t at = s.find("----\n");
    return std::pair{s.substr(0, at), s.substr(at + 5)};
  };
  const auto [ours_text, ours_objects] = split(ours.output);
  const auto [nft_text, nft_objects] = split(nft.output);
  // What `nft list table` prints is the same text ...
  EXPECT_EQ(ours_text, nft_text);
  // ... because every object (table, chains, sets with their userdata,
  // elements, rules with every expression attribute, even handles) is.
  EXPECT_EQ(ours_objects, nft_objects);
  EXPECT_NE(ours_text.find("typeof ip daddr . meta l4proto . th dport . numgen random mod 1"), std::string::npos);
}

TEST(NetlinkBackend, ApplyingTwiceIsIdempotentAndAReplacementLeavesNothingBehind) {
  REQUIRE_ROOT();
  const ir::Ruleset rich = testing::rich_ruleset();
  auto small_ports = testing::rich_ports();
  small_ports.resize(2);
  const ir::Ruleset small = compile(small_ports, testing::rich_node()).ruleset;
  auto result = run_in_fresh_netns([&] {
    NetlinkBackend backend;
    backend.apply_full(rich);
    const std::string first = snapshot_svcproxy(false);
    backend.apply_full(rich);
    if (snapshot_svcproxy(false) != first) throw std::runtime_error("second apply changed the kernel objects");
    // A different ruleset replaces the first entirely.
    backend.apply_full(small);
    std::string diff = difference(small, backend.read_back());
    if (!diff.empty()) throw std::runtime_error("after replacement: " + diff);
    backend.apply_full(rich);
    if (snapshot_svcproxy(false) != first) throw std::runtime_error("re-applying the first ruleset differs");
    return std::string();
  });
  EXPECT_NETNS_OK(result);
}

TEST(NetlinkBackend, ForeignTablesAreNeverTouchedOrDecoded) {
  REQUIRE_ROOT();
  REQUIRE_NFT();
  const ir::Ruleset rules = testing::rich_ruleset();
  // Another program's tables, with expressions svcproxy does not know.
  const std::string foreign = R"(
table ip nat {
  set blocked { type ipv4_addr; flags interval; elements = { 192.0.2.0/24 } }
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr 198.51.100.1 tcp dport 80 counter dnat to 10.0.0.1:8080
    ip saddr @blocked log prefix "blocked " drop
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "eth9" masquerade
  }
}
table inet filter {
  chain input { type filter hook input priority 0; ct state established accept; limit rate 5/second accept; }
}
)";
  auto result = run_in_fresh_netns([&] {
    shell("nft -f -", foreign);
    const std::string before = shell("nft list table ip nat") + shell("nft list table inet filter");
    const std::string raw_before = kernel_snapshot(NFPROTO_IPV4, "nat");
    NetlinkBackend backend;
    backend.apply_full(rules);
    const std::string diff = difference(rules, backend.read_back());
    if (!diff.empty()) throw std::runtime_error("readback next to a foreign table: " + diff);
    auto check = [&](const char* when) {
      if (shell("nft list table ip nat") + shell("nft list table inet filter") != before ||
          kernel_snapshot(NFPROTO_IPV4, "nat") != raw_before) {
        throw std::runtime_error(std::string("foreign tables changed after ") + when);
      }
    };
    check("apply_full");
    backend.apply_full(rules);
    check("a second apply_full");
    backend.cleanup();
    check("cleanup");
    backend.cleanup();
    check("a second cleanup");
    const std::string tables = shell("nft list tables");
    if (tables.find("svcproxy") != std::string::npos) throw std::runtime_error("cleanup left: " + tables);
    return std::string();
  });
  EXPECT_NETNS_OK(result);
}

TEST(NetlinkBackend, CleanupSucceedsWithNothingToCleanAndTwice) {
  REQUIRE_ROOT();
  auto result = run_in_fresh_netns([&] {
    NetlinkBackend backend;
    backend.cleanup();  // nothing there yet
    if (!backend.read_back().tables.empty()) throw std::runtime_error("tables before any apply");
    backend.apply_full(testing::rich_ruleset());
    if (backend.read_back().tables.size() != 2) throw std::runtime_error("tables missing after apply");
    backend.cleanup();
    backend.cleanup();
    if (!backend.read_back().tables.empty()) throw std::runtime_error("tables left after cleanup");
    if (backend.in_sync()) throw std::runtime_error("in sync after cleanup");
    return std::string();
  });
  EXPECT_NETNS_OK(result);
}

TEST(NetlinkBackend, ARejectedTransactionNamesTheObjectAndChangesNothing) {
  REQUIRE_ROOT();
  const ir::Ruleset good = testing::rich_ruleset();
  ir::Ruleset bad = good;
  // A rule jumping to a chain that does not exist: the kernel refuses it.
  for (auto& chain : bad.tables[0].chains) {
    if (chain.name == names::kServices) {
      chain.rules.push_back(ir::Rule{{}, {ir::Verdict{ir::VerdictKind::Goto, "no-such-chain"}}, {}});
    }
  }
  auto result = run_in_fresh_netns([&] {
    NetlinkBackend backend;
    backend.apply_full(good);
    const std::string before = snapshot_svcproxy();
    std::string message;
    try {
      backend.apply_full(bad);
      return std::string("the bad transaction was accepted");
    } catch (const TransactionError& e) {
      message = e.what();
      if (e.failures().empty()) return "no failures listed: " + message;
    }
    if (message.find("chain ip svcproxy services") == std::string::npos ||
        message.find("goto no-such-chain") == std::string::npos ||
        message.find("No such file or directory") == std::string::npos) {
      return "the error does not name the rule: " + message;
    }
    if (snapshot_svcproxy() != before) return std::string("the previous ruleset was disturbed");
    const std::string diff = difference(good, backend.read_back());
    if (!diff.empty()) return "previous ruleset not intact: " + diff;
    if (backend.in_sync()) return std::string("in sync after a failure");
    backend.apply_full(good);  // the next sync succeeds
    return "ok: " + message;
  });
  ASSERT_TRUE(result.ok) << result.output;
  EXPECT_EQ(result.output.rfind("ok: ", 0), 0u) << result.output;
  std::cout << "  kernel said: " << result.output.substr(4) << "\n";
}

TEST(NetlinkBackend, ConflictingElementsAreNamedDownToTheElement) {
  REQUIRE_ROOT();
  ir::Ruleset bad = testing::rich_ruleset();
  // One key with two different endpoints in a DNAT map: the kernel refuses
  // the second element, and the extended ack points at it.
  std::string expected;
  for (auto& set : bad.tables[0].sets) {
    if (set.data.empty() || set.elements.empty() || !expected.empty()) continue;
    ir::Element twin = set.elements.front();
    twin.data = {model::IPAddress::v4(10, 1, 2, 3), uint16_t{1}};
    set.elements.push_back(twin);
    expected = "of map ip svcproxy " + set.name + ", element " + std::get<model::IPAddress>(twin.key[0]).str() + " . ";
  }
  ASSERT_FALSE(expected.empty()) << "no data map with elements in the rich ruleset";
  auto result = run_in_fresh_netns([&] {
    NetlinkBackend backend;
    try {
      backend.apply_full(bad);
    } catch (const TransactionError& e) {
      return std::string(e.what());
    }
    throw std::runtime_error("accepted");
  });
  ASSERT_TRUE(result.ok) << result.output;
  EXPECT_NE(result.output.find(expected), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("File exists"), std::string::npos) << result.output;
}

TEST(NetlinkBackend, HandEditedTablesAreReportedWithChainAndRule) {
  REQUIRE_ROOT();
  REQUIRE_NFT();
  auto result = run_in_fresh_netns([&] {
    NetlinkBackend backend;
    backend.apply_full(testing::rich_ruleset());
    shell("nft add rule ip svcproxy services counter");
    try {
      backend.read_back();
    } catch (const DecodeError& e) {
      return std::string(e.what());
    }
    throw std::runtime_error("a hand-added counter was not reported");
  });
  ASSERT_TRUE(result.ok) << result.output;
  EXPECT_NE(result.output.find("of chain ip svcproxy services"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("(counter)"), std::string::npos) << result.output;
}

TEST(NetlinkBackend, ManyEndpointsWithAffinitySplitElementMessages) {
  REQUIRE_ROOT();
  // 1500 endpoints with ClientIP affinity: the anonymous numgen vmap's
  // elements (long chain names) span several NEWSETELEM messages.
  auto sp = testing::service_port("big", "10.96.1.1", 80, {});
  for (uint32_t i = 0; i < 1500; ++i) {
    sp.cluster_endpoints.push_back({testing::v4_from((10u << 24) | (244u << 16) | (i + 2)), 8080});
  }
  sp.affinity_timeout_seconds = 30;
  const ir::Ruleset rules = compile({sp}, testing::rich_node()).ruleset;
  auto result = run_in_fresh_netns([&] {
    NetlinkBackend backend;
    backend.apply_full(rules);
    const std::string diff = difference(rules, backend.read_back());
    if (!diff.empty()) throw std::runtime_error(diff);
    return std::string();
  });
  EXPECT_NETNS_OK(result);
}

TEST(NetlinkBackend, TenThousandServicesRoundTrip) {
  REQUIRE_ROOT();
  const ir::Ruleset rules = compile(testing::synthetic_ports(10000, 10), testing::synthetic_node()).ruleset;
  auto result = run_in_fresh_netns([&] {
    using Clock = std::chrono::steady_clock;
    auto ms = [](Clock::duration d) { return std::to_string(std::chrono::duration<double, std::milli>(d).count()); };
    NetlinkBackend backend;
    ir::Ruleset first = rules;  // copies outside the timings: the backend keeps what it applies
    ir::Ruleset second = rules;
    const auto t0 = Clock::now();
    backend.apply_full(std::move(first));
    const auto t1 = Clock::now();
    const ir::Ruleset back = backend.read_back();
    const auto t2 = Clock::now();
    backend.apply_full(std::move(second));
    const auto t3 = Clock::now();
    const std::string diff = difference(rules, back);
    if (!diff.empty()) throw std::runtime_error(diff);
    return "apply_full " + ms(t1 - t0) + " ms (replacing itself: " + ms(t3 - t2) + " ms), read_back " +
           ms(t2 - t1) + " ms";
  });
  ASSERT_TRUE(result.ok) << result.output;
  std::cout << "  10k services x 10 endpoints: " << result.output << "\n";
}

// ---- the encoder alone (no kernel) ------------------------------------------

TEST(NetlinkEncoder, NoMessageExceedsOneAttributeNest) {
  // Without counters: each counter object is a message of its own, and
  // this is about how element lists are packed.
  auto node = testing::synthetic_node();
  node.counters = false;
  const ir::Ruleset rules = compile(testing::synthetic_ports(3000, 50), node).ruleset;
  NetlinkBatch batch(1);
  encode_full_sync(rules, batch);
  size_t elements = 0;
  for (const auto& t : rules.tables)
    for (const auto& s : t.sets) elements += s.elements.size();
  EXPECT_GT(elements, 150000u);
  // Far fewer messages than elements: lists are packed up to the limit.
  EXPECT_LT(batch.size(), 40000u);
  EXPECT_GT(batch.bytes(), 64u << 10);
  EXPECT_LE(batch.largest_message(), size_t{0xffff} + 256) << "element lists must fit a 16-bit attribute length";
}

TEST(NetlinkEncoder, ValuesOfTheWrongKindAreRejectedWithTheObjectNamed) {
  ir::Ruleset rules = testing::rich_ruleset();
  for (auto& set : rules.tables[0].sets) {
    if (set.name == names::kClusterIPs) set.elements.push_back(ir::Element{{uint16_t{80}}, std::nullopt, {}});
  }
  NetlinkBatch batch(1);
  try {
    encode_full_sync(rules, batch);
    FAIL() << "encoded a port into an address set";
  } catch (const EncodeError& e) {
    EXPECT_NE(std::string(e.what()).find("set ip svcproxy cluster-ips"), std::string::npos) << e.what();
  }
}

TEST(NetlinkEncoder, AddressesOfTheOtherFamilyAreRejected) {
  ir::Ruleset rules = testing::rich_ruleset();
  rules.tables[1].chains.front().rules.push_back(
      ir::Rule{{ir::AddrMatch{ir::KeyField::SrcAddr, false, testing::cidr("10.0.0.0/8"), {}}}, {}, {}});
  NetlinkBatch batch(1);
  EXPECT_THROW(encode_full_sync(rules, batch), EncodeError);
}

// --detect-local-mode BridgeInterface / InterfaceNamePrefix: the rich
// ruleset with iifname matches (exact and prefix, == and !=) in both
// families, plus a 15-byte name (the longest IFNAMSIZ allows) and a 14-byte
// prefix (the longest nft's text form takes: "<prefix>*" within 15).
ir::Ruleset interface_ruleset(model::LocalDetect mode, const char* name) {
  model::NodeConfig node = testing::rich_node();
  node.local_detect = mode;
  node.local_interface = name;
  ir::Ruleset rules = compile(testing::rich_ports(), node).ruleset;
  ir::Chain extra{"iifname-extra", std::nullopt, {}};
  extra.rules.push_back(ir::Rule{{ir::IifnameMatch{"abcdefghijklmno", false, false}}, {ir::Verdict{}}, {}});
  extra.rules.push_back(ir::Rule{{ir::IifnameMatch{"abcdefghijklmn", true, true}}, {ir::Verdict{}}, {}});
  extra.rules.push_back(ir::Rule{{ir::IifnameMatch{"x", true, false}}, {ir::Verdict{}}, {}});
  for (auto& table : rules.tables) {
    table.chains.push_back(extra);
    std::sort(table.chains.begin(), table.chains.end(),
              [](const ir::Chain& a, const ir::Chain& b) { return a.name < b.name; });
  }
  return rules;
}

TEST(NetlinkBackend, InterfaceMatchesReadBackAndEqualWhatNftCreates) {
  REQUIRE_ROOT();
  REQUIRE_NFT();
  for (auto [mode, name] : {std::pair{model::LocalDetect::BridgeInterface, "cbr0"},
                            std::pair{model::LocalDetect::InterfaceNamePrefix, "veth"}}) {
    const ir::Ruleset rules = interface_ruleset(mode, name);
    const std::string text = render_nft(rules);
    ASSERT_NE(text.find(mode == model::LocalDetect::BridgeInterface ? "iifname != \"cbr0\" jump"
                                                                     : "iifname != \"veth*\" jump"),
              std::string::npos);
    auto ours = run_in_fresh_netns([&] {
      NetlinkBackend backend;
      backend.apply_full(rules);
      const std::string diff = difference(rules, backend.read_back());
      if (!diff.empty()) throw std::runtime_error(diff);
      return list_svcproxy() + "----\n" + snapshot_svcproxy();
    });
    auto nft = run_in_fresh_netns([&] {
      shell("nft -f -", text);
      return list_svcproxy() + "----\n" + snapshot_svcproxy();
    });
    ASSERT_TRUE(ours.ok) << ours.output;
    ASSERT_TRUE(nft.ok) << nft.output;
    // Same expressions, byte for byte, as nft's own encoding of the text ...
    EXPECT_EQ(ours.output, nft.output) << name;
    // ... and nft lists them back exactly as svcproxy renders them.
    const std::string listed = ours.output.substr(0, ours.output.find("----\n"));
    for (const char* line : {"iifname \"abcdefghijklmno\" accept", "iifname != \"abcdefghijklmn*\" accept",
                             "iifname \"x*\" accept"}) {
      EXPECT_NE(listed.find(line), std::string::npos) << line << "\n" << listed;
    }
  }
}

// Every counter construct of the IR in one table: named counters, `counter
// name "x"`, objref maps of both key kinds and their lookups, a nat input
// chain.
ir::Ruleset counter_ruleset() {
  using ir::KeyField;
  using ir::KeyType;
  ir::Table t;
  t.family = model::IPFamily::V4;
  t.name = "svcproxy";
  t.counters = {{"endpoint-10.244.1.2/tcp/8080"}, {"rejected-x"}, {"unused"}};
  ir::Set by_addr;
  by_addr.name = "counters-a";
  by_addr.key = {KeyType::Addr, KeyType::Proto, KeyType::Port};
  by_addr.is_counter_map = true;
  by_addr.elements.push_back(
      {{test_support::ip("10.96.0.1"), model::Protocol::TCP, uint16_t{80}}, std::nullopt, {}, "rejected-x"});
  by_addr.elements.push_back({{test_support::ip("10.244.1.2"), model::Protocol::TCP, uint16_t{8080}},
                              std::nullopt,
                              {},
                              "endpoint-10.244.1.2/tcp/8080"});
  ir::Set by_port;
  by_port.name = "counters-p";
  by_port.key = {KeyType::Proto, KeyType::Port};
  by_port.is_counter_map = true;
  by_port.elements.push_back({{model::Protocol::UDP, uint16_t{30053}}, std::nullopt, {}, "rejected-x"});
  t.sets = {by_addr, by_port};
  const std::vector<KeyField> addr_key{KeyField::DstAddr, KeyField::L4Proto, KeyField::DstPort};
  auto rule = [](std::vector<ir::Match> m, std::vector<ir::Statement> s) {
    return ir::Rule{std::move(m), std::move(s), {}};
  };
  t.chains.push_back(
      ir::Chain{"count",
                std::nullopt,
                {rule({}, {ir::CounterMapStmt{addr_key, "counters-a"}, ir::Verdict{ir::VerdictKind::Return, {}}}),
                 rule({}, {ir::CounterMapStmt{{KeyField::L4Proto, KeyField::DstPort}, "counters-p"}}),
                 rule({ir::ProtoMatch{model::Protocol::TCP}}, {ir::CounterStmt{"rejected-x"}, ir::RejectStmt{true}})}});
  t.chains.push_back(ir::Chain{"nat-input",
                               ir::BaseChainSpec{ir::Hook::Input, 100},
                               {rule({ir::CtDnatMatch{}}, {ir::Verdict{ir::VerdictKind::Jump, "count"}})}});
  ir::Ruleset r;
  r.tables.push_back(std::move(t));
  return r;
}

TEST(NetlinkBackend, CountersReadBackAndEqualWhatNftCreates) {
  REQUIRE_ROOT();
  REQUIRE_NFT();
  const ir::Ruleset rules = counter_ruleset();
  const std::string text = render_nft(rules);
  for (const char* line :
       {"\tcounter rejected-x {\n\t\tpackets 0 bytes 0\n\t}", "type ipv4_addr . inet_proto . inet_service : counter",
        "10.96.0.1 . tcp . 80 : \"rejected-x\"",
        "counter name ip daddr . meta l4proto . th dport map @counters-a return",
        "meta l4proto tcp counter name \"rejected-x\" reject with tcp reset",
        "type nat hook input priority 100; policy accept;"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
  auto ours = run_in_fresh_netns([&] {
    NetlinkBackend backend;
    backend.apply_full(rules);
    const std::string diff = difference(rules, backend.read_back());
    if (!diff.empty()) throw std::runtime_error(diff);
    return shell("nft list table ip svcproxy") + "----\n" + kernel_snapshot(NFPROTO_IPV4, "svcproxy");
  });
  auto nft = run_in_fresh_netns([&] {
    shell("nft -f -", text);
    return shell("nft list table ip svcproxy") + "----\n" + kernel_snapshot(NFPROTO_IPV4, "svcproxy");
  });
  ASSERT_TRUE(ours.ok) << ours.output;
  ASSERT_TRUE(nft.ok) << nft.output;
  // The same objects byte for byte as nft's encoding of the text, and nft
  // lists them back as svcproxy renders them.
  EXPECT_EQ(ours.output, nft.output);
  EXPECT_EQ(ours.output.substr(0, ours.output.find("----\n")), text.substr(text.find("table ip svcproxy {")));
}

TEST(NetlinkBackend, CountersAreReadInOneDumpAndChangedByPartialSyncs) {
  REQUIRE_ROOT();
  const ir::Ruleset rules = counter_ruleset();
  auto result = run_in_fresh_netns([&] {
    NetlinkBackend backend;
    backend.apply_full(rules);
    NetlinkSocket socket;
    auto values = read_counters(socket, "svcproxy");
    std::string out;
    for (const auto& v : values) {
      out += std::string(v.family == model::IPFamily::V4 ? "ip " : "ip6 ") + v.name + "=" + std::to_string(v.packets) +
             "/" + std::to_string(v.bytes) + " ";
    }
    if (out != "ip endpoint-10.244.1.2/tcp/8080=0/0 ip rejected-x=0/0 ip unused=0/0 ")
      throw std::runtime_error("read_counters: " + out);
    if (!read_counters(socket, "other").empty()) throw std::runtime_error("counters of a table that does not exist");
    // A partial sync adds one counter and deletes another.
    RulesetDiff diff;
    TableDiff td;
    td.added_counters = {{"added"}};
    td.deleted_counters = {"unused"};
    diff.tables.push_back(td);
    backend.apply_partial(diff, RulesetCompiler(model::NodeConfig{}));
    ir::Ruleset want = rules;
    want.tables[0].counters = {{"added"}, {"endpoint-10.244.1.2/tcp/8080"}, {"rejected-x"}};
    const std::string differs = difference(want, backend.read_back());
    if (!differs.empty()) throw std::runtime_error(differs);
    return std::string();
  });
  EXPECT_NETNS_OK(result);
}

TEST(NetlinkEncoder, InterfaceNamesOutsideIfnamsizAreRejected) {
  for (auto [bad, prefix] : {std::pair{"", false}, {"", true}, {"abcdefghijklmnop", false}, {"abcdefghijklmno", true}}) {
    ir::Ruleset rules = testing::rich_ruleset();
    rules.tables[0].chains.front().rules.push_back(ir::Rule{{ir::IifnameMatch{bad, prefix, false}}, {}, {}});
    NetlinkBatch batch(1);
    EXPECT_THROW(encode_full_sync(rules, batch), EncodeError) << '"' << bad << '"' << prefix;
  }
}

}  // namespace
}  // namespace svcproxy::dataplane
