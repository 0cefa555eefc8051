#include "proxy/sync_history.h"

namespace svcproxy::proxy {

void SyncHistory::record(SyncRecord sync) {
  std::lock_guard lock(mutex_);
  syncs_.push_back(std::move(sync));
  while (syncs_.size() > capacity_) syncs_.pop_front();
}

std::vector<SyncRecord> SyncHistory::list() const {
  std::lock_guard lock(mutex_);
  return {syncs_.begin(), syncs_.end()};
}

}  // namespace svcproxy::proxy
