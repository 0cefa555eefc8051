// The trace evaluator against hand-written IR: each test builds the smallest
// table that exercises one match, statement or verdict and checks where the
// packet goes. Deliberately independent of the compiler, so a compiler bug
// cannot hide an evaluator bug (or the other way round).
#include "dataplane/trace.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "tests/support/ip.h"

namespace svcproxy::dataplane {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace ir;  // NOLINT: the IR vocabulary is the point of these tests
using model::EndpointAddress;
using model::Protocol;

constexpr uint32_t kMasqBit = 0x4000;

using test_support::ip;

using test_support::cidr;

EndpointAddress ep(const char* address, uint16_t port) { return {ip(address), port}; }

Verdict jump(std::string chain) { return {VerdictKind::Jump, std::move(chain)}; }
Verdict go(std::string chain) { return {VerdictKind::Goto, std::move(chain)}; }
Verdict accept() { return {VerdictKind::Accept, {}}; }
Verdict drop() { return {VerdictKind::Drop, {}}; }
Verdict ret() { return {VerdictKind::Return, {}}; }

Rule rule(std::vector<Match> matches, std::vector<Statement> statements) {
  return Rule{std::move(matches), std::move(statements), {}};
}
Rule always(std::vector<Statement> statements) { return rule({}, std::move(statements)); }

Chain chain(std::string name, std::vector<Rule> rules) {
  return Chain{std::move(name), std::nullopt, std::move(rules)};
}
Chain base(std::string name, Hook hook, int priority, std::vector<Rule> rules) {
  return Chain{std::move(name), BaseChainSpec{hook, priority}, std::move(rules)};
}

Set addr_set(std::string name, std::vector<Value> members, bool interval = false) {
  Set set;
  set.name = std::move(name);
  set.key = {KeyType::Addr};
  set.interval = interval;
  for (auto& member : members) set.elements.push_back(Element{{std::move(member)}, std::nullopt, {}});
  return set;
}

// Element key/data container, whatever the IR stores it in.
using Components = decltype(Element{}.key);

Set vmap(std::string name, std::vector<KeyType> key, std::vector<std::pair<Components, Verdict>> entries) {
  Set set;
  set.name = std::move(name);
  set.key = std::move(key);
  set.is_verdict_map = true;
  for (auto& [k, v] : entries) set.elements.push_back(Element{std::move(k), std::move(v), {}});
  return set;
}

// addr . proto . port . slot -> addr . port, like the compiler's dnat maps.
Set dnat_map(std::string name, const IPAddress& vip, uint16_t port,
             const std::vector<EndpointAddress>& endpoints) {
  Set set;
  set.name = std::move(name);
  set.key = {KeyType::Addr, KeyType::Proto, KeyType::Port, KeyType::Slot};
  set.data = {KeyType::Addr, KeyType::Port};
  for (uint32_t slot = 0; slot < endpoints.size(); ++slot) {
    set.elements.push_back(
        Element{{vip, Protocol::TCP, port, slot}, std::nullopt, {endpoints[slot].ip, endpoints[slot].port}});
  }
  return set;
}

const std::vector<KeyField> kServiceKey{KeyField::DstAddr, KeyField::L4Proto, KeyField::DstPort};
const std::vector<KeyField> kSlotKey{KeyField::DstAddr, KeyField::L4Proto, KeyField::DstPort,
                                     KeyField::Numgen};

Table table(std::vector<Chain> chains, std::vector<Set> sets = {}, IPFamily family = IPFamily::V4) {
  Table t;
  t.family = family;
  t.chains = std::move(chains);
  t.sets = std::move(sets);
  return t;
}

Ruleset ruleset(Table t) {
  Ruleset r;
  r.tables.push_back(std::move(t));
  return r;
}

// kube-proxy's masquerading chain, as svcproxy compiles it: hairpin first,
// then the mark (cleared before masquerading).
Chain masquerading_chain() {
  return chain("masquerading",
               {
                   rule({CtDnatMatch{}, SetMatch{{KeyField::SrcAddr, KeyField::DstAddr}, "hairpin"}},
                        {MasqueradeStmt{}}),
                   rule({MarkMatch{kMasqBit, true}}, {ret()}),
                   always({MarkStmt{kMasqBit, true}}),
                   always({MasqueradeStmt{}}),
               });
}

TracePacket tcp(const char* src, const char* dst, uint16_t dport) {
  TracePacket packet;
  packet.src = ip(src);
  packet.dst = ip(dst);
  packet.dport = dport;
  return packet;
}

TraceResult run(const Ruleset& r, const TracePacket& packet, const TraceEnvironment& env = {}) {
  return trace(r, packet, env);
}

// ---- verdicts ------------------------------------------------------------------

TEST(Trace, AcceptWhenNothingMatches) {
  const auto r = ruleset(table({base("pre", Hook::Prerouting, -100,
                                     {rule({ProtoMatch{Protocol::UDP}}, {DnatStmt{ip("10.0.0.1"), 80}})})}));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::ACCEPT);
  EXPECT_THAT(result.endpoints, IsEmpty());
  EXPECT_FALSE(result.masquerade);
  EXPECT_THAT(result.chains, ElementsAre("pre"));
}

TEST(Trace, NoTableForFamilyPassesUntouched) {
  const auto r = ruleset(table({base("pre", Hook::Prerouting, -100, {always({drop()})})}));
  const auto result = run(r, tcp("fd00::1", "fd00::2", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::ACCEPT);
  EXPECT_THAT(result.chains, IsEmpty());
}

TEST(Trace, DnatStatement) {
  const auto r =
      ruleset(table({base("pre", Hook::Prerouting, -100,
                          {rule({ProtoMatch{Protocol::TCP}}, {DnatStmt{ip("10.1.0.5"), 8080}})})}));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::DNAT);
  EXPECT_THAT(result.endpoints, ElementsAre(ep("10.1.0.5", 8080)));
  EXPECT_FALSE(result.masquerade);
}

