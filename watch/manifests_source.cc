#include "watch/manifests_source.h"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <system_error>
#include <type_traits>

namespace svcproxy::watch {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t kEvents = IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF |
                             IN_MOVE_SELF | IN_ATTRIB;
// The watched directory itself went away (or its file system did).
constexpr uint32_t kGone = IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED | IN_UNMOUNT;

bool is_manifest(std::string_view name) {
  return name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json") || name.starts_with("..");
}

struct Sizes {
  size_t services, slices, nodes, cidrs, diagnostics;
};
Sizes sizes(const DecodeResult& r) {
  return {r.state.services.size(), r.state.endpoint_slices.size(), r.state.nodes.size(), r.state.service_cidrs.size(),
          r.diagnostics.size()};
}

// Forgets the objects decoded since `mark` (and their diagnostics).
void roll_back(DecodeResult& r, const Sizes& mark) {
  r.state.services.resize(mark.services);
  r.state.endpoint_slices.resize(mark.slices);
  r.state.nodes.resize(mark.nodes);
  r.state.service_cidrs.resize(mark.cidrs);
  r.diagnostics.resize(mark.diagnostics);
}

// The keys of the objects decoded since `mark`.
std::vector<std::pair<Resource, model::ObjectRef>> keys_since(const DecodeResult& r, const Sizes& mark) {
  std::vector<std::pair<Resource, model::ObjectRef>> keys;
  const auto& st = r.state;
  for (size_t i = mark.services; i < st.services.size(); ++i) keys.push_back({Resource::Services, st.services[i].ref});
  for (size_t i = mark.slices; i < st.endpoint_slices.size(); ++i) {
    keys.push_back({Resource::EndpointSlices, st.endpoint_slices[i].ref});
  }
  for (size_t i = mark.nodes; i < st.nodes.size(); ++i) keys.push_back({Resource::Nodes, {"", st.nodes[i].name}});
  for (size_t i = mark.cidrs; i < st.service_cidrs.size(); ++i) {
    keys.push_back({Resource::ServiceCIDRs, {"", st.service_cidrs[i].name}});
  }
  return keys;
}

size_t object_count(const model::ClusterState& s) {
  return s.services.size() + s.endpoint_slices.size() + s.nodes.size() + s.service_cidrs.size();
}

}  // namespace

ManifestsSource::ManifestsSource(std::string path, Logger log, ChangeHandler on_change)
    : path_(std::move(path)), log_(std::move(log)), store_(std::move(on_change)) {
  // "dir/", "." and relative paths: the parent is the directory that holds
  // the path's last component.
  fs::path absolute = fs::absolute(fs::path(path_)).lexically_normal();
  if (absolute.filename().empty() && absolute.has_parent_path()) absolute = absolute.parent_path();
  base_name_ = absolute.filename().string();
  parent_ = absolute.has_parent_path() ? absolute.parent_path().string() : "/";
  fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "inotify_init1");
  watch();
}

ManifestsSource::~ManifestsSource() {
  if (fd_ >= 0) ::close(fd_);
}

void ManifestsSource::watch() {
  // Re-added at every load: a directory that was removed and created again
  // is a new inode (a new watch descriptor), one renamed away keeps its old
  // one (whose events are no longer ours). Either may fail while the path is
  // missing; the parent's events, or the next reload, bring it back.
  parent_wd_ = inotify_add_watch(fd_, parent_.c_str(), kEvents);
  std::error_code ec;
  const int dir_wd = fs::is_directory(path_, ec) ? inotify_add_watch(fd_, path_.c_str(), kEvents) : -1;
  if (dir_wd_ >= 0 && dir_wd_ != dir_wd && dir_wd_ != parent_wd_) inotify_rm_watch(fd_, dir_wd_);
  dir_wd_ = dir_wd;
}

void ManifestsSource::keep_previous(const std::vector<Key>& keys, DecodeResult& out) const {
  std::set<Key> present;
  for (const auto& s : out.state.services) present.insert({Resource::Services, s.ref});
  for (const auto& s : out.state.endpoint_slices) present.insert({Resource::EndpointSlices, s.ref});
  for (const auto& n : out.state.nodes) present.insert({Resource::Nodes, {"", n.name}});
  for (const auto& c : out.state.service_cidrs) present.insert({Resource::ServiceCIDRs, {"", c.name}});
  for (const Key& key : keys) {
    if (present.contains(key)) continue;
    std::optional<Object> object = store_.get(key.first, key.second);
    if (!object) continue;
    std::visit(
        [&out](auto&& o) {
          using T = std::decay_t<decltype(o)>;
          if constexpr (std::is_same_v<T, model::Service>) out.state.services.push_back(std::move(o));
          if constexpr (std::is_same_v<T, model::EndpointSlice>) out.state.endpoint_slices.push_back(std::move(o));
          if constexpr (std::is_same_v<T, model::Node>) out.state.nodes.push_back(std::move(o));
          if constexpr (std::is_same_v<T, model::ServiceCIDR>) out.state.service_cidrs.push_back(std::move(o));
        },
        std::move(*object));
  }
}

