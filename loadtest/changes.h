// How traffic followed endpoint changes (--watch): per change, the time to
// the last answer from an endpoint it removed (the drain) and to the first
// answer from one it added. One tracker per worker thread; memory is per
// endpoint and per change, never per request.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "loadtest/report.h"

namespace svcproxy::loadtest {

struct ChangeRecord {
  int64_t at_ns = 0;  // steady clock
  std::vector<std::string> removed;
  std::vector<std::string> added;
};

class ChangeTracker {
 public:
  // Per endpoint, owned by the caller's endpoint table (its address must
  // stay stable: node-based maps keep it so), so an answer costs no lookup.
  struct Slot {
    int64_t last_ns = std::numeric_limits<int64_t>::min();
    // Changes that removed this endpoint, with the time a later change added
    // it back (answers from then on are not that change's drain).
    std::vector<std::pair<size_t, int64_t>> removed_in;
    std::vector<size_t> added_in;  // changes that added it
  };

  // A new endpoint appeared (first answer): links its slot.
  void attach(const std::string& endpoint, Slot& slot);
  // `changes` is the run's whole list so far (it only grows). Answers seen
  // before a worker learned of a change still count: a removed endpoint's
  // last answer is taken from its slot.
  void update(const std::vector<ChangeRecord>& changes);
  void answer(Slot& slot, int64_t at_ns);

  struct Outcome {
    int64_t last_removed_ns = std::numeric_limits<int64_t>::min();
    int64_t first_added_ns = std::numeric_limits<int64_t>::max();
  };
  const std::vector<Outcome>& outcomes() const { return outcomes_; }

  // Combines the workers' outcomes into the report's changes; times count
  // from start_ns.
  static std::vector<EndpointChange> results(const std::vector<ChangeRecord>& changes,
                                             const std::vector<const ChangeTracker*>& trackers, int64_t start_ns);

 private:
  void link(const std::string& endpoint, Slot& slot) const;

  std::vector<ChangeRecord> changes_;
  std::vector<Outcome> outcomes_;
  std::unordered_map<std::string, Slot*> slots_;
};

}  // namespace svcproxy::loadtest