TEST(Trace, ProtoMatchDistinguishesProtocols) {
  const auto r = ruleset(table({base("pre", Hook::Prerouting, -100,
                                     {rule({ProtoMatch{Protocol::UDP}}, {DnatStmt{ip("10.1.0.5"), 53}}),
                                      rule({ProtoMatch{Protocol::TCP}}, {DnatStmt{ip("10.1.0.6"), 53}})})}));
  auto packet = tcp("192.168.1.1", "10.96.0.10", 53);
  packet.protocol = Protocol::UDP;
  EXPECT_THAT(run(r, packet).endpoints, ElementsAre(ep("10.1.0.5", 53)));
  packet.protocol = Protocol::TCP;
  EXPECT_THAT(run(r, packet).endpoints, ElementsAre(ep("10.1.0.6", 53)));
}

TEST(Trace, Drop) {
  const auto r = ruleset(table({base("pre", Hook::Prerouting, -100, {always({drop()})})}));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::DROP);
  EXPECT_THAT(result.endpoints, IsEmpty());
}

TEST(Trace, RejectAndNothingAfterIt) {
  const auto r = ruleset(table({base(
      "pre", Hook::Prerouting, -100,
      {always({RejectStmt{}, DnatStmt{ip("10.1.0.5"), 80}}), always({DnatStmt{ip("10.1.0.6"), 80}})})}));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::REJECT);
  EXPECT_THAT(result.endpoints, IsEmpty());
}

TEST(Trace, DnatEndsTheRuleAndTheHook) {
  // dnat is terminal: the second statement, the next rule and the later
  // nat chain of the same hook are all skipped.
  const auto r = ruleset(table({
      base("a-late", Hook::Prerouting, 0, {always({DnatStmt{ip("10.1.0.9"), 80}})}),
      base("b-early", Hook::Prerouting, -100,
           {always({DnatStmt{ip("10.1.0.5"), 80}, DnatStmt{ip("10.1.0.6"), 80}}),
            always({DnatStmt{ip("10.1.0.7"), 80}})}),
  }));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_THAT(result.endpoints, ElementsAre(ep("10.1.0.5", 80)));
  EXPECT_THAT(result.chains, ElementsAre("b-early"));
}

TEST(Trace, BaseChainsRunInPriorityOrderAndAcceptPassesToTheNext) {
  const auto r = ruleset(table({
      base("a-late", Hook::Prerouting, 0, {always({DnatStmt{ip("10.1.0.9"), 80}})}),
      base("b-early", Hook::Prerouting, -100, {always({accept()}), always({drop()})}),
  }));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::DNAT);
  EXPECT_THAT(result.endpoints, ElementsAre(ep("10.1.0.9", 80)));
  EXPECT_THAT(result.chains, ElementsAre("b-early", "a-late"));
}

TEST(Trace, DropInAnEarlierBaseChainStopsTheHook) {
  const auto r = ruleset(table({
      base("a-late", Hook::Prerouting, 0, {always({DnatStmt{ip("10.1.0.9"), 80}})}),
      base("b-early", Hook::Prerouting, -100, {always({drop()})}),
  }));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::DROP);
  EXPECT_THAT(result.chains, ElementsAre("b-early"));
}

// ---- chains: jump, goto, return ----------------------------------------------

TEST(Trace, JumpReturnsToTheNextRuleOfTheCaller) {
  const auto r = ruleset(table({
      base("pre", Hook::Prerouting, -100, {always({jump("sub")}), always({DnatStmt{ip("10.1.0.5"), 80}})}),
      chain("sub", {always({ret()}), always({DnatStmt{ip("10.1.0.6"), 80}})}),
  }));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_THAT(result.endpoints, ElementsAre(ep("10.1.0.5", 80)));
  EXPECT_THAT(result.chains, ElementsAre("pre", "sub"));
}

TEST(Trace, FallingOffARegularChainReturns) {
  const auto r = ruleset(table({
      base("pre", Hook::Prerouting, -100, {always({jump("empty")}), always({DnatStmt{ip("10.1.0.5"), 80}})}),
      chain("empty", {}),
  }));
  EXPECT_THAT(run(r, tcp("192.168.1.1", "10.96.0.1", 80)).endpoints, ElementsAre(ep("10.1.0.5", 80)));
}

TEST(Trace, GotoReturnsToTheCallerOfTheJumper) {
  // pre jumps to a; a goes to b; b returns -> back in pre (not in a).
  const auto r = ruleset(table({
      base("pre", Hook::Prerouting, -100, {always({jump("a")}), always({DnatStmt{ip("10.1.0.5"), 80}})}),
      chain("a", {always({go("b")}), always({DnatStmt{ip("10.1.0.6"), 80}})}),
      chain("b", {always({ret()})}),
  }));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_THAT(result.endpoints, ElementsAre(ep("10.1.0.5", 80)));
  EXPECT_THAT(result.chains, ElementsAre("pre", "a", "b"));
}

TEST(Trace, ReturnFromAChainReachedByGotoFromTheBaseChainIsThePolicy) {
  const auto r = ruleset(table({
      base("pre", Hook::Prerouting, -100, {always({go("a")}), always({DnatStmt{ip("10.1.0.5"), 80}})}),
      chain("a", {always({ret()})}),
  }));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::ACCEPT);
  EXPECT_THAT(result.chains, ElementsAre("pre", "a"));
}

