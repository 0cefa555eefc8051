// The manifests source with the informer's interface: a file or directory
// of manifests loaded into a Store, then watched with inotify; any change
// (a file written in place, created, deleted, or replaced by rename as
// editors and config tools do, a ConfigMap's symlink swap) reloads the whole
// source and the Store emits the difference as changes.
//
// What cannot be read is not taken as deleted. If the path itself cannot be
// read (removed, renamed away, an unmounted volume), the Store keeps every
// object until it can be read again. In a directory, each file counts on its
// own: a file that cannot be read, or a document of which does not parse (a
// file caught half written), keeps the objects it gave at the previous load,
// while the other files are read as usual. Such a problem is logged once,
// counted (stats().read_errors) and reported by problems() until a load reads
// everything again. An object that fails validation in a well-formed document
// is still skipped (and deleted from the Store, if it was good before).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/unique_fd.h"
#include "watch/api_client.h"
#include "watch/manifests.h"
#include "watch/store.h"

namespace svcproxy::watch {

class ManifestsSource {
 public:
  // Throws std::system_error if inotify cannot be set up.
  ManifestsSource(std::string path, Logger log, ChangeHandler on_change = {});
  ManifestsSource(const ManifestsSource&) = delete;
  ManifestsSource& operator=(const ManifestsSource&) = delete;

  // (Re)loads everything now; new diagnostics are logged once each.
  void load();
  // Waits up to `timeout` for a change on disk; when there is one, waits for
  // `quiet` without further events (a burst of writes is one reload), then
  // reloads. True if a reload happened.
  bool poll(std::chrono::milliseconds timeout, std::chrono::milliseconds quiet = std::chrono::milliseconds(50));
  // The inotify descriptor, for an event loop: readable -> call poll(0).
  int fd() const { return fd_.get(); }

  Store& store() { return store_; }
  bool has_synced() const;
  const std::vector<Diagnostic>& diagnostics() const { return diagnostics_; }

  // What the last load could not read, each leaving objects as they were
  // (scope File or Unreadable); empty when it read everything.
  const std::vector<Diagnostic>& problems() const { return problems_; }
  // The last load found the path, or a file of it, unreadable. At the first
  // load this is not logged: it is the caller's to report (the daemon and
  // the one-shot commands refuse to start on it).
  bool unreadable() const;

  struct Stats {
    uint64_t skipped_objects = 0;  // object diagnostics logged
    uint64_t read_errors = 0;      // problems that appeared (each counted once until it goes away)
  };
  Stats stats() const { return stats_; }

 private:
  using Key = std::pair<Resource, model::ObjectRef>;
  bool drain();  // reads pending events; true if one concerns us
  void watch();  // (re)adds the watches on the path and its directory
  // The objects `file` gave at the previous load, appended to `out` (those
  // an earlier file now defines are left out).
  void keep_previous(const std::vector<Key>& keys, DecodeResult& out) const;
  // Logs and counts the problems that were not there at the previous load
  // (`lines[i]` says what happens because of `problems[i]`).
  void report(std::vector<Diagnostic> problems, const std::vector<std::string>& lines);

  std::string path_;
  std::string parent_;     // the directory holding the path
  std::string base_name_;  // the path's name in it
  Logger log_;
  Store store_;
  base::UniqueFd fd_;
  int parent_wd_ = -1;  // the parent: the path replaced, renamed, deleted, created
  int dir_wd_ = -1;     // the path, while it is a directory: its files
  std::vector<Diagnostic> diagnostics_;
  std::vector<Diagnostic> problems_;
  bool empty_ = false;  // the last load read no object at all (warned once)
  bool loaded_ = false;
  std::map<std::string, std::vector<Key>> from_file_;  // what each file gave at the last load
  std::set<std::string> logged_;
  Stats stats_;
};

}  // namespace svcproxy::watch
