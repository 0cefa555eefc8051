// The API server as a source of the cluster: a one-shot LIST of everything
// (the CLI's rules/trace/run --once), and a long-running informer (one
// reflector per resource on one I/O thread) for the daemon.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "model/objects.h"
#include "watch/api_client.h"
#include "watch/kubeconfig.h"
#include "watch/store.h"

namespace svcproxy::watch {

// Why the cluster could not be read, in one line: unreachable, credentials
// rejected, TLS failure, or still failing when the time ran out.
struct SourceError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ApiSourceOptions {
  std::string node_name;  // this node: its Node object is listed/watched
  std::chrono::milliseconds request_timeout{30000};
  bool watch_list = false;
};

// Services, EndpointSlices, this node's Node and ServiceCIDRs, each listed
// completely (paginated). Transient failures (refused, reset, timeouts, 429,
// 5xx) are retried with the reflector's backoff until request_timeout has
// passed in all; 401/403, TLS failures, a failed exec credential plugin and
// anything else throw SourceError at once. Never returns a partial cluster.
model::ClusterState list_cluster(const ClientConfig& config, const ApiSourceOptions& options, const Logger& log);

// One reflector's progress, for status pages.
struct ResourceProgress {
  std::string resource;          // "services", "endpointslices", ...
  std::string resource_version;  // the last one seen (list, event or bookmark)
  uint64_t lists = 0;
  uint64_t failures = 0;
  std::string last_error;  // the last failure's reason; empty: none yet
};

// The informer's reflectors, summed (read from any thread).
struct InformerStats {
  uint64_t lists = 0;        // completed LISTs, the first one of each resource included
  uint64_t watches = 0;      // watch requests made, the first one of each resource included
  uint64_t failures = 0;     // backoffs taken
  uint64_t bad_objects = 0;  // objects skipped as unusable
  uint64_t resources = 0;    // resources watched (each needs one first LIST and one first watch)
  std::map<std::string, uint64_t> bookmarks;  // BOOKMARK events by resource name ("services", ...)
  std::vector<ResourceProgress> progress;     // per resource, in watch order
};

class ApiInformer {
 public:
  // `on_synced` runs (on the informer's thread) after every complete list of
  // a resource, also one that changed nothing, and after every watch
  // bookmark: a consumer waiting for has_synced() learns when to look again,
  // and one reading stats() when they moved.
  ApiInformer(ClientConfig config, ApiSourceOptions options, Logger log, ChangeHandler on_change = {},
              std::function<void()> on_synced = {});
  ~ApiInformer();  // stops
  ApiInformer(const ApiInformer&) = delete;
  ApiInformer& operator=(const ApiInformer&) = delete;

  void start();
  void stop();
  Store& store();
  // Every resource has completed its first list.
  bool has_synced() const;
  // Waits (on a condition, not a sleep loop) until synced or the timeout.
  bool wait_for_sync(std::chrono::milliseconds timeout);
  InformerStats stats() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace svcproxy::watch