TEST(Trace, ReturnInABaseChainAccepts) {
  const auto r = ruleset(table({base("pre", Hook::Prerouting, -100, {always({ret()}), always({drop()})})}));
  EXPECT_EQ(run(r, tcp("192.168.1.1", "10.96.0.1", 80)).verdict, TraceVerdict::ACCEPT);
}

TEST(Trace, AcceptInARegularChainEndsTheBaseChain) {
  const auto r = ruleset(table({
      base("pre", Hook::Prerouting, -100, {always({jump("a")}), always({DnatStmt{ip("10.1.0.5"), 80}})}),
      chain("a", {always({accept()})}),
  }));
  EXPECT_EQ(run(r, tcp("192.168.1.1", "10.96.0.1", 80)).verdict, TraceVerdict::ACCEPT);
}

TEST(Trace, GotoLoopIsAnErrorNamingThePath) {
  const auto r = ruleset(table({
      base("pre", Hook::Prerouting, -100, {always({go("a")})}),
      chain("a", {always({go("b")})}),
      chain("b", {always({go("a")})}),
  }));
  try {
    run(r, tcp("192.168.1.1", "10.96.0.1", 80));
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("loop"));
    EXPECT_THAT(e.what(), HasSubstr("a -> b -> a"));
    EXPECT_THAT(e.what(), HasSubstr("table ip svcproxy"));
  }
}

TEST(Trace, JumpDeeperThanTheKernelStackIsAnError) {
  std::vector<Chain> chains{base("pre", Hook::Prerouting, -100, {always({jump("c0")})})};
  for (int i = 0; i < 20; ++i) {
    chains.push_back(chain("c" + std::to_string(i), {always({jump("c" + std::to_string(i + 1))})}));
  }
  chains.push_back(chain("c20", {}));
  const auto r = ruleset(table(std::move(chains)));
  EXPECT_THROW(run(r, tcp("192.168.1.1", "10.96.0.1", 80)), std::runtime_error);
}

TEST(Trace, MissingChainOrSetIsAnErrorWithContext) {
  const auto missing_chain =
      ruleset(table({base("pre", Hook::Prerouting, -100, {always({jump("nowhere")})})}));
  try {
    run(missing_chain, tcp("192.168.1.1", "10.96.0.1", 80));
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("nowhere"));
    EXPECT_THAT(e.what(), HasSubstr("chain pre, rule 0"));
  }
  const auto missing_set = ruleset(
      table({base("pre", Hook::Prerouting, -100, {always({VmapStmt{kServiceKey, "service-ips", 0}})})}));
  EXPECT_THROW(run(missing_set, tcp("192.168.1.1", "10.96.0.1", 80)), std::runtime_error);
}

TEST(Trace, MistypedSetElementIsAnError) {
  // A port where the set declares an address: the kernel would refuse it.
  const auto r =
      ruleset(table({base("pre", Hook::Prerouting, -100,
                          {rule({AddrMatch{KeyField::DstAddr, false, std::nullopt, "s"}}, {drop()})})},
                    {addr_set("s", {uint16_t{80}})}));
  EXPECT_THROW(run(r, tcp("192.168.1.1", "10.96.0.1", 80)), std::runtime_error);
}

// ---- verdict maps and numgen ---------------------------------------------------

TEST(Trace, VmapLookupGoesToTheServiceChain) {
  const auto r = ruleset(table(
      {
          base("pre", Hook::Prerouting, -100, {always({jump("services")})}),
          chain("services", {always({VmapStmt{kServiceKey, "service-ips", 0}})}),
          chain("svc-a", {rule({ProtoMatch{Protocol::TCP}}, {DnatStmt{ip("10.1.0.5"), 8080}})}),
          chain("svc-b", {rule({ProtoMatch{Protocol::TCP}}, {DnatStmt{ip("10.1.0.6"), 8080}})}),
      },
      {vmap("service-ips", {KeyType::Addr, KeyType::Proto, KeyType::Port},
            {{{ip("10.96.0.1"), Protocol::TCP, uint16_t{80}}, go("svc-a")},
             {{ip("10.96.0.2"), Protocol::TCP, uint16_t{80}}, go("svc-b")}})}));
  auto result = run(r, tcp("192.168.1.1", "10.96.0.2", 80));
  EXPECT_THAT(result.endpoints, ElementsAre(ep("10.1.0.6", 8080)));
  EXPECT_THAT(result.chains, ElementsAre("pre", "services", "svc-b"));
  // Another port of the same address is not in the map.
  result = run(r, tcp("192.168.1.1", "10.96.0.2", 81));
  EXPECT_EQ(result.verdict, TraceVerdict::ACCEPT);
  EXPECT_THAT(result.chains, ElementsAre("pre", "services"));
}

TEST(Trace, VmapMissContinuesWithTheNextRule) {
  const auto r = ruleset(table({base("pre", Hook::Prerouting, -100,
                                     {always({VmapStmt{kServiceKey, "service-ips", 0}, drop()}),
                                      always({DnatStmt{ip("10.1.0.5"), 80}})})},
                               {vmap("service-ips", {KeyType::Addr, KeyType::Proto, KeyType::Port}, {})}));
  EXPECT_THAT(run(r, tcp("192.168.1.1", "10.96.0.1", 80)).endpoints, ElementsAre(ep("10.1.0.5", 80)));
}

