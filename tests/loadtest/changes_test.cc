#include "loadtest/changes.h"

#include <gtest/gtest.h>

namespace svcproxy::loadtest {
namespace {

constexpr int64_t kMs = 1'000'000;

TEST(ChangeTracker, DrainAndFirstAnswer) {
  ChangeTracker t;
  ChangeTracker::Slot a, b;
  t.attach("a", a);
  t.attach("b", b);
  t.answer(a, 100 * kMs);
  t.answer(b, 110 * kMs);
  std::vector<ChangeRecord> changes{{1000 * kMs, {"a"}, {"c"}}};
  t.update(changes);
  t.answer(a, 1040 * kMs);  // a still answers 40 ms after the change
  t.answer(b, 1050 * kMs);
  ChangeTracker::Slot c;
  t.attach("c", c);
  t.answer(c, 1200 * kMs);
  t.answer(c, 1300 * kMs);
  auto results = ChangeTracker::results(changes, {&t}, 0);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].at_us, 1'000'000);
  EXPECT_EQ(results[0].drain_us, 40'000);
  EXPECT_EQ(results[0].first_answer_us, 200'000);
}

TEST(ChangeTracker, StoppedBeforeTheChangeIsNegative) {
  ChangeTracker t;
  ChangeTracker::Slot a;
  t.attach("a", a);
  t.answer(a, 900 * kMs);
  std::vector<ChangeRecord> changes{{1000 * kMs, {"a"}, {}}};
  t.update(changes);
  auto results = ChangeTracker::results(changes, {&t}, 0);
  EXPECT_EQ(results[0].drain_us, -100'000);
  EXPECT_FALSE(results[0].first_answer_us.has_value());
}

TEST(ChangeTracker, AnswersAfterAReaddDoNotExtendTheDrain) {
  ChangeTracker t;
  ChangeTracker::Slot a;
  t.attach("a", a);
  std::vector<ChangeRecord> changes{{1000 * kMs, {"a"}, {}}};
  t.update(changes);
  t.answer(a, 1010 * kMs);
  changes.push_back({2000 * kMs, {}, {"a"}});
  t.update(changes);
  t.answer(a, 2500 * kMs);
  auto results = ChangeTracker::results(changes, {&t}, 0);
  EXPECT_EQ(results[0].drain_us, 10'000);
  EXPECT_EQ(results[1].first_answer_us, 500'000);
}

TEST(ChangeTracker, WorkersMerge) {
  std::vector<ChangeRecord> changes{{1000 * kMs, {"a"}, {"b"}}};
  ChangeTracker t1, t2;
  ChangeTracker::Slot a1, b1, a2, b2;
  t1.attach("a", a1);
  t1.attach("b", b1);
  t2.attach("a", a2);
  t2.attach("b", b2);
  t1.update(changes);
  t2.update(changes);
  t1.answer(a1, 1005 * kMs);
  t2.answer(a2, 1030 * kMs);
  t1.answer(b1, 1100 * kMs);
  t2.answer(b2, 1080 * kMs);
  auto results = ChangeTracker::results(changes, {&t1, &t2}, 500 * kMs);
  EXPECT_EQ(results[0].at_us, 500'000);
  EXPECT_EQ(results[0].drain_us, 30'000);
  EXPECT_EQ(results[0].first_answer_us, 80'000);
}

}  // namespace
}  // namespace svcproxy::loadtest
