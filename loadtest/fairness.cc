#include "loadtest/fairness.h"

#include <algorithm>
#include <boost/math/distributions/chi_squared.hpp>
#include <limits>

namespace svcproxy::loadtest {

Fairness fairness_of(const std::vector<uint64_t>& counts, std::string basis) {
  Fairness result;
  result.basis = std::move(basis);
  result.compared = counts.size();
  if (counts.size() < 2) return result;
  double total = 0;
  for (uint64_t c : counts) total += static_cast<double>(c);
  const auto [min_it, max_it] = std::minmax_element(counts.begin(), counts.end());
  result.max_min_ratio = *min_it == 0 ? (*max_it == 0 ? 1.0 : std::numeric_limits<double>::infinity())
                                      : static_cast<double>(*max_it) / static_cast<double>(*min_it);
  if (total == 0) return result;
  const double expected = total / static_cast<double>(counts.size());
  double chi2 = 0;
  for (uint64_t c : counts) {
    const double d = static_cast<double>(c) - expected;
    chi2 += d * d / expected;
  }
  boost::math::chi_squared distribution(static_cast<double>(counts.size() - 1));
  result.chi2_p = boost::math::cdf(boost::math::complement(distribution, chi2));
  return result;
}

}  // namespace svcproxy::loadtest