TEST(Trace, DnatMapEnumeratesEveryNumgenSlot) {
  const auto vip = ip("10.96.0.1");
  const auto r = ruleset(table(
      {base("pre", Hook::Prerouting, -100, {always({DnatMapStmt{kSlotKey, "dnat-3", 3}})})},
      {dnat_map("dnat-3", vip, 80, {ep("10.1.0.7", 8080), ep("10.1.0.5", 8080), ep("10.1.0.7", 8080)})}));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::DNAT);
  // Sorted and deduplicated.
  EXPECT_THAT(result.endpoints, ElementsAre(ep("10.1.0.5", 8080), ep("10.1.0.7", 8080)));
}

TEST(Trace, DnatMapMissContinuesWithTheNextRule) {
  const auto r = ruleset(table({base("pre", Hook::Prerouting, -100,
                                     {always({DnatMapStmt{kSlotKey, "dnat-1", 1}}), always({RejectStmt{}})})},
                               {dnat_map("dnat-1", ip("10.96.0.1"), 80, {ep("10.1.0.5", 8080)})}));
  EXPECT_EQ(run(r, tcp("192.168.1.1", "10.96.0.1", 80)).verdict, TraceVerdict::DNAT);
  EXPECT_EQ(run(r, tcp("192.168.1.1", "10.96.0.2", 80)).verdict, TraceVerdict::REJECT);
}

TEST(Trace, DnatMapWithMissingSlotsYieldsBothOutcomes) {
  // Two slots of three are filled: one branch in three falls through to the
  // next rule and is rejected, but DNAT wins the summary.
  const auto vip = ip("10.96.0.1");
  const auto r = ruleset(table({base("pre", Hook::Prerouting, -100,
                                     {always({DnatMapStmt{kSlotKey, "dnat", 3}}), always({RejectStmt{}})})},
                               {dnat_map("dnat", vip, 80, {ep("10.1.0.5", 80), ep("10.1.0.6", 80)})}));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::DNAT);
  EXPECT_THAT(result.endpoints, ElementsAre(ep("10.1.0.5", 80), ep("10.1.0.6", 80)));
}

TEST(Trace, NumgenVmapBranchesIntoEveryChain) {
  const auto r = ruleset(table(
      {
          base("pre", Hook::Prerouting, -100, {always({NumgenVmapStmt{{"ep-b", "ep-a", "ep-b"}}})}),
          chain("ep-a", {always({SetUpdateStmt{"affinity"}}), always({DnatStmt{ip("10.1.0.5"), 80}})}),
          chain("ep-b", {always({DnatStmt{ip("10.1.0.6"), 80}})}),
      },
      {[] {
        Set s = addr_set("affinity", {});
        s.dynamic = true;
        return s;
      }()}));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_THAT(result.endpoints, ElementsAre(ep("10.1.0.5", 80), ep("10.1.0.6", 80)));
  // First-visit order across branches, each chain once.
  EXPECT_THAT(result.chains, ElementsAre("pre", "ep-b", "ep-a"));
}

TEST(Trace, VmapWithNumgenKeyEnumeratesSlots) {
  const auto r = ruleset(table(
      {
          base("pre", Hook::Prerouting, -100,
               {always({VmapStmt{{KeyField::Numgen}, "pick", 3}}), always({DnatStmt{ip("10.1.0.9"), 80}})}),
          chain("ep-a", {always({DnatStmt{ip("10.1.0.5"), 80}})}),
          chain("ep-b", {always({DnatStmt{ip("10.1.0.6"), 80}})}),
      },
      {vmap("pick", {KeyType::Slot}, {{{uint32_t{0}}, go("ep-a")}, {{uint32_t{2}}, go("ep-b")}})}));
  // Slot 1 has no element: that branch continues with the next rule.
  EXPECT_THAT(run(r, tcp("192.168.1.1", "10.96.0.1", 80)).endpoints,
              ElementsAre(ep("10.1.0.5", 80), ep("10.1.0.6", 80), ep("10.1.0.9", 80)));
}

TEST(Trace, ExactSetLookupDoesNotNeedSortedElements) {
  // Hand-built IR may list elements in any order; the lookup must not care.
  Set pick = vmap("pick", {KeyType::Proto, KeyType::Port},
                  {{{Protocol::UDP, uint16_t{53}}, drop()},
                   {{Protocol::TCP, uint16_t{9000}}, go("ep")},
                   {{Protocol::TCP, uint16_t{22}}, accept()},
                   {{Protocol::SCTP, uint16_t{1}}, drop()}});
  const auto r = ruleset(table({base("pre", Hook::Prerouting, -100,
                                     {always({VmapStmt{{KeyField::L4Proto, KeyField::DstPort}, "pick", 0}})}),
                                chain("ep", {always({DnatStmt{ip("10.1.0.5"), 80}})})},
                               {pick}));
  EXPECT_EQ(run(r, tcp("192.168.1.1", "10.96.0.1", 9000)).verdict, TraceVerdict::DNAT);
  EXPECT_EQ(run(r, tcp("192.168.1.1", "10.96.0.1", 22)).verdict, TraceVerdict::ACCEPT);
  auto dns = tcp("192.168.1.1", "10.96.0.1", 53);
  dns.protocol = Protocol::UDP;
  EXPECT_EQ(run(r, dns).verdict, TraceVerdict::DROP);
}

