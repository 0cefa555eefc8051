#include "proxy/cluster_source.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace svcproxy::proxy {

using std::chrono::milliseconds;

ManifestsClusterSource::ManifestsClusterSource(const std::string& path, Log& log, watch::ChangeHandler on_change)
    : source_(
          path, [&log](const std::string& line) { log.warning(line); }, std::move(on_change)) {
  source_.load();
  for (const auto& d : source_.problems()) {
    if (d.scope == watch::Diagnostic::Scope::Unreadable)
      throw std::runtime_error("--manifests " + path + ": " + (d.file == path ? "" : d.file + ": ") + d.message);
  }
}

// A burst of writes (an editor's write, rename, chmod) is one reload.
void ManifestsClusterSource::on_readable() { source_.poll(milliseconds(0), milliseconds(10)); }

void ManifestsClusterSource::export_metrics(Metrics& metrics) {
  const auto s = source_.stats();
  if (s.skipped_objects > skipped_objects_) metrics.count_decode_errors(s.skipped_objects - skipped_objects_);
  skipped_objects_ = s.skipped_objects;
  metrics.set_manifest_read_errors(s.read_errors);
}

std::string ManifestsClusterSource::problem() const {
  const auto& problems = source_.problems();
  if (problems.empty()) return {};
  std::string text = problems.front().file + ": " + problems.front().message;
  if (problems.size() > 1) text += " (and " + std::to_string(problems.size() - 1) + " more)";
  return text;
}

SourceState ManifestsClusterSource::state() const {
  return {"manifests", 0, source_.stats().read_errors, problem(), {}};
}

ApiClusterSource::ApiClusterSource(const watch::ClientConfig& config, const watch::ApiSourceOptions& options, Log& log,
                                   watch::ChangeHandler on_change, std::function<void()> on_synced)
    : informer_(
          config, options,
          [&log](const std::string& line) {
            log.warning(line, {{"source", "api"}});
          },
          std::move(on_change), std::move(on_synced)) {
  informer_.start();
}

void ApiClusterSource::export_metrics(Metrics& metrics) {
  const auto s = informer_.stats();
  // Beyond each resource's first LIST and first watch: relists and restarts.
  metrics.set_watch_totals(s.watches - std::min(s.watches, s.resources), s.lists - std::min(s.lists, s.resources));
  metrics.set_watch_bookmarks(s.bookmarks);
  if (s.bad_objects > bad_objects_) metrics.count_decode_errors(s.bad_objects - bad_objects_);
  bad_objects_ = s.bad_objects;
}

SourceState ApiClusterSource::state() const {
  auto s = informer_.stats();
  return {"api", s.lists - std::min(s.lists, s.resources), s.failures, problem(), std::move(s.progress)};
}

}  // namespace svcproxy::proxy
