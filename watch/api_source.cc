#include "watch/api_source.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <condition_variable>
#include <mutex>
#include <vector>

#include "watch/reflector.h"

namespace svcproxy::watch {

namespace net = boost::asio;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

const std::vector<Resource> kAll = {Resource::Services, Resource::EndpointSlices, Resource::Nodes,
                                    Resource::ServiceCIDRs};

ReflectorOptions options_for(Resource resource, const ApiSourceOptions& options) {
  ReflectorOptions out;
  switch (resource) {
    case Resource::Services:
      out = services_options();
      break;
    case Resource::EndpointSlices:
      out = endpoint_slices_options();
      break;
    case Resource::Nodes:
      out = node_options(options.node_name);
      break;
    case Resource::ServiceCIDRs:
      out = service_cidrs_options();
      break;
  }
  out.request_timeout = options.request_timeout;
  out.watch_list = options.watch_list;
  return out;
}

// A failed TLS handshake or credential plugin will fail the same way again.
bool transient(FailureKind kind) { return kind != FailureKind::Tls && kind != FailureKind::Credentials; }
bool transient(int status) { return status == 0 || status == 410 || status == 429 || status >= 500; }

net::awaitable<void> list_all(ApiClient& client, Store& store, const ApiSourceOptions& options, const Logger& log) {
  const auto deadline = Clock::now() + options.request_timeout;
  std::mt19937_64 random(std::random_device{}());
  for (const Resource resource : kAll) {
    ReflectorOptions reflector_options = options_for(resource, options);
    Backoff backoff;
    // The server's last answer: when the deadline cuts the next attempt
    // short, the error still says what the server kept answering.
    std::string last_answer;
    for (;;) {
      const auto remaining = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (remaining.count() <= 0) throw SourceError("the API server at " + client.config().url() + " did not answer in time");
      reflector_options.request_timeout = std::min(remaining, options.request_timeout);
      Reflector reflector(client, store, reflector_options, log);
      std::string why;
      std::chrono::seconds retry_after{0};
      try {
        co_await reflector.list();
        break;
      } catch (const ListError& e) {
        if (e.status == 404 && resource == Resource::ServiceCIDRs) {
          store.replace(resource, {});  // an API server without ServiceCIDRs (before 1.33)
          break;
        }
        if (e.status == 401 || e.status == 403) {
          throw SourceError(std::string("the API server rejected the credentials: ") + e.what());
        }
        if (!transient(e.status)) throw SourceError(e.what());
        why = e.what();
        last_answer = why;
        retry_after = e.retry_after;
      } catch (const ApiError& e) {
        if (e.kind == FailureKind::Tls) throw SourceError(e.what());
        if (!transient(e.kind)) throw SourceError(e.what());
        why = e.what();
      }
      auto wait = std::max<milliseconds>(backoff.next(Clock::now(), random), retry_after);
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (wait >= left) {
        if (!last_answer.empty() && last_answer != why) why = last_answer + " (then: " + why + ")";
        throw SourceError("cannot read the cluster from " + client.config().url() + " within " +
                          std::to_string(options.request_timeout.count() / 1000) + " s: " + why);
      }
      log(why + "; retrying in " + std::to_string(wait.count()) + " ms");
      net::steady_timer timer(co_await net::this_coro::executor);
      timer.expires_after(wait);
      co_await timer.async_wait(net::use_awaitable);
    }
  }
}

}  // namespace

model::ClusterState list_cluster(const ClientConfig& config, const ApiSourceOptions& options, const Logger& log) {
  net::io_context io;
  ApiClient client(io.get_executor(), config, log);
  Store store;
  std::exception_ptr failure;
  net::co_spawn(io, list_all(client, store, options, log), [&](std::exception_ptr e) { failure = e; });
  io.run();
  if (failure) {
    try {
      std::rethrow_exception(failure);
    } catch (const SourceError&) {
      throw;
    } catch (const std::exception& e) {
      throw SourceError(e.what());
    }
  }
  return store.snapshot();
}

struct ApiInformer::Impl {
  Impl(ClientConfig config, ApiSourceOptions opts, Logger logger, ChangeHandler handler,
       std::function<void()> synced)
      : options(std::move(opts)),
        log(std::move(logger)),
        on_synced(std::move(synced)),
        store(std::move(handler),
              [this] {
                {
                  std::lock_guard lock(mutex);
                  cv.notify_all();
                }
                if (on_synced) on_synced();
              }),
        io(std::make_unique<net::io_context>()),
        client(io->get_executor(), std::move(config), log) {}

  ApiSourceOptions options;
  Logger log;
  std::function<void()> on_synced;
  std::mutex mutex;
  std::condition_variable cv;
  Store store;
  std::unique_ptr<net::io_context> io;
  ApiClient client;
  std::vector<std::unique_ptr<Reflector>> reflectors;
  std::thread thread;
};

ApiInformer::ApiInformer(ClientConfig config, ApiSourceOptions options, Logger log, ChangeHandler on_change,
                         std::function<void()> on_synced)
    : impl_(std::make_unique<Impl>(std::move(config), std::move(options), std::move(log), std::move(on_change),
                                   std::move(on_synced))) {}

ApiInformer::~ApiInformer() { stop(); }

void ApiInformer::start() {
  if (impl_->thread.joinable() || !impl_->io) return;
  for (const Resource resource : kAll) {
    impl_->reflectors.push_back(
        std::make_unique<Reflector>(impl_->client, impl_->store, options_for(resource, impl_->options), impl_->log));
    net::co_spawn(*impl_->io, impl_->reflectors.back()->run(), net::detached);
  }
  impl_->thread = std::thread([this] { impl_->io->run(); });
}

// The coroutines are destroyed with their io_context, before the
// reflectors they run on; an informer is not restarted.
void ApiInformer::stop() {
  if (!impl_->io) return;
  impl_->io->stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->io.reset();
}

Store& ApiInformer::store() { return impl_->store; }

bool ApiInformer::has_synced() const { return impl_->store.has_synced(kAll); }

bool ApiInformer::wait_for_sync(milliseconds timeout) {
  std::unique_lock lock(impl_->mutex);
  return impl_->cv.wait_for(lock, timeout, [this] { return impl_->store.has_synced(kAll); });
}

InformerStats ApiInformer::stats() const {
  InformerStats out;
  for (const auto& r : impl_->reflectors) {
    out.lists += r->stats().lists;
    out.watches += r->stats().watches;
    out.failures += r->stats().failures;
    out.bad_objects += r->stats().bad_objects;
    out.bookmarks[resource_name(r->resource())] += r->stats().bookmarks;
    out.progress.push_back({resource_name(r->resource()), r->stats().resource_version(), r->stats().lists,
                            r->stats().failures, r->stats().last_error()});
    ++out.resources;
  }
  return out;
}

}  // namespace svcproxy::watch