TEST(Trace, DnatMapWithMistypedDataIsAnError) {
  Set map = dnat_map("dnat-1", ip("10.96.0.1"), 80, {ep("10.1.0.5", 8080)});
  map.elements[0].data = {ip("10.1.0.5"), uint32_t{8080}};  // a slot where the port belongs
  const auto r = ruleset(
      table({base("pre", Hook::Prerouting, -100, {always({DnatMapStmt{kSlotKey, "dnat-1", 1}})})}, {map}));
  try {
    run(r, tcp("192.168.1.1", "10.96.0.1", 80));
    FAIL() << "expected an error";
  } catch (const std::runtime_error& e) {
    EXPECT_THAT(e.what(), HasSubstr("element 0 of @dnat-1"));
  }
}

TEST(Trace, DynamicSetsAreTakenAsEmpty) {
  Set affinity = addr_set("affinity", {ip("192.168.1.1")});
  affinity.dynamic = true;
  const auto r = ruleset(table({base("pre", Hook::Prerouting, -100,
                                     {rule({AddrMatch{KeyField::SrcAddr, false, std::nullopt, "affinity"}},
                                           {DnatStmt{ip("10.1.0.5"), 80}}),
                                      always({DnatStmt{ip("10.1.0.6"), 80}})})},
                               {affinity}));
  EXPECT_THAT(run(r, tcp("192.168.1.1", "10.96.0.1", 80)).endpoints, ElementsAre(ep("10.1.0.6", 80)));
}

TEST(Trace, BranchesThatDisagreePreferDnat) {
  const auto r = ruleset(table({
      base("pre", Hook::Prerouting, -100, {always({NumgenVmapStmt{{"a", "b"}}})}),
      chain("a", {always({drop()})}),
      chain("b", {always({DnatStmt{ip("10.1.0.5"), 80}})}),
  }));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::DNAT);
  EXPECT_THAT(result.endpoints, ElementsAre(ep("10.1.0.5", 80)));
}

// ---- matches -----------------------------------------------------------------

TEST(Trace, AddrMatchOnPrefixAndNegation) {
  const auto r =
      ruleset(table({base("pre", Hook::Prerouting, -100,
                          {rule({AddrMatch{KeyField::SrcAddr, true, cidr("10.0.0.0/8"), {}}}, {drop()}),
                           rule({AddrMatch{KeyField::DstAddr, false, cidr("10.96.0.0/12"), {}}},
                                {DnatStmt{ip("10.1.0.5"), 80}})})}));
  EXPECT_EQ(run(r, tcp("192.168.1.1", "10.96.0.1", 80)).verdict, TraceVerdict::DROP);
  EXPECT_EQ(run(r, tcp("10.2.0.1", "10.96.0.1", 80)).verdict, TraceVerdict::DNAT);
  EXPECT_EQ(run(r, tcp("10.2.0.1", "10.112.0.1", 80)).verdict, TraceVerdict::ACCEPT);
}

TEST(Trace, AddrMatchOnIntervalSet) {
  const auto r =
      ruleset(table({base("pre", Hook::Prerouting, -100,
                          {rule({AddrMatch{KeyField::SrcAddr, false, std::nullopt, "cluster-cidrs"}},
                                {DnatStmt{ip("10.1.0.5"), 80}})})},
                    {addr_set("cluster-cidrs", {cidr("10.244.0.0/16"), cidr("172.16.0.0/12")}, true)}));
  EXPECT_EQ(run(r, tcp("172.20.1.1", "10.96.0.1", 80)).verdict, TraceVerdict::DNAT);
  EXPECT_EQ(run(r, tcp("10.244.255.255", "10.96.0.1", 80)).verdict, TraceVerdict::DNAT);
  EXPECT_EQ(run(r, tcp("10.245.0.1", "10.96.0.1", 80)).verdict, TraceVerdict::ACCEPT);
}

TEST(Trace, AddrMatchOnNegatedPlainSet) {
  const auto r =
      ruleset(table({base("pre", Hook::Prerouting, -100,
                          {rule({AddrMatch{KeyField::DstAddr, true, std::nullopt, "ips"}}, {drop()})})},
                    {addr_set("ips", {ip("10.96.0.1"), ip("10.96.0.2")})}));
  EXPECT_EQ(run(r, tcp("192.168.1.1", "10.96.0.2", 80)).verdict, TraceVerdict::ACCEPT);
  EXPECT_EQ(run(r, tcp("192.168.1.1", "10.96.0.3", 80)).verdict, TraceVerdict::DROP);
}

TEST(Trace, PrefixInANonIntervalSetIsAnError) {
  const auto r =
      ruleset(table({base("pre", Hook::Prerouting, -100,
                          {rule({AddrMatch{KeyField::SrcAddr, false, std::nullopt, "s"}}, {drop()})})},
                    {addr_set("s", {cidr("10.0.0.0/8")}, false)}));
  EXPECT_THROW(run(r, tcp("10.1.1.1", "10.96.0.1", 80)), std::runtime_error);
}

TEST(Trace, FibLocalMatch) {
  const auto r =
      ruleset(table({base("pre", Hook::Prerouting, -100,
                          {rule({FibLocalMatch{KeyField::DstAddr}}, {DnatStmt{ip("10.1.0.5"), 80}})})}));
  TraceEnvironment env;
  env.local_addresses = {ip("192.168.1.10")};
  EXPECT_EQ(run(r, tcp("192.168.1.1", "192.168.1.10", 30080), env).verdict, TraceVerdict::DNAT);
  EXPECT_EQ(run(r, tcp("192.168.1.1", "192.168.1.11", 30080), env).verdict, TraceVerdict::ACCEPT);
}

