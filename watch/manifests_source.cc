#include "watch/manifests_source.h"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <system_error>

namespace svcproxy::watch {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr uint32_t kEvents = IN_CLOSE_WRITE | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE_SELF |
                             IN_MOVE_SELF | IN_ATTRIB;

bool is_manifest(std::string_view name) {
  return name.ends_with(".yaml") || name.ends_with(".yml") || name.ends_with(".json") || name.starts_with("..");
}

}  // namespace

ManifestsSource::ManifestsSource(std::string path, Logger log, ChangeHandler on_change)
    : path_(std::move(path)), log_(std::move(log)), store_(std::move(on_change)) {
  fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "inotify_init1");
  std::error_code ec;
  fs::path dir(path_);
  if (!fs::is_directory(dir, ec)) {
    // One file: watch its directory, so that a rename over it is seen.
    watched_name_ = dir.filename().string();
    dir = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
  }
  if (inotify_add_watch(fd_, dir.c_str(), kEvents) < 0) {
    const int saved = errno;
    ::close(fd_);
    throw std::system_error(saved, std::generic_category(), "inotify_add_watch " + dir.string());
  }
}

ManifestsSource::~ManifestsSource() {
  if (fd_ >= 0) ::close(fd_);
}

void ManifestsSource::load() {
  DecodeResult result = load_manifests(path_);
  for (const Diagnostic& d : result.diagnostics) {
    if (logged_.insert(d.str()).second) log_(d.str());
  }
  if (logged_.size() > 10000) logged_.clear();
  diagnostics_ = std::move(result.diagnostics);
  auto objects = [](auto& list) {
    std::vector<Object> out;
    out.reserve(list.size());
    for (auto& o : list) out.emplace_back(std::move(o));
    return out;
  };
  store_.replace(Resource::Services, objects(result.state.services));
  store_.replace(Resource::EndpointSlices, objects(result.state.endpoint_slices));
  store_.replace(Resource::Nodes, objects(result.state.nodes));
  store_.replace(Resource::ServiceCIDRs, objects(result.state.service_cidrs));
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
      if ((event->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_Q_OVERFLOW)) != 0) {
        relevant = true;
      } else if (watched_name_.empty() ? is_manifest(name) : name == watched_name_) {
        relevant = true;
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
