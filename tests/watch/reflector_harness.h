// A reflector (or several) on its own I/O thread against the fixture API
// server, with the change stream and log captured for tests. Waits are on
// conditions with deadlines, never sleeps.
#pragma once

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <functional>
#include <sstream>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "tests/watch/fixture_process.h"
#include "watch/api_client.h"
#include "watch/reflector.h"
#include "watch/store.h"

namespace svcproxy::watch::testing {

inline std::string pki_dir() {
  static const std::string dir = [] {
    const std::string d = (std::filesystem::temp_directory_path() / ("svcproxy-watch-pki-" + std::to_string(getpid()))).string();
    return d;
  }();
  return dir;
}

inline ClientConfig fixture_config(const FixtureProcess& fx, bool tls = true) {
  ClientConfig config;
  parse_server_url(fx.url(), config);
  if (tls) {
    std::ifstream ca(pki_dir() + "/ca.crt");
    std::stringstream text;
    text << ca.rdbuf();
    config.ca_pem = text.str();
  }
  config.token = "test-token";
  return config;
}

// Fast reflector options for tests.
inline ReflectorOptions fast(ReflectorOptions options) {
  options.backoff.initial = std::chrono::milliseconds(5);
  options.backoff.cap = std::chrono::milliseconds(50);
  options.request_timeout = std::chrono::seconds(10);
  options.watch_idle_timeout = std::chrono::seconds(3);
  return options;
}

class Harness {
 public:
  explicit Harness(ClientConfig config)
      : io_(std::make_unique<boost::asio::io_context>()),
        store_([this](const Change& c) { on_change(c); }, [this] { notify(); }),
        client_(io_->get_executor(), std::move(config), [this](const std::string& line) { on_log(line); }) {}

  ~Harness() { stop(); }

  Reflector& add(ReflectorOptions options, uint64_t seed = 7) {
    reflectors_.push_back(std::make_unique<Reflector>(client_, store_, std::move(options),
                                                      [this](const std::string& line) { on_log(line); }, seed));
    return *reflectors_.back();
  }

  void start() {
    for (auto& r : reflectors_) boost::asio::co_spawn(*io_, r->run(), boost::asio::detached);
    thread_ = std::thread([this] { io_->run(); });
  }

  // Stops the thread and destroys the coroutines (before the reflectors
  // they run on).
  void stop() {
    if (!io_) return;
    io_->stop();
    if (thread_.joinable()) thread_.join();
    io_.reset();
  }

  // Waits until `predicate` holds (checked after every change and log line).
  bool wait_for(const std::function<bool()>& predicate, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [&] {
      lock.unlock();
      const bool done = predicate();
      lock.lock();
      return done;
    });
  }

  bool wait_for_log(const std::string& needle, std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    return wait_for([&] { return log_contains(needle); }, timeout);
  }

  bool log_contains(const std::string& needle) {
    std::lock_guard lock(mutex_);
    for (const auto& line : logs_) {
      if (line.find(needle) != std::string::npos) return true;
    }
    return false;
  }

  std::vector<Change> changes() {
    std::lock_guard lock(mutex_);
    return changes_;
  }
  std::vector<std::string> logs() {
    std::lock_guard lock(mutex_);
    return logs_;
  }

  Store& store() { return store_; }
  ApiClient& client() { return client_; }


 private:
  void on_change(const Change& change) {
    std::lock_guard lock(mutex_);
    changes_.push_back(change);
    cv_.notify_all();
  }
  void on_log(const std::string& line) {
    std::lock_guard lock(mutex_);
    logs_.push_back(line);
    cv_.notify_all();
  }
  void notify() {
    std::lock_guard lock(mutex_);
    cv_.notify_all();
  }

  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Change> changes_;
  std::vector<std::string> logs_;
  std::unique_ptr<boost::asio::io_context> io_;
  Store store_;
  ApiClient client_;
  std::vector<std::unique_ptr<Reflector>> reflectors_;
  std::thread thread_;
};

inline std::string service_json(const std::string& ns, const std::string& name, const std::string& ip, int port,
                                const std::string& extra_labels = "") {
  return R"({"metadata":{"name":")" + name + R"(","namespace":")" + ns + R"(","labels":{"app":")" + name + "\"" +
         extra_labels + R"(}},"spec":{"type":"ClusterIP","clusterIP":")" + ip + R"(","clusterIPs":[")" + ip +
         R"("],"ports":[{"name":"http","protocol":"TCP","port":)" + std::to_string(port) +
         R"(,"targetPort":8080}]}})";
}

inline std::string slice_json(const std::string& ns, const std::string& name, const std::string& service,
                              const std::vector<std::string>& ips, int port = 8080) {
  std::string endpoints;
  for (const auto& ip : ips) {
    if (!endpoints.empty()) endpoints += ",";
    endpoints += R"({"addresses":[")" + ip + R"("],"conditions":{"ready":true,"serving":true,"terminating":false},"nodeName":"node-1","zone":"zone-a"})";
  }
  return R"({"metadata":{"name":")" + name + R"(","namespace":")" + ns +
         R"(","labels":{"kubernetes.io/service-name":")" + service + R"("}},"addressType":"IPv4","endpoints":[)" +
         endpoints + R"(],"ports":[{"name":"http","protocol":"TCP","port":)" + std::to_string(port) + "}]}";
}

// The fixture's current objects of `resource`, through the same selectors
// the reflector uses, decoded as the reflector would.
inline std::vector<Object> fixture_objects(FixtureProcess& fx, const std::string& resource,
                                           const ReflectorOptions& options) {
  std::string reply = fx.command(R"({"op":"list","resource":")" + resource + R"(","labelSelector":)" +
                                 json_string(options.label_selector) + R"(,"fieldSelector":)" +
                                 json_string(options.field_selector) + "}");
  reply.reserve(reply.size() + ApiDecoder::kPadding);
  ApiDecoder decoder;
  ListPage page;
  std::string error;
  EXPECT_TRUE(decoder.decode_list(reply, options.resource, page, error)) << error << reply.substr(0, 200);
  return page.objects;
}

}  // namespace svcproxy::watch::testing