TEST(Trace, MarkMatchSeesEarlierMarkStatements) {
  const auto r = ruleset(table({
      base("pre", Hook::Prerouting, -100,
           {rule({MarkMatch{0x1, false}}, {drop()}),  // mark starts at 0
            always({jump("mark")}), rule({MarkMatch{0x1, true}}, {drop()}),
            rule({MarkMatch{0x1, false}}, {DnatStmt{ip("10.1.0.5"), 80}})}),
      chain("mark", {always({MarkStmt{0x1, false}})}),
  }));
  EXPECT_EQ(run(r, tcp("192.168.1.1", "10.96.0.1", 80)).verdict, TraceVerdict::DNAT);
}

TEST(Trace, MarkXorToggles) {
  const auto r = ruleset(table(
      {base("pre", Hook::Prerouting, -100,
            {always({MarkStmt{0x3, false}, MarkStmt{0x1, true}}), rule({MarkMatch{0x1, false}}, {drop()}),
             rule({MarkMatch{0x2, false}}, {RejectStmt{}})})}));
  EXPECT_EQ(run(r, tcp("192.168.1.1", "10.96.0.1", 80)).verdict, TraceVerdict::REJECT);
}

// ---- hooks and masquerade ---------------------------------------------------------

TEST(Trace, LocallyGeneratedPacketsTakeTheOutputHook) {
  const auto r = ruleset(table({
      base("out", Hook::Output, -100, {always({DnatStmt{ip("10.1.0.6"), 80}})}),
      base("pre", Hook::Prerouting, -100, {always({DnatStmt{ip("10.1.0.5"), 80}})}),
  }));
  auto packet = tcp("192.168.1.10", "10.96.0.1", 80);
  packet.locally_generated = true;
  const auto result = run(r, packet);
  EXPECT_THAT(result.endpoints, ElementsAre(ep("10.1.0.6", 80)));
  EXPECT_THAT(result.chains, ElementsAre("out"));
}

// Services -> mark for masquerade -> dnat; postrouting masquerades marked
// packets and hairpin connections, like the compiled ruleset.
Ruleset masquerade_ruleset(bool mark) {
  std::vector<Rule> svc;
  if (mark) svc.push_back(always({jump("mark-for-masquerade")}));
  // ep-b first: results must come out sorted whatever the branch order.
  svc.push_back(always({NumgenVmapStmt{{"ep-b", "ep-a"}}}));
  return ruleset(table(
      {
          base("nat-prerouting", Hook::Prerouting, -100, {always({jump("svc")})}),
          base("nat-postrouting", Hook::Postrouting, 100, {always({jump("masquerading")})}),
          chain("svc", std::move(svc)),
          chain("mark-for-masquerade", {always({MarkStmt{kMasqBit, false}})}),
          chain("ep-a", {rule({ProtoMatch{Protocol::TCP}}, {DnatStmt{ip("10.244.1.5"), 8080}})}),
          chain("ep-b", {rule({ProtoMatch{Protocol::TCP}}, {DnatStmt{ip("10.244.2.7"), 8080}})}),
          masquerading_chain(),
      },
      {[] {
        Set s;
        s.name = "hairpin";
        s.key = {KeyType::Addr, KeyType::Addr};
        for (const char* a : {"10.244.1.5", "10.244.2.7"})
          s.elements.push_back(Element{{ip(a), ip(a)}, std::nullopt, {}});
        return s;
      }()}));
}

TEST(Trace, MarkedPacketsAreMasqueradedToEveryEndpoint) {
  const auto result = run(masquerade_ruleset(true), tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::DNAT);
  EXPECT_TRUE(result.masquerade);
  EXPECT_THAT(result.masquerade_endpoints, ElementsAre(ep("10.244.1.5", 8080), ep("10.244.2.7", 8080)));
  EXPECT_THAT(result.chains, ElementsAre("nat-prerouting", "svc", "mark-for-masquerade", "ep-b", "ep-a",
                                         "nat-postrouting", "masquerading"));
}

