// The manifests source with the informer's interface: a file or directory
// of manifests loaded into a Store, then watched with inotify; any change
// (a file written in place, created, deleted, or replaced by rename as
// editors and config tools do, a ConfigMap's symlink swap) reloads the whole
// source and the Store emits the difference as changes. A file caught half
// written shows up as diagnostics and is fixed by the reload its
// close-after-write triggers.
#pragma once

#include <chrono>
#include <set>
#include <string>

#include "watch/api_client.h"
#include "watch/manifests.h"
#include "watch/store.h"

namespace svcproxy::watch {

class ManifestsSource {
 public:
  // Throws std::system_error if inotify cannot be set up.
  ManifestsSource(std::string path, Logger log, ChangeHandler on_change = {});
  ~ManifestsSource();
  ManifestsSource(const ManifestsSource&) = delete;
  ManifestsSource& operator=(const ManifestsSource&) = delete;

  // (Re)loads everything now; new diagnostics are logged once each.
  void load();
  // Waits up to `timeout` for a change on disk; when there is one, waits for
  // `quiet` without further events (a burst of writes is one reload), then
  // reloads. True if a reload happened.
  bool poll(std::chrono::milliseconds timeout, std::chrono::milliseconds quiet = std::chrono::milliseconds(50));
  // The inotify descriptor, for an event loop: readable -> call poll(0).
  int fd() const { return fd_; }

  Store& store() { return store_; }
  bool has_synced() const;
  const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

 private:
  bool drain();  // reads pending events; true if one concerns us

  std::string path_;
  std::string watched_name_;  // single-file mode: the file's name in its directory
  Logger log_;
  Store store_;
  int fd_ = -1;
  std::vector<Diagnostic> diagnostics_;
  std::set<std::string> logged_;
};

}  // namespace svcproxy::watch
