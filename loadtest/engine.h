// The load generator: runs a Plan against one address and returns a Report.
// It knows sockets and clocks, nothing of Kubernetes: proxy/ resolves a
// service name to an address, computes the expected endpoint set from the
// model, supplies conntrack attribution and feeds endpoint changes (--watch).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>

#include "loadtest/report.h"

namespace svcproxy::loadtest {

// Which endpoint a connection reached, read without the backend's help (from
// the node's conntrack reply tuple). Implemented in proxy/; called from the
// engine's worker threads, so implementations are thread-safe.
class EndpointAttributor {
 public:
  virtual ~EndpointAttributor() = default;
  // `local` is the client socket's address, `remote` the address it
  // connected to (the VIP), protocol IPPROTO_TCP or IPPROTO_UDP. Returns
  // "IP:PORT" of the endpoint the flow was DNATed to, or nullopt (no entry,
  // not DNATed).
  virtual std::optional<std::string> endpoint_of(const sockaddr_storage& local, const sockaddr_storage& remote,
                                                 int protocol) = 0;
};

// The endpoints the model says must serve this client, and why the others
// must not. Empty `serving` with `known == false`: no expectation (a bare
// IP:PORT target): fairness is computed over the endpoints that answered.
struct ExpectedEndpoints {
  bool known = false;
  std::vector<std::string> serving;  // "IP:PORT"
  // Endpoints of the service that must not serve this client, with a reason
  // ("unready", "other zone", "remote under externalTrafficPolicy Local").
  std::vector<std::pair<std::string, std::string>> excluded;
};

struct Plan {
  std::string target;         // as the user gave it, for the report
  sockaddr_storage address{};  // what to load (IPv4 or IPv6 + port)
  Mode mode = Mode::request;
  unsigned concurrency = 16;  // connections / requests in flight
  unsigned threads = 1;
  std::optional<std::chrono::microseconds> duration;  // one of duration / requests
  std::optional<uint64_t> requests;
  std::optional<double> rate;  // open loop, requests/s over all threads
  std::vector<sockaddr_storage> sources;  // client addresses to bind, round robin; empty: the kernel picks
  bool keepalive = true;        // http mode
  std::string http_path = "/";
  std::string endpoint_header = "X-Endpoint";  // http: which header names the server
  std::chrono::milliseconds timeout{1000};     // per attempt (connect + answer)
  ExpectedEndpoints expected;
  std::shared_ptr<EndpointAttributor> attributor;  // null: attribution from answers only
};

// Live progress, sampled about 4 times a second from the engine's own thread.
struct Progress {
  double elapsed_s = 0;
  double requests_per_s = 0;  // over the last sample interval
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t p99_us = 0;        // so far, corrected
  std::vector<std::pair<std::string, uint64_t>> busiest;  // top 3 endpoints by count
};

class Engine {
 public:
  explicit Engine(Plan plan);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Runs until the duration or request count is reached or stop() is
  // called; `on_progress` (may be empty) is called ~4 times a second.
  Report run(const std::function<void(const Progress&)>& on_progress);

  // Thread-safe, callable while run() runs (from the --watch thread): an
  // endpoint change the source reported now. The engine timestamps it and
  // computes the drain / first-answer times into Report::changes.
  void note_change(std::vector<std::string> removed, std::vector<std::string> added);

  // Thread-safe: the expected set changed (--watch); violations are judged
  // against the set in force when each answer arrived.
  void set_expected(ExpectedEndpoints expected);

  // Thread-safe: ends run() early (SIGINT).
  void stop();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace svcproxy::loadtest