TEST(Trace, UnmarkedPacketsAreNotMasqueraded) {
  const auto result = run(masquerade_ruleset(false), tcp("10.244.3.3", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::DNAT);
  EXPECT_FALSE(result.masquerade);
  EXPECT_THAT(result.masquerade_endpoints, IsEmpty());
}

TEST(Trace, HairpinMasqueradesOnlyTheEndpointThatIsTheClient) {
  const auto result = run(masquerade_ruleset(false), tcp("10.244.2.7", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::DNAT);
  EXPECT_TRUE(result.masquerade);
  EXPECT_THAT(result.endpoints, ElementsAre(ep("10.244.1.5", 8080), ep("10.244.2.7", 8080)));
  EXPECT_THAT(result.masquerade_endpoints, ElementsAre(ep("10.244.2.7", 8080)));
}

TEST(Trace, CtStatusDnatOnlyHoldsAfterDnat) {
  const auto r = ruleset(table({
      base("pre", Hook::Prerouting, -100,
           {rule({CtDnatMatch{}}, {drop()}),
            rule({ProtoMatch{Protocol::TCP}}, {DnatStmt{ip("10.244.1.5"), 80}})}),
      base("post", Hook::Postrouting, 100, {rule({CtDnatMatch{}}, {MasqueradeStmt{}})}),
  }));
  auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::DNAT);
  EXPECT_THAT(result.masquerade_endpoints, ElementsAre(ep("10.244.1.5", 80)));
  auto udp = tcp("192.168.1.1", "10.96.0.1", 80);
  udp.protocol = Protocol::UDP;
  result = run(r, udp);
  EXPECT_EQ(result.verdict, TraceVerdict::ACCEPT);
  EXPECT_FALSE(result.masquerade);
}

TEST(Trace, PostroutingSeesTheTranslatedDestination) {
  const auto r = ruleset(table({
      base("pre", Hook::Prerouting, -100, {always({NumgenVmapStmt{{"a", "b"}}})}),
      chain("a", {always({DnatStmt{ip("10.244.1.5"), 80}})}),
      chain("b", {always({DnatStmt{ip("10.244.2.7"), 8080}})}),
      base("post", Hook::Postrouting, 100,
           {rule({AddrMatch{KeyField::DstAddr, false, cidr("10.244.2.0/24"), {}}}, {MasqueradeStmt{}})}),
  }));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_THAT(result.masquerade_endpoints, ElementsAre(ep("10.244.2.7", 8080)));
}

TEST(Trace, MarkTravelsFromPreroutingToPostrouting) {
  const auto r = ruleset(table(
      {
          base("pre", Hook::Prerouting, -100, {always({NumgenVmapStmt{{"a", "b"}}})}),
          chain("a", {always({MarkStmt{kMasqBit, false}, DnatStmt{ip("10.244.1.5"), 80}})}),
          chain("b", {always({DnatStmt{ip("10.244.2.7"), 80}})}),
          base("post", Hook::Postrouting, 100, {always({jump("masquerading")})}),
          masquerading_chain(),
      },
      {Set{"hairpin", {KeyType::Addr, KeyType::Addr}, {}, false, false, false, 0, {}}}));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_THAT(result.endpoints, ElementsAre(ep("10.244.1.5", 80), ep("10.244.2.7", 80)));
  EXPECT_THAT(result.masquerade_endpoints, ElementsAre(ep("10.244.1.5", 80)));
}

TEST(Trace, AcceptedPacketsAreMasqueradedWithoutEndpoints) {
  const auto r = ruleset(table({
      base("pre", Hook::Prerouting, -100, {always({MarkStmt{kMasqBit, false}})}),
      base("post", Hook::Postrouting, 100, {rule({MarkMatch{kMasqBit, false}}, {MasqueradeStmt{}})}),
  }));
  const auto result = run(r, tcp("192.168.1.1", "10.50.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::ACCEPT);
  EXPECT_TRUE(result.masquerade);
  EXPECT_THAT(result.endpoints, IsEmpty());
  EXPECT_THAT(result.masquerade_endpoints, IsEmpty());
}

TEST(Trace, LocallyDeliveredPacketsSkipPostrouting) {
  // Arriving for a local address (or DNATed to one), the packet goes up
  // through input, never through postrouting; generated locally it does.
  const auto r = ruleset(table({
      base("pre", Hook::Prerouting, -100, {}),
      base("out", Hook::Output, -100, {}),
      base("post", Hook::Postrouting, 100, {always({MasqueradeStmt{}})}),
  }));
  TraceEnvironment env;
  env.local_addresses = {ip("192.168.1.10")};
  auto result = run(r, tcp("192.168.1.1", "192.168.1.10", 22), env);
  EXPECT_FALSE(result.masquerade);
  EXPECT_THAT(result.chains, ElementsAre("pre"));
  auto local = tcp("192.168.1.10", "192.168.1.10", 22);
  local.locally_generated = true;
  result = run(r, local, env);
  EXPECT_TRUE(result.masquerade);
  EXPECT_THAT(result.chains, ElementsAre("out", "post"));
}

TEST(Trace, DroppedPacketsSkipPostrouting) {
  const auto r = ruleset(table({
      base("pre", Hook::Prerouting, -100, {always({RejectStmt{}})}),
      base("post", Hook::Postrouting, 100, {always({MasqueradeStmt{}})}),
  }));
  const auto result = run(r, tcp("192.168.1.1", "10.96.0.1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::REJECT);
  EXPECT_FALSE(result.masquerade);
  EXPECT_THAT(result.chains, ElementsAre("pre"));
}

TEST(Trace, MasqueradeOutsidePostroutingIsAnError) {
  const auto r = ruleset(table({base("pre", Hook::Prerouting, -100, {always({MasqueradeStmt{}})})}));
  EXPECT_THROW(run(r, tcp("192.168.1.1", "10.96.0.1", 80)), std::runtime_error);
}

// ---- IPv6 ------------------------------------------------------------------------

TEST(Trace, Ipv6UsesTheIp6Table) {
  Ruleset r;
  r.tables.push_back(table({base("pre", Hook::Prerouting, -100, {always({DnatStmt{ip("10.1.0.5"), 80}})})}));
  Set map;
  map.name = "dnat-2";
  map.key = {KeyType::Addr, KeyType::Proto, KeyType::Port, KeyType::Slot};
  map.data = {KeyType::Addr, KeyType::Port};
  map.elements = {Element{{ip("fd00:10:96::1"), Protocol::TCP, uint16_t{80}, uint32_t{0}},
                          std::nullopt,
                          {ip("fd00:10:244::5"), uint16_t{8080}}},
                  Element{{ip("fd00:10:96::1"), Protocol::TCP, uint16_t{80}, uint32_t{1}},
                          std::nullopt,
                          {ip("fd00:10:244::6"), uint16_t{8080}}}};
  r.tables.push_back(table(
      {
          base("pre6", Hook::Prerouting, -100,
               {rule({AddrMatch{KeyField::SrcAddr, false, std::nullopt, "cluster-cidrs"}},
                     {DnatMapStmt{kSlotKey, "dnat-2", 2}})}),
          base("post6", Hook::Postrouting, 100,
               {rule({CtDnatMatch{}, SetMatch{{KeyField::SrcAddr, KeyField::DstAddr}, "hairpin"}},
                     {MasqueradeStmt{}})}),
      },
      {addr_set("cluster-cidrs", {cidr("fd00:10:244::/48")}, true), map,
       Set{"hairpin",
           {KeyType::Addr, KeyType::Addr},
           {},
           false,
           false,
           false,
           0,
           {Element{{ip("fd00:10:244::6"), ip("fd00:10:244::6")}, std::nullopt, {}}}}},
      IPFamily::V6));
  const auto result = run(r, tcp("fd00:10:244::6", "fd00:10:96::1", 80));
  EXPECT_EQ(result.verdict, TraceVerdict::DNAT);
  EXPECT_THAT(result.endpoints, ElementsAre(ep("fd00:10:244::5", 8080), ep("fd00:10:244::6", 8080)));
  EXPECT_THAT(result.masquerade_endpoints, ElementsAre(ep("fd00:10:244::6", 8080)));
  EXPECT_THAT(result.chains, ElementsAre("pre6", "post6"));
  EXPECT_EQ(run(r, tcp("fd00:10:245::1", "fd00:10:96::1", 80)).verdict, TraceVerdict::ACCEPT);
  EXPECT_THAT(result.to_json(), HasSubstr("\"[fd00:10:244::5]:8080\""));
}

TEST(Trace, DnatToTheWrongFamilyIsAnError) {
  const auto r =
      ruleset(table({base("pre", Hook::Prerouting, -100, {always({DnatStmt{ip("fd00::1"), 80}})})}));
  EXPECT_THROW(run(r, tcp("192.168.1.1", "10.96.0.1", 80)), std::runtime_error);
}

TEST(Trace, MixedFamilyPacketIsAnError) {
  const auto r = ruleset(table({}));
  EXPECT_THROW(run(r, tcp("192.168.1.1", "fd00::1", 80)), std::runtime_error);
}

// ---- output ----------------------------------------------------------------------

TEST(TraceResult, JsonShape) {
  TraceResult result;
  result.verdict = TraceVerdict::DNAT;
  result.endpoints = {ep("10.1.2.3", 8080), ep("fd00::1", 80)};
  result.masquerade = true;
  result.masquerade_endpoints = {ep("10.1.2.3", 8080)};
  result.chains = {"nat-prerouting", "we\"ird\\name\n"};
  EXPECT_EQ(
      result.to_json(),
      "{\"verdict\": \"DNAT\", \"endpoints\": [\"10.1.2.3:8080\", \"[fd00::1]:80\"], \"masquerade\": true, "
      "\"masquerade_endpoints\": [\"10.1.2.3:8080\"], "
      "\"chains\": [\"nat-prerouting\", \"we\\\"ird\\\\name\\n\"]}");
}

TEST(TraceResult, JsonOfAnEmptyResult) {
  EXPECT_EQ(
      TraceResult{}.to_json(),
      "{\"verdict\": \"ACCEPT\", \"endpoints\": [], \"masquerade\": false, \"masquerade_endpoints\": [], "
      "\"chains\": []}");
}

TEST(TraceResult, TextNamesVerdictTargetsMasqueradeAndChains) {
  const auto result = run(masquerade_ruleset(false), tcp("10.244.2.7", "10.96.0.1", 80));
  const std::string text = result.to_text();
  EXPECT_THAT(text, HasSubstr("DNAT"));
  EXPECT_THAT(text, HasSubstr("10.244.1.5:8080"));
  EXPECT_THAT(text, HasSubstr("masquerade: for 1 of 2 endpoints: 10.244.2.7:8080"));
  EXPECT_THAT(text, HasSubstr("nat-prerouting"));
  EXPECT_THAT(text, HasSubstr("masquerading"));

  TraceResult rejected;
  rejected.verdict = TraceVerdict::REJECT;
  EXPECT_THAT(rejected.to_text(), HasSubstr("REJECT"));
  EXPECT_THAT(rejected.to_text(), HasSubstr("masquerade: no"));
}

TEST(TraceVerdictNames, AllFour) {
  EXPECT_EQ(to_string(TraceVerdict::DNAT), "DNAT");
  EXPECT_EQ(to_string(TraceVerdict::DROP), "DROP");
  EXPECT_EQ(to_string(TraceVerdict::REJECT), "REJECT");
  EXPECT_EQ(to_string(TraceVerdict::ACCEPT), "ACCEPT");
}

// ---- IR lookups ----------------------------------------------------------------------

TEST(IrLookup, FindsByNameSortedOrNot) {
  Table t = table({chain("a", {}), chain("c", {}), chain("e", {})}, {addr_set("x", {}), addr_set("y", {})});
  ASSERT_NE(t.find_chain("c"), nullptr);
  EXPECT_EQ(t.find_chain("c")->name, "c");
  EXPECT_EQ(t.find_chain("b"), nullptr);
  EXPECT_EQ(t.find_set("y")->name, "y");
  EXPECT_EQ(t.find_set("z"), nullptr);
  std::swap(t.chains[0], t.chains[2]);  // e c a: unsorted still works
  ASSERT_NE(t.find_chain("a"), nullptr);
  EXPECT_EQ(t.find_chain("a")->name, "a");

  Ruleset r;
  r.tables.push_back(table({}, {}, IPFamily::V6));
  EXPECT_EQ(r.find_table(IPFamily::V4), nullptr);
  ASSERT_NE(r.find_table(IPFamily::V6), nullptr);
  EXPECT_EQ(family_keyword(IPFamily::V4), "ip");
  EXPECT_EQ(family_keyword(IPFamily::V6), "ip6");
}

}  // namespace
}  // namespace svcproxy::dataplane
