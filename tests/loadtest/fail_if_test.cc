#include "loadtest/fail_if.h"

#include <gtest/gtest.h>

namespace svcproxy::loadtest {
namespace {

Report sample() {
  Report r;
  r.requests = 1000;
  r.duration_s = 2;
  r.latency.p99_us = 73'200;
  r.latency.p50_us = 900;
  r.errors.timeout = 3;
  r.fairness.chi2_p = 0.5;
  return r;
}

TEST(FailIf, ParsesTheIssuesExample) {
  auto parsed = parse_fail_if("p99>50ms,errors>0,violations>0,fairness<0.01");
  ASSERT_EQ(parsed.error, "");
  ASSERT_EQ(parsed.conditions.size(), 4u);
  EXPECT_EQ(parsed.conditions[0].key, "p99");
  EXPECT_EQ(parsed.conditions[0].op, ">");
  EXPECT_DOUBLE_EQ(parsed.conditions[0].value, 50'000);
  EXPECT_EQ(parsed.conditions[3].op, "<");
  EXPECT_DOUBLE_EQ(parsed.conditions[3].value, 0.01);
}

TEST(FailIf, Units) {
  EXPECT_DOUBLE_EQ(parse_fail_if("p50>2s").conditions.at(0).value, 2e6);
  EXPECT_DOUBLE_EQ(parse_fail_if("max>=750us").conditions.at(0).value, 750);
  EXPECT_DOUBLE_EQ(parse_fail_if("p999 <= 1.5ms").conditions.at(0).value, 1500);
  EXPECT_EQ(parse_fail_if("p999 <= 1.5ms").conditions.at(0).op, "<=");
  EXPECT_DOUBLE_EQ(parse_fail_if("p90>100").conditions.at(0).value, 100);
}

TEST(FailIf, Rejects) {
  EXPECT_NE(parse_fail_if("p98>1ms").error.find("unknown key \"p98\""), std::string::npos);
  EXPECT_NE(parse_fail_if("p99>1h").error.find("unit"), std::string::npos);
  EXPECT_NE(parse_fail_if("errors>1ms").error, "");
  EXPECT_NE(parse_fail_if("errors=1").error, "");
  EXPECT_NE(parse_fail_if("errors>x").error, "");
  EXPECT_NE(parse_fail_if("").error, "");
}

TEST(FailIf, ReturnsTheConditionsThatHold) {
  auto parsed = parse_fail_if("p99>50ms,p50>1ms,errors>0,violations>0,fairness<0.01,rps>=500,timeout>2");
  ASSERT_EQ(parsed.error, "");
  auto held = evaluate_fail_if(parsed.conditions, sample());
  ASSERT_EQ(held.size(), 4u);
  EXPECT_EQ(held[0], "p99>50ms (p99 was 73.2ms)");
  EXPECT_EQ(held[1], "errors>0 (errors was 3)");
  EXPECT_EQ(held[2], "rps>=500 (rps was 500)");
  EXPECT_EQ(held[3], "timeout>2 (timeout was 3)");
}

TEST(FailIf, ViolationsCountAnswers) {
  Report r = sample();
  r.violations.push_back({"10.0.0.9:80", 12, "unready"});
  auto held = evaluate_fail_if(parse_fail_if("violations>10").conditions, r);
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0], "violations>10 (violations was 12)");
}

}  // namespace
}  // namespace svcproxy::loadtest
