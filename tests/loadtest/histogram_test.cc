#include "loadtest/histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace svcproxy::loadtest {
namespace {

// The exact percentile of a sorted sample, by the same rank rule.
uint64_t exact(const std::vector<uint64_t>& sorted, double p) {
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

TEST(Histogram, ThreeSignificantDigitsUpTo60Seconds) {
  Histogram h(3);
  std::mt19937_64 rng(7);
  // Log-uniform from 1 us to 60 s.
  std::uniform_real_distribution<double> exponent(0, std::log(60e6));
  std::vector<uint64_t> values;
  for (int i = 0; i < 200000; ++i) {
    const auto v = static_cast<uint64_t>(std::exp(exponent(rng)));
    values.push_back(v);
    h.record(v);
  }
  std::sort(values.begin(), values.end());
  for (double p : {1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    const double want = static_cast<double>(exact(values, p));
    const double got = static_cast<double>(h.percentile(p));
    EXPECT_LE(std::abs(got - want), want / 1000.0 + 1) << "p" << p << " want " << want << " got " << got;
  }
  EXPECT_EQ(h.count(), values.size());
  EXPECT_EQ(h.max(), values.back());
  EXPECT_EQ(h.min(), values.front());
}

TEST(Histogram, SixtySecondsKeepsThreeDigits) {
  Histogram h(3);
  h.record(60'000'000);
  h.record(60'100'000);
  EXPECT_NE(h.percentile(50), h.percentile(100));
  EXPECT_NEAR(static_cast<double>(h.percentile(50)), 60e6, 60e6 / 1000);
}

TEST(Histogram, SmallValuesAreExact) {
  Histogram h(3);
  for (uint64_t v = 0; v < 2048; ++v) h.record(v);
  EXPECT_EQ(h.percentile(50), 1023u);
  EXPECT_EQ(h.percentile(100), 2047u);
}

TEST(Histogram, MemoryDoesNotGrowWithSamples) {
  Histogram h(3);
  const size_t buckets = h.bucket_count();
  for (uint64_t v = 1; v < 5'000'000; v += 7) h.record(v * 13);
  EXPECT_EQ(h.bucket_count(), buckets);
  EXPECT_LT(buckets * sizeof(uint64_t), 256u * 1024);
}

TEST(Histogram, MergeEqualsRecordingEverythingInOne) {
  Histogram a(3), b(3), all(3);
  for (uint64_t v = 1; v < 100000; v += 3) {
    (v % 2 ? a : b).record(v);
    all.record(v);
  }
  a.merge(b);
  for (double p : {50.0, 99.0, 99.9}) EXPECT_EQ(a.percentile(p), all.percentile(p));
  EXPECT_EQ(a.count(), all.count());
  Histogram other(2);
  EXPECT_THROW(a.merge(other), std::invalid_argument);
}

TEST(Histogram, HugeValuesSaturateButKeepTheExactMax) {
  Histogram h(3);
  h.record(UINT64_MAX / 2);
  EXPECT_EQ(h.max(), UINT64_MAX / 2);
  EXPECT_EQ(h.percentile(100), UINT64_MAX / 2);
  Histogram empty(3);
  EXPECT_EQ(empty.percentile(99), 0u);
}

}  // namespace
}  // namespace svcproxy::loadtest
