// Drift repair, the pure part: what the kernel holds (a readback) against
// what svcproxy compiled, as the RulesetDiff that makes the kernel equal the
// compiled ruleset again — only what drifted (someone deleted an element,
// flushed a chain, added a rogue element or chain). The periodic sync applies
// it as a partial transaction instead of rewriting a million elements (the
// full sync stalled every event for seconds at 100k services: issue 17,
// kube-proxy #139513's spikes at every periodic full sync).
//
// No kernel and no I/O here: DriftCheck (drift_check.h) runs the readback
// and this comparison off the event thread; SyncLoop filters the result with
// ChangedSinceSnapshot and applies it.
#pragma once

#include <cstddef>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "dataplane/compile.h"
#include "dataplane/ir.h"

namespace svcproxy::dataplane {

// Makes `kernel` equal `expected`, per table of `expected`:
//   - elements only in the kernel are deleted, those only expected added (a
//     map element whose data differs is both);
//   - a chain whose rules differ is replaced (flush + rules); missing chains
//     and sets are added with their rules and elements; chains and sets the
//     kernel holds beyond `expected` are deleted;
//   - what no partial transaction can fix asks for a full sync: a missing
//     table, a set whose definition differs (type, flags, timeout), a base
//     chain whose hook differs, a difference in an interval set's elements
//     (the encoder replaces those whole, never element by element).
// Rule comments are not compared (the kernel does not keep them); elements of
// dynamic sets are packet-path state and are not compared either. Tables the
// kernel holds beyond `expected` are ignored. Empty when in sync. Both
// arguments are taken by value: their elements are sorted in place.
RulesetDiff drift_repair(ir::Ruleset kernel, ir::Ruleset expected);

// For a readback that commits raced (read_tables_racy): a chain it missed
// may exist, and adding it would append its rules a second time. Rewriting
// it (flush + rules) is right if it exists and fails the transaction if it
// does not (then the next sync is full): safe either way. Everything else a
// raced readback can get wrong repairs harmlessly — an element it missed is
// re-added, which the kernel accepts for an identical element; a chain it
// read partly is rewritten — and what it reports as extra did exist.
void distrust_missing_chains(RulesetDiff& repair);

// What a drift repair is about to change, for the one log line: counts, and
// the first few objects by name ("ip cluster-ip element 10.96.0.10 . tcp . 80",
// "ip chain services").
struct DriftSummary {
  size_t missing_elements = 0;
  size_t extra_elements = 0;
  size_t missing_sets = 0;
  size_t extra_sets = 0;
  size_t missing_chains = 0;
  size_t extra_chains = 0;
  size_t changed_chains = 0;
  bool full = false;                 // needs_full_sync
  std::vector<std::string> objects;  // at most kMaxNamed
  static constexpr size_t kMaxNamed = 3;
  size_t total() const {
    return missing_elements + extra_elements + missing_sets + extra_sets + missing_chains + extra_chains +
           changed_chains;
  }
};
DriftSummary summarize(const RulesetDiff& repair);

// What the event thread changed while a drift check ran. The readback and
// the compiled snapshot are taken at different instants, and syncs applied
// in between change both the kernel and the compiler: the objects they
// touched can differ between the two without any drift, and they are being
// programmed anyway. Recording every diff applied since the snapshot and
// dropping those objects from the repair makes the check exact for
// everything else, without ever stopping the event thread for the check.
// O(changes) to record and to apply.
class ChangedSinceSnapshot {
 public:
  // A partial sync's diff, applied after the snapshot was taken.
  void record(const RulesetDiff& applied);
  // Removes from `repair` every element, chain and set an applied diff
  // touched (an element by set and key: a map element whose data changed is
  // the same element).
  void drop_from(RulesetDiff& repair) const;
  void clear();
  bool empty() const { return objects_.empty() && elements_.empty(); }

 private:
  // (family, kind, name): kind 's' set (added or deleted whole), 'c' chain.
  using Object = std::tuple<model::IPFamily, char, std::string>;
  using ElementKey = std::tuple<model::IPFamily, std::string, ir::ValueList>;
  bool touched(model::IPFamily family, char kind, const std::string& name) const {
    return objects_.contains({family, kind, name});
  }
  std::set<Object> objects_;
  std::set<ElementKey> elements_;
};

}  // namespace svcproxy::dataplane
