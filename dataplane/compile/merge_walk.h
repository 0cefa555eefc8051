// One walk over two sorted lists, the "before" and "after" of something a
// service port contributes (its elements, chains, sets; its hairpin
// addresses): every item only in `before` goes to removed(item), every item
// only in `after` to added(item), and every pair with equal keys to
// kept(before_item, after_item), in sorted order. O(before + after), no
// allocation: this is the inner loop of every update.
#pragma once

#include <cstddef>
#include <vector>

namespace svcproxy::dataplane::detail {

template <typename T, typename Less, typename Removed, typename Added, typename Kept>
void merge_walk(const std::vector<T>& before, const std::vector<T>& after, Less less, Removed removed, Added added,
                Kept kept) {
  size_t i = 0, j = 0;
  while (i < before.size() || j < after.size()) {
    if (j == after.size() || (i < before.size() && less(before[i], after[j]))) {
      removed(before[i++]);
    } else if (i == before.size() || less(after[j], before[i])) {
      added(after[j++]);
    } else {
      kept(before[i], after[j]);
      ++i, ++j;
    }
  }
}

}  // namespace svcproxy::dataplane::detail
