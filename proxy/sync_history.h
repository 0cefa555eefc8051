// The last syncs the daemon made, for the /debug page and `svcproxy
// status`: a small ring the sync loop's thread feeds and the HTTP thread
// reads (a mutex: one lock per sync and per page view, never per packet).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <vector>

namespace svcproxy::proxy {

struct SyncRecord {
  std::chrono::system_clock::time_point time;  // when it finished
  std::string reason;                          // "start", "api-changed", "sync-period", ...
  std::string mode;                            // "full", "partial" or "repair"
  uint64_t operations = 0;
  std::chrono::microseconds duration{0};
  std::string error;  // empty: it succeeded
  auto operator<=>(const SyncRecord&) const = default;
};

class SyncHistory {
 public:
  static constexpr size_t kDefaultCapacity = 50;
  explicit SyncHistory(size_t capacity = kDefaultCapacity) : capacity_(capacity) {}

  void record(SyncRecord sync);
  // Oldest first, at most `capacity` of them.
  std::vector<SyncRecord> list() const;

 private:
  const size_t capacity_;
  mutable std::mutex mutex_;
  std::deque<SyncRecord> syncs_;
};

}  // namespace svcproxy::proxy
