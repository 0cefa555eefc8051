#include "base/result.h"

#include <gtest/gtest.h>

#include <memory>

namespace svcproxy::base {
namespace {

Result<int> parse_digit(char c) {
  if (c < '0' || c > '9') return Error{std::string("not a digit: '") + c + "'"};
  return c - '0';
}

Result<void> check_even(int n) {
  if (n % 2 != 0) return Error{std::to_string(n) + " is odd"};
  return {};
}

TEST(ResultTest, HoldsTheValue) {
  auto r = parse_digit('7');
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r);
  EXPECT_EQ(*r, 7);
  EXPECT_EQ(r.value(), 7);
}

TEST(ResultTest, HoldsTheError) {
  auto r = parse_digit('x');
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(r);
  EXPECT_EQ(r.error(), "not a digit: 'x'");
}

TEST(ResultTest, MovesAMoveOnlyValueOut) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(3);
  std::unique_ptr<int> p = std::move(r).value();
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(*p, 3);
}

TEST(ResultTest, VoidIsOkOrAnError) {
  EXPECT_TRUE(check_even(4).ok());
  const auto r = check_even(3);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.error(), "3 is odd");
}

}  // namespace
}  // namespace svcproxy::base
