#include "loadtest/changes.h"

#include <algorithm>

namespace svcproxy::loadtest {
namespace {

bool contains(const std::vector<std::string>& list, const std::string& item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

}  // namespace

void ChangeTracker::link(const std::string& endpoint, Slot& slot) const {
  slot.removed_in.clear();
  slot.added_in.clear();
  for (size_t i = 0; i < changes_.size(); ++i) {
    if (contains(changes_[i].added, endpoint)) slot.added_in.push_back(i);
    if (!contains(changes_[i].removed, endpoint)) continue;
    int64_t until = std::numeric_limits<int64_t>::max();
    for (size_t j = i + 1; j < changes_.size(); ++j) {
      if (contains(changes_[j].added, endpoint)) {
        until = changes_[j].at_ns;
        break;
      }
    }
    slot.removed_in.emplace_back(i, until);
  }
}

void ChangeTracker::attach(const std::string& endpoint, Slot& slot) {
  slots_[endpoint] = &slot;
  link(endpoint, slot);
}

void ChangeTracker::update(const std::vector<ChangeRecord>& changes) {
  const size_t known = changes_.size();
  if (changes.size() == known) return;
  changes_.insert(changes_.end(), changes.begin() + static_cast<std::ptrdiff_t>(known), changes.end());
  outcomes_.resize(changes_.size());
  for (size_t i = known; i < changes_.size(); ++i) {
    const ChangeRecord& change = changes_[i];
    for (const auto& name : change.removed) {
      auto it = slots_.find(name);
      if (it != slots_.end()) outcomes_[i].last_removed_ns = std::max(outcomes_[i].last_removed_ns, it->second->last_ns);
    }
    // An added endpoint that answered between the change and now: its
    // first answer since is at most its last one.
    for (const auto& name : change.added) {
      auto it = slots_.find(name);
      if (it != slots_.end() && it->second->last_ns >= change.at_ns)
        outcomes_[i].first_added_ns = std::min(outcomes_[i].first_added_ns, it->second->last_ns);
    }
  }
  for (auto& [name, slot] : slots_) link(name, *slot);
}

void ChangeTracker::answer(Slot& slot, int64_t at_ns) {
  slot.last_ns = at_ns;
  for (const auto& [index, until] : slot.removed_in) {
    if (at_ns < until) outcomes_[index].last_removed_ns = std::max(outcomes_[index].last_removed_ns, at_ns);
  }
  for (size_t index : slot.added_in) {
    if (at_ns >= changes_[index].at_ns) outcomes_[index].first_added_ns = std::min(outcomes_[index].first_added_ns, at_ns);
  }
}

std::vector<EndpointChange> ChangeTracker::results(const std::vector<ChangeRecord>& changes,
                                                   const std::vector<const ChangeTracker*>& trackers,
                                                   int64_t start_ns) {
  std::vector<EndpointChange> out;
  for (size_t i = 0; i < changes.size(); ++i) {
    EndpointChange change;
    change.at_us = (changes[i].at_ns - start_ns) / 1000;
    change.removed = changes[i].removed;
    change.added = changes[i].added;
    Outcome merged;
    for (const ChangeTracker* tracker : trackers) {
      if (i >= tracker->outcomes_.size()) continue;
      merged.last_removed_ns = std::max(merged.last_removed_ns, tracker->outcomes_[i].last_removed_ns);
      merged.first_added_ns = std::min(merged.first_added_ns, tracker->outcomes_[i].first_added_ns);
    }
    if (merged.last_removed_ns != std::numeric_limits<int64_t>::min())
      change.drain_us = (merged.last_removed_ns - changes[i].at_ns) / 1000;
    if (merged.first_added_ns != std::numeric_limits<int64_t>::max())
      change.first_answer_us = (merged.first_added_ns - changes[i].at_ns) / 1000;
    out.push_back(std::move(change));
  }
  return out;
}

}  // namespace svcproxy::loadtest
