#include "watch/reflector.h"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <map>

#include "watch/line_framer.h"

namespace svcproxy::watch {

namespace net = boost::asio;
using net::awaitable;
using std::chrono::milliseconds;

namespace {

using Clock = std::chrono::steady_clock;

// Thrown from inside the body callback to end a watch early.
struct StreamStop {
  bool gone = false;  // ERROR 410: relist
  std::string why;
};

std::string status_text(int status) {
  switch (status) {
    case 401:
      return "401 Unauthorized";
    case 403:
      return "403 Forbidden";
    case 404:
      return "404 Not Found";
    case 410:
      return "410 Gone";
    case 429:
      return "429 Too Many Requests";
    case 500:
      return "500 Internal Server Error";
    case 503:
      return "503 Service Unavailable";
    default:
      return "HTTP " + std::to_string(status);
  }
}

}  // namespace

milliseconds Backoff::next(Clock::time_point now, std::mt19937_64& random) {
  if (current_.count() == 0 || now - last_ >= reset_after) {
    current_ = initial;
  } else {
    current_ = std::min(cap, milliseconds(static_cast<int64_t>(static_cast<double>(current_.count()) * factor)));
  }
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const auto wait = milliseconds(static_cast<int64_t>(static_cast<double>(current_.count()) * (1.0 + jitter * unit(random))));
  last_ = now + wait;
  return wait;
}

std::string collection_path(Resource resource) {
  switch (resource) {
    case Resource::Services:
      return "/api/v1/services";
    case Resource::EndpointSlices:
      return "/apis/discovery.k8s.io/v1/endpointslices";
    case Resource::Nodes:
      return "/api/v1/nodes";
    case Resource::ServiceCIDRs:
      break;
  }
  return "/apis/networking.k8s.io/v1/servicecidrs";
}

std::string resource_name(Resource resource) {
  const std::string path = collection_path(resource);
  return path.substr(path.rfind('/') + 1);
}

ReflectorOptions services_options() {
  ReflectorOptions options;
  options.resource = Resource::Services;
  options.label_selector = "!service.kubernetes.io/service-proxy-name";
  options.field_selector = "spec.clusterIP!=None";
  return options;
}

ReflectorOptions endpoint_slices_options() {
  ReflectorOptions options;
  options.resource = Resource::EndpointSlices;
  options.label_selector = "!service.kubernetes.io/headless";
  return options;
}

ReflectorOptions node_options(const std::string& node_name) {
  ReflectorOptions options;
  options.resource = Resource::Nodes;
  options.field_selector = "metadata.name=" + node_name;
  return options;
}

ReflectorOptions service_cidrs_options() {
  ReflectorOptions options;
  options.resource = Resource::ServiceCIDRs;
  return options;
}

struct Reflector::WatchOutcome {
  enum Kind { Healthy, Failure, Gone } kind = Healthy;
  std::chrono::seconds retry_after{0};
  std::string why;
};

Reflector::Reflector(ApiClient& client, Store& store, ReflectorOptions options, Logger log, uint64_t seed)
    : client_(client),
      store_(store),
      options_(std::move(options)),
      log_(std::move(log)),
      random_(seed),
      watch_list_(options_.watch_list) {}

std::string Reflector::resource_version() const { return resource_version_; }

void ReflectorStats::set_resource_version(const std::string& rv) {
  std::lock_guard lock(mutex_);
  resource_version_ = rv;
}

void ReflectorStats::set_last_error(const std::string& why) {
  std::lock_guard lock(mutex_);
  last_error_ = why;
}

std::string ReflectorStats::resource_version() const {
  std::lock_guard lock(mutex_);
  return resource_version_;
}

std::string ReflectorStats::last_error() const {
  std::lock_guard lock(mutex_);
  return last_error_;
}

std::string Reflector::query(bool watching, const std::string& resource_version, const std::string& continue_token) {
  std::string q;
  auto add = [&](const char* key, const std::string& value) {
    q += q.empty() ? '?' : '&';
    q += key;
    q += '=';
    q += url_encode(value);
  };
  if (!options_.label_selector.empty()) add("labelSelector", options_.label_selector);
  if (!options_.field_selector.empty()) add("fieldSelector", options_.field_selector);
  if (!watching) {
    add("limit", std::to_string(options_.page_size));
    if (!continue_token.empty()) add("continue", continue_token);
  }
  if (continue_token.empty()) add("resourceVersion", resource_version);
  return q;
}

void Reflector::log_bad(const BadObject& bad) {
  std::string key = bad.kind + "|" + bad.ref.str() + "|" + bad.resource_version + "|" + bad.message;
  if (logged_.size() > 10000) logged_.clear();
  if (logged_.insert(std::move(key)).second) {
    ++stats_.bad_objects;
    log_(bad.str());
  }
}

awaitable<void> Reflector::sleep(milliseconds delay) {
  net::steady_timer timer(co_await net::this_coro::executor);
  timer.expires_after(delay);
  co_await timer.async_wait(net::use_awaitable);
}

awaitable<void> Reflector::list() {
  // client-go: "0" (any, the watch cache) first, the last RV on relists,
  // "" (consistent) once the last RV is known to be gone.
  std::string rv = resource_version_unavailable_ ? "" : (resource_version_.empty() ? "0" : resource_version_);
  std::vector<Object> objects;
  std::string continue_token;
  int restarts = 0;
  const std::string path = collection_path(options_.resource);
  for (;;) {
    const std::string target = path + query(false, rv, continue_token);
    HttpReply reply = co_await client_.get(target, options_.request_timeout);
    if (reply.status == 410 && restarts++ < 3 && (!continue_token.empty() || !rv.empty())) {
      log_(std::string(kind_name(options_.resource)) + " list: 410 Gone (" +
           (continue_token.empty() ? "resourceVersion " + rv : std::string("continue token expired")) +
           "); listing again from resourceVersion=\"\"");
      rv.clear();
      continue_token.clear();
      objects.clear();
      continue;
    }
    if (reply.status != 200) {
      ApiStatus status;
      std::string message = status_text(reply.status);
      if (decoder_.decode_status(reply.body, status) && !status.message.empty()) message += ": " + status.message;
      throw ListError(reply.status, reply.retry_after, "list " + path + ": " + message);
    }
    ListPage page;
    std::string error;
    if (!decoder_.decode_list(reply.body, options_.resource, page, error)) {
      throw ListError(0, std::chrono::seconds(0), "list " + path + ": " + error);
    }
    for (const BadObject& bad : page.bad) log_bad(bad);
    for (Object& object : page.objects) objects.push_back(std::move(object));
    if (page.continue_token.empty()) {
      // Counted before the store tells its consumers, so that what they
      // read of the stats includes this list.
      ++stats_.lists;
      stats_.set_resource_version(page.resource_version);
      store_.replace(options_.resource, std::move(objects));
      resource_version_ = page.resource_version;
      resource_version_unavailable_ = false;
      co_return;
    }
    continue_token = page.continue_token;
  }
}

awaitable<Reflector::WatchOutcome> Reflector::watch() {
  std::uniform_int_distribution<int> pick(options_.watch_timeout_min_seconds, options_.watch_timeout_max_seconds);
  const int timeout_seconds = pick(random_);
  const bool initial = watch_list_ && (resource_version_.empty() || !store_.has_synced(options_.resource));
  std::string target = collection_path(options_.resource) + query(true, initial ? "" : resource_version_, "");
  target += "&watch=1&allowWatchBookmarks=true&timeoutSeconds=" + std::to_string(timeout_seconds);
  if (initial) target += "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan";
  const milliseconds idle =
      options_.watch_idle_timeout.count() > 0 ? options_.watch_idle_timeout : milliseconds((timeout_seconds + 30) * 1000);

  LineFramer framer;
  uint64_t events = 0;
  bool in_initial = initial;
  std::map<model::ObjectRef, Object> initial_objects;
  const Resource resource = options_.resource;

  auto handle = [&](std::string_view line) {
    WatchEvent event;
    std::string error;
    if (!decoder_.decode_event(line, resource, event, error)) throw StreamStop{false, "watch: " + error};
    switch (event.type) {
      case EventType::Added:
      case EventType::Modified:
        if (event.bad) log_bad(*event.bad);
        if (in_initial) {
          if (event.object) {
            initial_objects.insert_or_assign(object_key(*event.object), std::move(*event.object));
          } else if (event.bad) {
            initial_objects.erase(event.bad->ref);
          }
        } else if (event.object) {
          store_.upsert(resource, std::move(*event.object));
        } else if (event.bad && !event.bad->ref.name.empty()) {
          store_.erase(resource, event.bad->ref);  // unusable: as good as gone
        }
        break;
      case EventType::Deleted: {
        const model::ObjectRef key = event.object ? object_key(*event.object) : event.bad->ref;
        if (in_initial) {
          initial_objects.erase(key);
        } else {
          store_.erase(resource, key);
        }
        break;
      }
      case EventType::Bookmark:
        // The server's progress: its resourceVersion (set below) may be past
        // every event this watch delivered (changes its selectors filter
        // out), so the next watch resumes from there rather than further back.
        ++stats_.bookmarks;
        if (in_initial && event.initial_events_end) {
          std::vector<Object> objects;
          objects.reserve(initial_objects.size());
          for (auto& [key, object] : initial_objects) objects.push_back(std::move(object));
          initial_objects.clear();
          ++stats_.lists;
          store_.replace(resource, std::move(objects));
          in_initial = false;
        } else {
          store_.progressed();
        }
        break;
      case EventType::Error:
        if (event.status.code == 410) throw StreamStop{true, "watch: " + event.status.reason + ": " + event.status.message};
        throw StreamStop{false, "watch: ERROR " + std::to_string(event.status.code) + " " + event.status.reason + ": " +
                                    event.status.message};
    }
    if (!event.resource_version.empty() && !in_initial) {
      resource_version_ = event.resource_version;
      stats_.set_resource_version(resource_version_);
    }
    ++events;
    ++stats_.events;
  };

  ++stats_.watches;
  const auto start = Clock::now();
  WatchOutcome outcome;
  try {
    HttpReply reply = co_await client_.stream(
        target,
        [&](std::string_view data) {
          if (!framer.feed(data, handle)) throw StreamStop{false, "watch: a line longer than the limit"};
        },
        options_.request_timeout, idle);
    if (reply.status == 410) {
      outcome = {WatchOutcome::Gone, {}, "watch: 410 Gone"};
    } else if (reply.status != 200) {
      ApiStatus status;
      std::string message = status_text(reply.status);
      if (decoder_.decode_status(reply.body, status) && !status.message.empty()) message += ": " + status.message;
      outcome = {WatchOutcome::Failure, reply.retry_after, "watch: " + message};
    } else if (framer.pending() > 0) {
      outcome = {WatchOutcome::Failure, {}, "watch: the stream ended in the middle of an event"};
    } else if (events == 0 && Clock::now() - start < options_.min_watch_duration) {
      outcome = {WatchOutcome::Failure, {}, "watch: closed within " +
                                                std::to_string(options_.min_watch_duration.count()) +
                                                " ms without an event"};
    } else {
      outcome = {WatchOutcome::Healthy, {}, ""};
    }
  } catch (const StreamStop& stop) {
    outcome = {stop.gone ? WatchOutcome::Gone : WatchOutcome::Failure, {}, stop.why};
  } catch (const ApiError& e) {
    outcome = {WatchOutcome::Failure, {}, std::string("watch: ") + e.what()};
  }
  if (in_initial) {
    // A streaming list that did not finish: LIST from now on.
    watch_list_ = false;
    if (outcome.kind == WatchOutcome::Healthy) outcome = {WatchOutcome::Failure, {}, "watch-list: ended before its initial events"};
    if (outcome.kind == WatchOutcome::Gone) outcome.kind = WatchOutcome::Failure;
    outcome.why += " (falling back to LIST)";
  }
  co_return outcome;
}

awaitable<void> Reflector::run() {
  const std::string kind(kind_name(options_.resource));
  auto back_off = [&](const std::string& why, std::chrono::seconds retry_after) -> milliseconds {
    ++stats_.failures;
    stats_.set_last_error(why);
    milliseconds wait = options_.backoff.next(Clock::now(), random_);
    wait = std::max<milliseconds>(wait, retry_after);
    log_(kind + " " + why + "; retrying in " + std::to_string(wait.count()) + " ms");
    return wait;
  };
  for (;;) {
    const bool need_list = !store_.has_synced(options_.resource) || resource_version_.empty();
    if (need_list && !watch_list_) {
      milliseconds wait{0};
      try {
        co_await list();
      } catch (const ListError& e) {
        if (e.status == 404 && options_.resource == Resource::ServiceCIDRs) {
          // Not served (before Kubernetes 1.33): none, and look again later.
          if (!store_.has_synced(options_.resource)) log_(std::string(e.what()) + "; assuming no ServiceCIDRs");
          store_.replace(options_.resource, {});
          wait = std::chrono::minutes(5);
        } else {
          wait = back_off(e.what(), e.retry_after);
        }
      } catch (const ApiError& e) {
        wait = back_off(std::string("list: ") + e.what(), std::chrono::seconds(0));
      }
      if (wait.count() > 0) {
        co_await sleep(wait);
        continue;
      }
    }
    const WatchOutcome outcome = co_await watch();
    switch (outcome.kind) {
      case WatchOutcome::Healthy:
        break;
      case WatchOutcome::Gone:
        log_(kind + " " + outcome.why + "; relisting");
        resource_version_unavailable_ = true;
        resource_version_.clear();
        break;
      case WatchOutcome::Failure:
        co_await sleep(back_off(outcome.why, outcome.retry_after));
        break;
    }
  }
}

}  // namespace svcproxy::watch
