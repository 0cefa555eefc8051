#include "loadtest/histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <stdexcept>

namespace svcproxy::loadtest {

Histogram::Histogram(int digits) : digits_(digits) {
  if (digits < 1 || digits > 4) throw std::invalid_argument("histogram: digits must be 1..4");
  // Enough linear sub-buckets that one bucket spans less than one unit of
  // the last significant digit: 2 * 10^digits, rounded up to a power of two.
  const auto needed = static_cast<uint64_t>(2 * std::pow(10.0, digits));
  sub_bits_ = static_cast<unsigned>(std::bit_width(needed - 1));
  sub_count_ = uint64_t{1} << sub_bits_;
  half_ = sub_count_ / 2;
  counts_.assign(index_of(kMaxValue) + 1, 0);
}

size_t Histogram::index_of(uint64_t value) const {
  if (value < sub_count_) return value;
  // value has bit_width w > sub_bits_: keep its top sub_bits_ bits.
  const unsigned shift = static_cast<unsigned>(std::bit_width(value)) - sub_bits_;
  const uint64_t sub = value >> shift;  // in [half_, sub_count_)
  return sub_count_ + (shift - 1) * half_ + (sub - half_);
}

uint64_t Histogram::highest_equivalent(size_t index) const {
  if (index < sub_count_) return index;
  const uint64_t above = index - sub_count_;
  const unsigned shift = static_cast<unsigned>(above / half_) + 1;
  const uint64_t sub = above % half_ + half_;
  return ((sub + 1) << shift) - 1;
}

void Histogram::record(uint64_t value, uint64_t times) {
  if (times == 0) return;
  max_ = std::max(max_, value);
  min_ = std::min(min_, value);
  counts_[index_of(std::min(value, kMaxValue))] += times;
  total_ += times;
}

void Histogram::merge(const Histogram& other) {
  if (other.digits_ != digits_) throw std::invalid_argument("histogram: merging different precisions");
  for (size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
  total_ += other.total_;
  max_ = std::max(max_, other.max_);
  min_ = std::min(min_, other.min_);
}

void Histogram::clear() {
  std::fill(counts_.begin(), counts_.end(), 0);
  total_ = 0;
  min_ = UINT64_MAX;
  max_ = 0;
}

uint64_t Histogram::percentile(double p) const {
  if (total_ == 0) return 0;
  p = std::clamp(p, 0.0, 100.0);
  auto rank = static_cast<uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_)));
  rank = std::clamp<uint64_t>(rank, 1, total_);
  uint64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::clamp(highest_equivalent(i), min(), max_);
  }
  return max_;
}

}  // namespace svcproxy::loadtest
