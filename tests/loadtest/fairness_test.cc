#include "loadtest/fairness.h"

#include <gtest/gtest.h>

#include <cmath>

namespace svcproxy::loadtest {
namespace {

TEST(Fairness, EvenCountsAreFair) {
  auto f = fairness_of({1000, 1000, 1000}, "answered");
  EXPECT_DOUBLE_EQ(f.chi2_p, 1.0);
  EXPECT_DOUBLE_EQ(f.max_min_ratio, 1.0);
  EXPECT_EQ(f.compared, 3u);
  EXPECT_EQ(f.basis, "answered");
}

TEST(Fairness, KnownChiSquareValue) {
  // chi2 = (10^2 + 10^2) / 100 = 2 with 1 degree of freedom: p = 0.1573.
  auto f = fairness_of({110, 90}, "expected");
  EXPECT_NEAR(f.chi2_p, 0.157299, 1e-5);
  EXPECT_NEAR(f.max_min_ratio, 110.0 / 90.0, 1e-12);
}

TEST(Fairness, SkewIsCaught) {
  auto f = fairness_of({1200, 900, 900}, "answered");
  EXPECT_LT(f.chi2_p, 1e-6);
  auto g = fairness_of({1000, 1000, 0}, "expected");
  EXPECT_LT(g.chi2_p, 1e-6);
  EXPECT_TRUE(std::isinf(g.max_min_ratio));
}

TEST(Fairness, NothingToCompare) {
  EXPECT_DOUBLE_EQ(fairness_of({500}, "answered").chi2_p, 1.0);
  EXPECT_DOUBLE_EQ(fairness_of({}, "answered").max_min_ratio, 1.0);
  EXPECT_DOUBLE_EQ(fairness_of({0, 0}, "expected").chi2_p, 1.0);
}

}  // namespace
}  // namespace svcproxy::loadtest
