// The packed element (ir::ValueList / DataList, OptionalVerdict): every
// consumer relies on it reading back exactly the Values put in, and on its
// byte order being the Values' order (sorted sets, diffs, trace's index).
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "dataplane/ir.h"
#include "tests/support/ip.h"

namespace svcproxy::dataplane::ir {
namespace {

using test_support::cidr;
using test_support::ip;

// Values of every alternative and both families, including neighbours that
// differ in one byte.
std::vector<Value> sample_values() {
  return {ip("10.0.0.1"),      ip("10.0.0.2"),       ip("255.255.255.255"), ip("::1"),
          ip("fd00::1"),       ip("fd00::2"),        cidr("10.0.0.0/8"),    cidr("10.0.0.0/16"),
          cidr("fd00::/48"),   model::Protocol::TCP, model::Protocol::UDP,  model::Protocol::SCTP,
          uint16_t{0},         uint16_t{80},         uint16_t{65535},       uint32_t{0},
          uint32_t{1},         uint32_t{0x01000000}, uint32_t{0xffffffff}};
}

TEST(PackedValues, ReadsBackWhatWasPut) {
  for (const Value& a : sample_values()) {
    for (const Value& b : sample_values()) {
      ValueList list{a, b};
      ASSERT_EQ(list.size(), 2u);
      EXPECT_EQ(list[0], a);
      EXPECT_EQ(list[1], b);
      EXPECT_EQ(list.front(), a);
      EXPECT_EQ(list.back(), b);
      std::vector<Value> iterated(list.begin(), list.end());
      EXPECT_EQ(iterated, (std::vector<Value>{a, b}));
    }
  }
  ValueList key{ip("fd00::10"), model::Protocol::UDP, uint16_t{53}, uint32_t{7}};
  EXPECT_EQ(std::vector<Value>(key.begin(), key.end()),
            (std::vector<Value>{ip("fd00::10"), model::Protocol::UDP, uint16_t{53}, uint32_t{7}}));
  DataList data{ip("fd00::20"), uint16_t{8080}};
  EXPECT_EQ(data[0], Value(ip("fd00::20")));
  EXPECT_EQ(data[1], Value(uint16_t{8080}));
}

TEST(PackedValues, OrdersAsTheValuesDo) {
  // Random lists of 0-3 components: the packed order must equal the
  // lexicographic order of the Values (what sorted sets and trace rely on).
  const auto values = sample_values();
  std::mt19937 rng(42);
  std::vector<std::pair<std::vector<Value>, ValueList>> lists;
  while (lists.size() < 400) {
    std::vector<Value> list;
    const size_t n = rng() % 4;
    for (size_t k = 0; k < n; ++k) list.push_back(values[rng() % values.size()]);
    ValueList packed;
    try {
      for (const auto& v : list) packed.push_back(v);
    } catch (const std::length_error&) {
      continue;  // e.g. three IPv6 prefixes: more than any set's key
    }
    lists.emplace_back(std::move(list), packed);
  }
  for (const auto& [a, pa] : lists) {
    for (const auto& [b, pb] : lists) {
      const auto expected = std::lexicographical_compare_three_way(a.begin(), a.end(), b.begin(), b.end());
      ASSERT_EQ(pa <=> pb, expected);
      ASSERT_EQ(pa == pb, a == b);
    }
  }
}

TEST(PackedValues, ThrowsBeyondItsCapacity) {
  ValueList list{ip("fd00::1"), ip("fd00::2")};  // 34 of 38 bytes
  EXPECT_THROW(list.push_back(ip("fd00::3")), std::length_error);
  EXPECT_EQ(list.size(), 2u);
  list.clear();
  EXPECT_TRUE(list.empty());
  EXPECT_EQ(list, ValueList{});
}

TEST(OptionalVerdict, BehavesAsAnOptional) {
  Element plain{{ip("10.0.0.1")}, std::nullopt, {}};
  Element to_a{{ip("10.0.0.1")}, Verdict{VerdictKind::Goto, "a"}, {}};
  Element to_b{{ip("10.0.0.1")}, Verdict{VerdictKind::Goto, "b"}, {}};
  EXPECT_FALSE(plain.verdict);
  ASSERT_TRUE(to_a.verdict);
  EXPECT_EQ(to_a.verdict->chain, "a");
  EXPECT_LT(plain, to_a);  // no verdict first, as std::optional orders
  EXPECT_LT(to_a, to_b);
  Element copy = to_a;  // deep copy
  EXPECT_EQ(copy, to_a);
  copy.verdict = Verdict{VerdictKind::Jump, "c"};
  EXPECT_EQ(to_a.verdict->chain, "a");
  EXPECT_NE(copy, to_a);
  EXPECT_EQ(to_b.verdict.optional(), std::optional<Verdict>(Verdict{VerdictKind::Goto, "b"}));
  EXPECT_EQ(plain.verdict.optional(), std::nullopt);
  // 72 bytes plus the out-of-line counter name of counter maps' elements.
  EXPECT_LE(sizeof(Element), 80u);
}

TEST(ObjectName, BehavesAsAnOptionalName) {
  Element plain{{ip("10.0.0.1")}, std::nullopt, {}};
  Element to_a{{ip("10.0.0.1")}, std::nullopt, {}, "a"};
  Element to_b{{ip("10.0.0.1")}, std::nullopt, {}, "b"};
  EXPECT_FALSE(plain.object);
  ASSERT_TRUE(to_a.object);
  EXPECT_EQ(*to_a.object, "a");
  EXPECT_LT(plain, to_a);
  EXPECT_LT(to_a, to_b);
  Element copy = to_a;  // deep copy
  EXPECT_EQ(copy, to_a);
  copy.object = "c";
  EXPECT_EQ(*to_a.object, "a");
  EXPECT_NE(copy, to_a);
}

}  // namespace
}  // namespace svcproxy::dataplane::ir