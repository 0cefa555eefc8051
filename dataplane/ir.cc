#include "dataplane/ir.h"

#include <algorithm>

namespace svcproxy::dataplane::ir {
namespace {

// Tables keep sets and chains sorted by name, so a lookup is a binary search.
// Hand-built IR (tests, tools) may not honour the order; a miss therefore
// falls back to a linear scan, which costs nothing on the common (hit) path
// and keeps an unsorted table correct rather than subtly wrong.
template <typename T>
const T* find_by_name(const std::vector<T>& items, std::string_view name) {
  size_t lo = 0;
  size_t hi = items.size();
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    const int cmp = std::string_view(items[mid].name).compare(name);
    if (cmp == 0) {
      return &items[mid];
    }
    if (cmp < 0) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  const auto it = std::find_if(items.begin(), items.end(), [&](const T& item) { return item.name == name; });
  return it == items.end() ? nullptr : &*it;
}

}  // namespace

void sort_elements(std::vector<Element>& elements) {
  if (std::is_sorted(elements.begin(), elements.end())) return;
  std::sort(elements.begin(), elements.end());
}

const Set* Table::find_set(std::string_view set_name) const { return find_by_name(sets, set_name); }

const Chain* Table::find_chain(std::string_view chain_name) const { return find_by_name(chains, chain_name); }

const Table* Ruleset::find_table(IPFamily family) const {
  const auto it =
      std::find_if(tables.begin(), tables.end(), [&](const Table& table) { return table.family == family; });
  return it == tables.end() ? nullptr : &*it;
}

std::string_view family_keyword(IPFamily family) {
  switch (family) {
    case IPFamily::V4:
      return "ip";
    case IPFamily::V6:
      return "ip6";
  }
  return "ip";
}

}  // namespace svcproxy::dataplane::ir