void ManifestsSource::load() {
  watch();
  Diagnostic path_error;
  const auto files = manifest_files(path_, path_error);
  if (!files) {
    // Nothing is known: every object stays as it is.
    const size_t kept = store_.size(Resource::Services) + store_.size(Resource::EndpointSlices) +
                        store_.size(Resource::Nodes) + store_.size(Resource::ServiceCIDRs);
    report({path_error}, {path_error.file + ": " + path_error.message + "; keeping the " + std::to_string(kept) +
                          " objects read before until it can be read"});
    return;
  }
  const bool listed = files->size() != 1 || (*files)[0] != path_;
  DecodeResult merged;
  std::map<std::string, std::vector<Key>> from_file;
  std::vector<Diagnostic> problems;
  std::vector<std::string> problem_lines;
  for (const std::string& file : *files) {
    const Sizes mark = sizes(merged);
    load_manifest_file(file, listed, merged);
    const auto problem =
        std::find_if(merged.diagnostics.begin() + static_cast<ptrdiff_t>(mark.diagnostics), merged.diagnostics.end(),
                     [](const Diagnostic& d) { return d.scope != Diagnostic::Scope::SingleObject; });
    if (problem != merged.diagnostics.end()) {
      Diagnostic d = *problem;
      const auto previous = from_file_.find(file);
      if (previous == from_file_.end()) {
        problem_lines.push_back(d.str());  // new file: what could be read of it is used
      } else {
        // What this file now holds is unknown: its objects stay as they were
        // (none of them is deleted, none changed from a partial read).
        roll_back(merged, mark);
        merged.diagnostics.push_back(d);
        keep_previous(previous->second, merged);
        const std::string what = d.object.empty() ? d.message : d.object + ": " + d.message;
        problem_lines.push_back(d.file + ": " + what + "; keeping the " + std::to_string(previous->second.size()) +
                                " objects it held before until it " +
                                (d.scope == Diagnostic::Scope::File ? "parses" : "can be read"));
      }
      problems.push_back(std::move(d));
    }
    from_file[file] = keys_since(merged, mark);
  }
  from_file_ = std::move(from_file);

  for (const Diagnostic& d : merged.diagnostics) {
    if (d.scope == Diagnostic::Scope::SingleObject && logged_.insert(d.str()).second) {
      log_(d.str());
      ++stats_.skipped_objects;
    }
  }
  if (logged_.size() > 10000) logged_.clear();
  report(problems, problem_lines);
  diagnostics_ = std::move(merged.diagnostics);

  // A readable directory without objects is an empty cluster (and says so once).
  const bool empty = object_count(merged.state) == 0;
  if (empty && (!loaded_ || !empty_)) {
    log_(path_ + ": holds no Service, EndpointSlice, Node or ServiceCIDR; the cluster is empty");
  }
  empty_ = empty;
  loaded_ = true;

  auto objects = [](auto& list) {
    std::vector<Object> out;
    out.reserve(list.size());
    for (auto& o : list) out.emplace_back(std::move(o));
    return out;
  };
  store_.replace(Resource::Services, objects(merged.state.services));
  store_.replace(Resource::EndpointSlices, objects(merged.state.endpoint_slices));
  store_.replace(Resource::Nodes, objects(merged.state.nodes));
  store_.replace(Resource::ServiceCIDRs, objects(merged.state.service_cidrs));
}

// Each problem is logged and counted when it appears, not at every reload
// while it lasts; its going away is logged too. Before the first load read
// anything, an unreadable path or file is the caller's to report (the daemon
// refuses to start).
void ManifestsSource::report(std::vector<Diagnostic> problems, const std::vector<std::string>& lines) {
  std::set<std::string> before;
  for (const Diagnostic& d : problems_) before.insert(d.str());
  for (size_t i = 0; i < problems.size(); ++i) {
    if (before.contains(problems[i].str())) continue;
    ++stats_.read_errors;
    if (loaded_ || problems[i].scope != Diagnostic::Scope::Unreadable) log_(lines[i]);
  }
  if (problems.empty() && !problems_.empty()) log_(path_ + ": read completely again");
  problems_ = std::move(problems);
}

bool ManifestsSource::unreadable() const {
  return std::any_of(problems_.begin(), problems_.end(),
                     [](const Diagnostic& d) { return d.scope == Diagnostic::Scope::Unreadable; });
}

bool ManifestsSource::has_synced() const {
  return store_.has_synced({Resource::Services, Resource::EndpointSlices, Resource::Nodes, Resource::ServiceCIDRs});
}

bool ManifestsSource::drain() {
  alignas(inotify_event) char buffer[16 * 1024];
  bool relevant = false;
  for (;;) {
    const ssize_t got = ::read(fd_, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return relevant;  // EAGAIN: drained
    for (char* p = buffer; p < buffer + got;) {
      const auto* event = reinterpret_cast<const inotify_event*>(p);
      const std::string_view name = event->len > 0 ? std::string_view(event->name) : std::string_view();
      if ((event->mask & IN_Q_OVERFLOW) != 0) {
        relevant = true;
      } else if (event->wd == dir_wd_ && dir_wd_ >= 0) {
        relevant = relevant || (event->mask & kGone) != 0 || is_manifest(name);
      } else if (event->wd == parent_wd_ && parent_wd_ >= 0) {
        relevant = relevant || (event->mask & kGone) != 0 || name == base_name_;
      }
      p += sizeof(inotify_event) + event->len;
    }
  }
}

bool ManifestsSource::poll(std::chrono::milliseconds timeout, std::chrono::milliseconds quiet) {
  pollfd pfd{fd_, POLLIN, 0};
  const auto deadline = Clock::now() + timeout;
  bool changed = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    const int ready = ::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (ready < 0 && errno == EINTR) continue;
    if (ready > 0 && drain()) {
      changed = true;
      break;
    }
    if (ready <= 0 && left.count() <= 0) break;
  }
  if (!changed) return false;
  // A burst (an editor's write, rename, chmod) is one reload.
  while (::poll(&pfd, 1, static_cast<int>(quiet.count())) > 0) drain();
  load();
  return true;
}

}  // namespace svcproxy::watch
