#include "dataplane/drift.h"

#include <algorithm>

#include "dataplane/render.h"

namespace svcproxy::dataplane {
namespace {

bool same_definition(const ir::Set& a, const ir::Set& b) {
  return a.key == b.key && a.data == b.data && a.is_verdict_map == b.is_verdict_map && a.interval == b.interval &&
         a.dynamic == b.dynamic && a.timeout_seconds == b.timeout_seconds;
}

// Comments are for readers of the IR; the kernel does not keep them.
bool same_rules(const ir::Chain& a, const ir::Chain& b) {
  return std::equal(
      a.rules.begin(), a.rules.end(), b.rules.begin(), b.rules.end(),
      [](const ir::Rule& x, const ir::Rule& y) { return x.matches == y.matches && x.statements == y.statements; });
}

void sort_if_needed(std::vector<ir::Element>& elements) {
  if (!std::is_sorted(elements.begin(), elements.end())) ir::sort_elements(elements);
}

// Walks two name-sorted lists together: both(a, b), only_a(a), only_b(b).
template <typename T, typename Both, typename OnlyA, typename OnlyB>
void merge_by_name(std::vector<T>& a, std::vector<T>& b, Both both, OnlyA only_a, OnlyB only_b) {
  auto by_name = [](const T& x, const T& y) { return x.name < y.name; };
  std::sort(a.begin(), a.end(), by_name);
  std::sort(b.begin(), b.end(), by_name);
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (j == b.size() || (i < a.size() && a[i].name < b[j].name)) {
      only_a(a[i++]);
    } else if (i == a.size() || b[j].name < a[i].name) {
      only_b(b[j++]);
    } else {
      both(a[i++], b[j++]);
    }
  }
}

// Element differences of one set present on both sides, definitions equal.
void diff_elements(ir::Set& kernel, ir::Set& expected, TableDiff& out, bool& needs_full) {
  if (expected.dynamic) return;  // packet-path state, not read back
  sort_if_needed(kernel.elements);
  sort_if_needed(expected.elements);
  // A dump that a commit raced may repeat an element (read_tables_racy).
  kernel.elements.erase(std::unique(kernel.elements.begin(), kernel.elements.end()), kernel.elements.end());
  if (expected.interval) {
    if (kernel.elements != expected.elements) needs_full = true;
    return;
  }
  auto& ke = kernel.elements;
  auto& ee = expected.elements;
  size_t i = 0, j = 0;
  while (i < ke.size() || j < ee.size()) {
    if (j == ee.size() || (i < ke.size() && ke[i] < ee[j])) {
      out.deleted_elements.emplace_back(expected.name, std::move(ke[i++]));
    } else if (i == ke.size() || ee[j] < ke[i]) {
      out.added_elements.emplace_back(expected.name, std::move(ee[j++]));
    } else {
      ++i, ++j;
    }
  }
}

TableDiff diff_table(ir::Table& kernel, ir::Table& expected, bool& needs_full) {
  TableDiff out;
  out.family = expected.family;
  merge_by_name(
      kernel.sets, expected.sets,
      [&](ir::Set& k, ir::Set& e) {
        if (!same_definition(k, e)) {
          needs_full = true;
          return;
        }
        diff_elements(k, e, out, needs_full);
      },
      [&](ir::Set& k) { out.deleted_sets.push_back(k.name); },
      [&](ir::Set& e) { out.added_sets.push_back(std::move(e)); });
  merge_by_name(
      kernel.chains, expected.chains,
      [&](ir::Chain& k, ir::Chain& e) {
        if (k.base != e.base) {
          needs_full = true;
          return;
        }
        if (!same_rules(k, e)) out.replaced_chains.push_back(std::move(e));
      },
      [&](ir::Chain& k) { out.deleted_chains.push_back(k.name); },
      [&](ir::Chain& e) { out.added_chains.push_back(std::move(e)); });
  return out;
}

std::string element_text(const ir::Element& e) {
  std::string text;
  for (const auto& v : e.key) text += (text.empty() ? "" : " . ") + render_value(v);
  return text;
}

}  // namespace

