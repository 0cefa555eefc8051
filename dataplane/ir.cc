#include "dataplane/ir.h"

#include <algorithm>
#include <array>
#include <cstring>

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

// Encodes a key so that memcmp order equals ValueList's operator<=>: each
// component is its variant index, then a fixed-width big-endian payload for
// that alternative (so components of different types are told apart by the
// index byte before any payload is compared).
using EncodedKey = std::array<uint8_t, 4 * 20 + 1>;

EncodedKey encode_key(const ValueList& key) {
  EncodedKey out{};
  size_t at = 0;
  for (const Value& value : key) {
    out[at++] = static_cast<uint8_t>(value.index() + 1);  // 0 marks "no more components"
    std::visit(
        [&](const auto& v) {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, model::IPAddress>) {
            out[at++] = static_cast<uint8_t>(v.family);
            std::memcpy(&out[at], v.bytes.data(), 16);
            at += 16;
          } else if constexpr (std::is_same_v<T, model::CIDR>) {
            out[at++] = static_cast<uint8_t>(v.address.family);
            std::memcpy(&out[at], v.address.bytes.data(), 16);
            at += 16;
            out[at++] = v.prefix;
          } else if constexpr (std::is_same_v<T, model::Protocol>) {
            out[at++] = static_cast<uint8_t>(v);
          } else if constexpr (std::is_same_v<T, uint16_t>) {
            out[at++] = static_cast<uint8_t>(v >> 8);
            out[at++] = static_cast<uint8_t>(v);
          } else {
            for (int shift = 24; shift >= 0; shift -= 8) out[at++] = static_cast<uint8_t>(v >> shift);
          }
        },
        value);
  }
  return out;
}

}  // namespace

void sort_elements(std::vector<Element>& elements) {
  if (std::is_sorted(elements.begin(), elements.end())) return;
  std::vector<EncodedKey> keys;
  keys.reserve(elements.size());
  for (const auto& e : elements) keys.push_back(encode_key(e.key));
  std::vector<uint32_t> order(elements.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
    const int c = std::memcmp(keys[a].data(), keys[b].data(), keys[a].size());
    return c != 0 ? c < 0 : elements[a] < elements[b];  // equal keys: rest of the element decides
  });
  // order[i] is the index of the element that belongs at i; follow cycles.
  for (uint32_t start = 0; start < order.size(); ++start) {
    if (order[start] == start) continue;
    Element held = std::move(elements[start]);
    uint32_t i = start;
    while (order[i] != start) {
      const uint32_t next = order[i];
      elements[i] = std::move(elements[next]);
      order[i] = i;
      i = next;
    }
    elements[i] = std::move(held);
    order[i] = i;
  }
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
