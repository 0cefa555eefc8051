// An HDR-style latency histogram: log-linear buckets, constant memory, exact
// below 2^(bits) and within one part in 2^(bits-1) above, so `digits`
// significant decimal digits hold up to kMaxValue (about 19 hours in
// microseconds). One per worker thread, merged at the end: recording is an
// increment, never a lock or an allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace svcproxy::loadtest {

class Histogram {
 public:
  // Values above this are recorded as this (the exact maximum is kept apart).
  static constexpr uint64_t kMaxValue = (uint64_t{1} << 36) - 1;

  // digits: significant decimal digits, 1..4 (3: one part in 1024).
  explicit Histogram(int digits = 3);

  void record(uint64_t value, uint64_t times = 1);
  // Adds `other`'s counts; both must have the same `digits`.
  void merge(const Histogram& other);
  void clear();

  uint64_t count() const { return total_; }
  uint64_t min() const { return total_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  // The value at percentile `p` (0..100): the highest value equivalent to the
  // bucket holding the ceil(p% * count)-th smallest sample, capped at max().
  uint64_t percentile(double p) const;
  int digits() const { return digits_; }
  size_t bucket_count() const { return counts_.size(); }

 private:
  size_t index_of(uint64_t value) const;
  uint64_t highest_equivalent(size_t index) const;

  int digits_;
  unsigned sub_bits_;       // log2 of the linear sub-bucket count
  uint64_t sub_count_;      // values below this are exact
  uint64_t half_;           // sub-buckets per doubling above sub_count_
  std::vector<uint64_t> counts_;
  uint64_t total_ = 0;
  uint64_t min_ = UINT64_MAX;
  uint64_t max_ = 0;
};

}  // namespace svcproxy::loadtest
