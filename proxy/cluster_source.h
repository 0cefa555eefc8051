// Where the daemon's cluster comes from: the API server (an informer) or a
// manifests file/directory (inotify). Both fill a watch::Store whose change
// stream goes to `on_change`; `on_synced` is called after every list (also
// one that changed nothing: the daemon may be waiting for the first).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "proxy/log.h"
#include "proxy/metrics.h"
#include "watch/api_source.h"
#include "watch/kubeconfig.h"
#include "watch/manifests_source.h"
#include "watch/store.h"

namespace svcproxy::proxy {

// Where the source stands, for /debug/state and `svcproxy status`.
struct SourceState {
  std::string kind;                                // "api" or "manifests"
  uint64_t relists = 0;                            // LISTs beyond each resource's first (api)
  uint64_t errors = 0;                             // failed requests (api), read errors (manifests)
  std::string problem;                             // problem(): why it could not be read; empty: it could
  std::vector<watch::ResourceProgress> resources;  // api only
};

class ClusterSource {
 public:
  virtual ~ClusterSource() = default;
  virtual watch::Store& store() = 0;
  virtual bool has_synced() const = 0;
  // Readable when the source has work for the loop (-1: none).
  virtual int fd() const { return -1; }
  virtual void on_readable() {}
  // SIGHUP: read everything again.
  virtual void reload() {}
  virtual void export_metrics(Metrics&) {}
  // Why the source could not be read completely (the last state read is
  // kept meanwhile); empty: it could.
  virtual std::string problem() const { return {}; }
  // The reason a change-driven sync logs.
  virtual const char* change_reason() const = 0;
  virtual SourceState state() const = 0;
};

class ManifestsClusterSource final : public ClusterSource {
 public:
  // Throws if the path, or a file of it, cannot be read: at start there is
  // no last good state to keep, and an empty cluster would remove every
  // service of the node.
  ManifestsClusterSource(const std::string& path, Log& log, watch::ChangeHandler on_change);
  watch::Store& store() override { return source_.store(); }
  bool has_synced() const override { return source_.has_synced(); }
  int fd() const override { return source_.fd(); }
  void on_readable() override;
  void reload() override { source_.load(); }
  void export_metrics(Metrics& metrics) override;
  std::string problem() const override;
  const char* change_reason() const override { return "manifests-changed"; }
  SourceState state() const override;

 private:
  watch::ManifestsSource source_;
  uint64_t skipped_objects_ = 0;
};

class ApiClusterSource final : public ClusterSource {
 public:
  ApiClusterSource(const watch::ClientConfig& config, const watch::ApiSourceOptions& options, Log& log,
                   watch::ChangeHandler on_change, std::function<void()> on_synced);
  watch::Store& store() override { return informer_.store(); }
  bool has_synced() const override { return informer_.has_synced(); }
  void export_metrics(Metrics& metrics) override;
  const char* change_reason() const override { return "api-changed"; }
  SourceState state() const override;

 private:
  watch::ApiInformer informer_;
  uint64_t bad_objects_ = 0;
};

}  // namespace svcproxy::proxy