RulesetDiff drift_repair(ir::Ruleset kernel, ir::Ruleset expected) {
  RulesetDiff repair;
  for (auto& table : expected.tables) {
    auto held = std::find_if(kernel.tables.begin(), kernel.tables.end(),
                             [&](const ir::Table& t) { return t.family == table.family && t.name == table.name; });
    if (held == kernel.tables.end()) {
      repair.needs_full_sync = true;  // a table is created by a full sync only
      continue;
    }
    repair.tables.push_back(diff_table(*held, table, repair.needs_full_sync));
  }
  return repair;
}

void distrust_missing_chains(RulesetDiff& repair) {
  for (auto& t : repair.tables) {
    for (auto& chain : t.added_chains) t.replaced_chains.push_back(std::move(chain));
    t.added_chains.clear();
  }
}

DriftSummary summarize(const RulesetDiff& repair) {
  DriftSummary s;
  s.full = repair.needs_full_sync;
  for (const auto& t : repair.tables) {
    const std::string family(ir::family_keyword(t.family));
    auto name = [&](const std::string& what) {
      if (s.objects.size() < DriftSummary::kMaxNamed) s.objects.push_back(family + " " + what);
    };
    s.missing_elements += t.added_elements.size();
    s.extra_elements += t.deleted_elements.size();
    s.missing_sets += t.added_sets.size();
    s.extra_sets += t.deleted_sets.size();
    s.missing_chains += t.added_chains.size();
    s.extra_chains += t.deleted_chains.size();
    s.changed_chains += t.replaced_chains.size();
    for (const auto& [set, e] : t.added_elements) name(set + " missing element " + element_text(e));
    for (const auto& [set, e] : t.deleted_elements) name(set + " extra element " + element_text(e));
    for (const auto& set : t.added_sets) name("missing set " + set.name);
    for (const auto& set : t.deleted_sets) name("extra set " + set);
    for (const auto& chain : t.replaced_chains) name("changed chain " + chain.name);
    for (const auto& chain : t.added_chains) name("missing chain " + chain.name);
    for (const auto& chain : t.deleted_chains) name("extra chain " + chain);
  }
  return s;
}

void ChangedSinceSnapshot::record(const RulesetDiff& applied) {
  for (const auto& t : applied.tables) {
    for (const auto& set : t.added_sets) objects_.insert({t.family, 's', set.name});
    for (const auto& name : t.deleted_sets) objects_.insert({t.family, 's', name});
    for (const auto& chain : t.added_chains) objects_.insert({t.family, 'c', chain.name});
    for (const auto& chain : t.replaced_chains) objects_.insert({t.family, 'c', chain.name});
    for (const auto& name : t.deleted_chains) objects_.insert({t.family, 'c', name});
    for (const auto& [set, e] : t.added_elements) elements_.insert({t.family, set, e.key});
    for (const auto& [set, e] : t.deleted_elements) elements_.insert({t.family, set, e.key});
  }
}

void ChangedSinceSnapshot::drop_from(RulesetDiff& repair) const {
  if (empty()) return;
  for (auto& t : repair.tables) {
    const auto family = t.family;
    auto set_touched = [&](const std::string& name) { return touched(family, 's', name); };
    auto chain_touched = [&](const std::string& name) { return touched(family, 'c', name); };
    auto element_touched = [&](const std::pair<std::string, ir::Element>& e) {
      return set_touched(e.first) || elements_.contains({family, e.first, e.second.key});
    };
    std::erase_if(t.added_sets, [&](const ir::Set& s) { return set_touched(s.name); });
    std::erase_if(t.deleted_sets, set_touched);
    std::erase_if(t.added_chains, [&](const ir::Chain& c) { return chain_touched(c.name); });
    std::erase_if(t.replaced_chains, [&](const ir::Chain& c) { return chain_touched(c.name); });
    std::erase_if(t.deleted_chains, chain_touched);
    std::erase_if(t.added_elements, element_touched);
    std::erase_if(t.deleted_elements, element_touched);
  }
}

void ChangedSinceSnapshot::clear() {
  objects_.clear();
  elements_.clear();
}

}  // namespace svcproxy::dataplane
