// The reflector, as client-go's: LIST (paginated), then WATCH from the list's
// resourceVersion, forever, keeping a Store equal to the server's state.
//
//  - LIST with limit/continue; the first from resourceVersion=0 (the watch
//    cache), relists after a 410 from resourceVersion="" (consistent); an
//    expired continue token (410) restarts the list from "".
//  - WATCH with allowWatchBookmarks and a random timeoutSeconds in 300..600;
//    lines framed independently of chunks; the RV of every event, bookmarks
//    included, is where the next watch starts.
//  - ERROR 410 in the stream or HTTP 410: relist, replacing the store and
//    emitting the difference. Other failures (refused, reset, 429, 5xx, a
//    watch closing within 1 s having delivered nothing) back off 800 ms x2 up
//    to 30 s with full jitter, reset after 2 min of health, and re-watch from
//    the last RV without relisting; 429 waits at least its Retry-After.
//  - Optional streaming list (sendInitialEvents): initial ADDED events up to
//    the initial-events-end bookmark replace the store; any failure falls back
//    to LIST for good.
//  - An object that fails to decode is logged once (kind, ns/name, reason)
//    and treated as absent; the stream goes on.
#pragma once

#include <boost/asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <random>
#include <set>
#include <string>

#include "watch/api_client.h"
#include "watch/api_objects.h"
#include "watch/store.h"

namespace svcproxy::watch {

struct Backoff {
  using Clock = std::chrono::steady_clock;
  std::chrono::milliseconds initial{800};
  std::chrono::milliseconds cap{30000};
  double factor = 2.0;
  double jitter = 1.0;  // the wait is base * (1 + jitter * U[0,1))
  std::chrono::milliseconds reset_after{120000};

  // The next wait; resets to `initial` after reset_after without a failure.
  std::chrono::milliseconds next(Clock::time_point now, std::mt19937_64& random);

 private:
  std::chrono::milliseconds current_{0};
  Clock::time_point last_{};
};

struct ReflectorOptions {
  Resource resource = Resource::Services;
  std::string label_selector;
  std::string field_selector;
  int page_size = 500;
  std::chrono::milliseconds request_timeout{30000};
  int watch_timeout_min_seconds = 300;
  int watch_timeout_max_seconds = 600;
  // Longest silence on a watch before it is dropped; 0: its timeoutSeconds + 30 s.
  std::chrono::milliseconds watch_idle_timeout{0};
  std::chrono::milliseconds min_watch_duration{1000};
  bool watch_list = false;
  Backoff backoff;
};

// The requests kube-proxy makes.
ReflectorOptions services_options();
ReflectorOptions endpoint_slices_options();
ReflectorOptions node_options(const std::string& node_name);
ReflectorOptions service_cidrs_options();

// The API path of a resource's collection.
std::string collection_path(Resource resource);
// The resource's plural name, as the API server's metrics label it: "services", ...
std::string resource_name(Resource resource);

struct ReflectorStats {
  std::atomic<uint64_t> lists{0};      // completed LISTs (relists included)
  std::atomic<uint64_t> watches{0};    // watch requests made
  std::atomic<uint64_t> events{0};     // watch events applied
  std::atomic<uint64_t> bookmarks{0};  // BOOKMARK events (each moves resource_version() on)
  std::atomic<uint64_t> failures{0};   // backoffs taken
  std::atomic<uint64_t> bad_objects{0};  // objects skipped as unusable (each logged once)

  // The last resourceVersion seen and the last failure, for status pages
  // (read from any thread).
  void set_resource_version(const std::string& rv);
  void set_last_error(const std::string& why);
  std::string resource_version() const;
  std::string last_error() const;

 private:
  mutable std::mutex mutex_;
  std::string resource_version_;
  std::string last_error_;
};

class Reflector {
 public:
  Reflector(ApiClient& client, Store& store, ReflectorOptions options, Logger log, uint64_t seed = std::random_device{}());

  // Runs until the coroutine is cancelled (its io_context stopped).
  boost::asio::awaitable<void> run();

  // One complete paginated LIST into the store; throws ApiError (transport)
  // or ListError (an HTTP status) on failure, without retrying.
  boost::asio::awaitable<void> list();

  std::string resource_version() const;
  const ReflectorStats& stats() const { return stats_; }
  Resource resource() const { return options_.resource; }

 private:
  struct WatchOutcome;
  boost::asio::awaitable<WatchOutcome> watch();
  boost::asio::awaitable<void> sleep(std::chrono::milliseconds delay);
  std::string query(bool watching, const std::string& resource_version, const std::string& continue_token);
  void log_bad(const BadObject& bad);

  ApiClient& client_;
  Store& store_;
  ReflectorOptions options_;
  Logger log_;
  std::mt19937_64 random_;
  ApiDecoder decoder_;
  std::string resource_version_;
  bool resource_version_unavailable_ = false;  // after a 410: relist from ""
  bool watch_list_ = false;
  std::set<std::string> logged_;
  ReflectorStats stats_;
};

// An HTTP status that ends a request (401, 403, 404, 410, 429, 5xx...).
struct ListError : std::runtime_error {
  ListError(int http_status, std::chrono::seconds wait, const std::string& message)
      : std::runtime_error(message), status(http_status), retry_after(wait) {}
  int status;
  std::chrono::seconds retry_after;
};

}  // namespace svcproxy::watch
