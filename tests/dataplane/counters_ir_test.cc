// Named counters in the IR without a kernel: how `rules` prints them (text
// and JSON), and the fake kernel's checks of a diff that adds and deletes
// them (what the real kernel refuses, it refuses).
#include <gtest/gtest.h>

#include "dataplane/render.h"
#include "tests/support/fake_ruleset_kernel.h"
#include "tests/support/ip.h"

namespace svcproxy::dataplane {
namespace {

using ir::KeyField;
using ir::KeyType;

ir::Ruleset counted() {
  ir::Table t;
  t.counters = {{"c1"}, {"c2"}};
  ir::Set m;
  m.name = "m";
  m.key = {KeyType::Proto, KeyType::Port};
  m.is_counter_map = true;
  m.elements.push_back({{model::Protocol::TCP, uint16_t{80}}, std::nullopt, {}, "c1"});
  t.sets.push_back(m);
  t.chains.push_back(ir::Chain{"c",
                               std::nullopt,
                               {ir::Rule{{}, {ir::CounterMapStmt{{KeyField::L4Proto, KeyField::DstPort}, "m"}}, {}},
                                ir::Rule{{}, {ir::CounterStmt{"c2"}, ir::Verdict{ir::VerdictKind::Drop, {}}}, {}}}});
  ir::Ruleset r;
  r.tables.push_back(t);
  return r;
}

TEST(CountersIR, RenderAsNftListsThem) {
  const std::string text = render_nft(counted(), {false});
  EXPECT_EQ(text,
            "table ip svcproxy {\n"
            "\tcomment \"managed by svcproxy; edits are reverted\"\n"
            "\tcounter c1 {\n\t\tpackets 0 bytes 0\n\t}\n\n"
            "\tcounter c2 {\n\t\tpackets 0 bytes 0\n\t}\n\n"
            "\tmap m {\n\t\ttype inet_proto . inet_service : counter\n"
            "\t\telements = { tcp . 80 : \"c1\" }\n\t}\n\n"
            "\tchain c {\n"
            "\t\tcounter name meta l4proto . th dport map @m\n"
            "\t\tcounter name \"c2\" drop\n"
            "\t}\n"
            "}\n");
  const std::string json = render_json(counted());
  EXPECT_NE(json.find("\"counters\":[\"c1\",\"c2\"]"), std::string::npos) << json;
  EXPECT_NE(json.find("\"data\":\"counter\""), std::string::npos) << json;
  EXPECT_NE(json.find("{\"key\":[\"tcp\",\"80\"],\"counter\":\"c1\"}"), std::string::npos) << json;
  EXPECT_NE(json.find("\"counter name \\\"c2\\\" drop\""), std::string::npos) << json;
}

TEST(CountersIR, FakeKernelAddsAndDeletesCountersAsTheKernelWould) {
  ir::Ruleset r = counted();
  TableDiff td;
  td.added_counters = {{"c3"}};
  td.added_elements = {{"m", ir::Element{{model::Protocol::UDP, uint16_t{53}}, std::nullopt, {}, "c3"}}};
  RulesetDiff diff;
  diff.tables = {td};
  testing::apply_diff(r, diff);
  ASSERT_EQ(r.tables[0].counters.size(), 3u);
  EXPECT_EQ(r.tables[0].counters[2].name, "c3");
  EXPECT_EQ(r.tables[0].sets[0].elements.size(), 2u);

  auto refused = [&](TableDiff bad) {
    RulesetDiff d;
    d.tables = {std::move(bad)};
    ir::Ruleset copy = r;
    EXPECT_THROW(testing::apply_diff(copy, d), std::runtime_error);
  };
  TableDiff exists;
  exists.added_counters = {{"c1"}};
  refused(exists);
  TableDiff in_use_by_element;
  in_use_by_element.deleted_counters = {"c1"};
  refused(in_use_by_element);
  TableDiff in_use_by_rule;
  in_use_by_rule.deleted_counters = {"c2"};
  refused(in_use_by_rule);
  TableDiff absent_target;
  absent_target.added_elements = {{"m", ir::Element{{model::Protocol::UDP, uint16_t{54}}, std::nullopt, {}, "nope"}}};
  refused(absent_target);

  // Deleting the element, then the counter, in one diff is fine.
  TableDiff gone;
  gone.deleted_elements = td.added_elements;
  gone.deleted_counters = {"c3"};
  RulesetDiff d;
  d.tables = {gone};
  testing::apply_diff(r, d);
  EXPECT_EQ(r.tables[0].counters.size(), 2u);
}

}  // namespace
}  // namespace svcproxy::dataplane
