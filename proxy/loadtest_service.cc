#include "proxy/loadtest_service.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <system_error>

#include "base/unique_fd.h"
#include "dataplane/compile.h"
#include "model/service_ports.h"
#include "proxy/run.h"
#include "watch/api_source.h"
#include "watch/kubeconfig.h"
#include "watch/manifests_source.h"

namespace svcproxy::proxy {

std::vector<std::string> set_difference(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<std::string> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

model::IPAddress route_source(const model::IPAddress& destination, uint16_t port) {
  const bool v4 = destination.family == model::IPFamily::V4;
  const model::SocketAddress to = model::to_sockaddr(destination, port);
  const base::UniqueFd fd = base::adopt_or_throw(socket(to.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket");
  sockaddr_storage local{};
  socklen_t local_length = sizeof local;
  const bool ok = connect(fd.get(), to.get(), to.length) == 0 &&
                  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&local), &local_length) == 0;
  const int error = errno;
  if (!ok) throw std::runtime_error("no route to " + destination.str() + ": " + std::strerror(error));
  model::IPAddress out;
  out.family = destination.family;
  if (v4) std::memcpy(out.bytes.data(), &reinterpret_cast<sockaddr_in&>(local).sin_addr, 4);
  else std::memcpy(out.bytes.data(), &reinterpret_cast<sockaddr_in6&>(local).sin6_addr, 16);
  return out;
}

Expectation compute_expectation(const model::ClusterState& cluster, const ExpectationInputs& inputs) {
  Expectation out;
  // As `trace` from manifests: the node's addresses are its node IPs.
  model::NodeConfig node = resolve_node_config(inputs.node_flags, cluster,
                                               offline_node_addresses(inputs.node_flags, cluster), &out.warnings);
  const auto state = model::build_proxy_state(only_service(cluster, inputs.target.service), node);
  for (const auto& s : state.skipped) out.warnings.push_back("skipped " + s.object.str() + ": " + s.reason);
  out.address = resolve_service(inputs.target, inputs.via, inputs.protocol, inputs.family, cluster, state.ports, node);
  auto compiled = dataplane::compile(state.ports, node);
  out.warnings.insert(out.warnings.end(), compiled.warnings.begin(), compiled.warnings.end());
  dataplane::TraceEnvironment env;
  env.local_addresses = node.node_ips;
  env.local_addresses.insert(env.local_addresses.end(), node.nodeport_ips.begin(), node.nodeport_ips.end());
  out.local_addresses = env.local_addresses;

  out.sources = inputs.sources;
  if (out.sources.empty()) out.sources.push_back(route_source(out.address.ip, out.address.port));
  std::vector<loadtest::ExpectedEndpoints> per_source;
  for (const auto& source : out.sources) {
    if (source.family != out.address.ip.family) continue;  // such a source cannot reach the target
    per_source.push_back(expected_endpoints(compiled.ruleset, env, out.address, source, cluster, node));
  }
  out.expected = merge_expected(per_source, &out.sources_differ);
  return out;
}

namespace {

// An eventfd to wake the follower's poll.
class Wakeup {
 public:
  Wakeup() : fd_(base::adopt_or_throw(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd")) {}
  void notify() const {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = write(fd_.get(), &one, sizeof one);
  }
  void drain() const {
    uint64_t count = 0;
    [[maybe_unused]] auto n = read(fd_.get(), &count, sizeof count);
  }
  int fd() const { return fd_.get(); }

 private:
  base::UniqueFd fd_;
};

bool concerns(const watch::Change& change, const model::ObjectRef& service) {
  switch (change.resource) {
    case watch::Resource::Services:
      return change.key == service;
    case watch::Resource::EndpointSlices: {
      const auto& slice = std::get<model::EndpointSlice>(change.object);
      return slice.ref.ns == service.ns && slice.service_name == service.name;
    }
    case watch::Resource::Nodes:
      return true;  // this node's zone, its IPs
    default:
      return false;
  }
}

}  // namespace

struct ServiceFollower::Impl {
  Logger log;
  Wakeup wake;  // a relevant change arrived (API informer's thread)
  Wakeup quit;
  std::mutex mutex;  // guards target (read by the change handlers)
  std::optional<model::ObjectRef> target;
  std::atomic<bool> pending{false};
  std::thread thread;
  // Exactly one source. Declared last, so destroyed first: the informer's
  // thread calls on_change, which uses the members above.
  std::unique_ptr<watch::ManifestsSource> manifests;
  std::unique_ptr<watch::ApiInformer> informer;

  watch::Store& store() { return manifests ? manifests->store() : informer->store(); }

  void on_change(const watch::Change& change) {
    std::lock_guard lock(mutex);
    if (target && concerns(change, *target)) {
      pending = true;
      wake.notify();
    }
  }

  void follow(ExpectationInputs inputs, loadtest::ExpectedEndpoints current, const Handler& on_change) {
    pollfd fds[3] = {{quit.fd(), POLLIN, 0}, {wake.fd(), POLLIN, 0}, {manifests ? manifests->fd() : -1, POLLIN, 0}};
    for (;;) {
      if (poll(fds, manifests ? 3 : 2, -1) < 0) {
        if (errno == EINTR) continue;
        log(std::string("watch: poll: ") + std::strerror(errno));
        return;
      }
      if (fds[0].revents & POLLIN) return;
      // A burst of writes (an editor's write, rename, chmod) is one reload,
      // as in the daemon.
      if (manifests && (fds[2].revents & POLLIN)) manifests->poll(std::chrono::milliseconds(0), std::chrono::milliseconds(10));
      wake.drain();
      if (!pending.exchange(false)) continue;
      ExpectationChange change;
      try {
        change.expected = compute_expectation(store().snapshot(), inputs).expected;
      } catch (const std::exception& e) {
        // The service or its port is gone: nothing may serve the client now.
        change.expected = {.known = true, .serving = {}, .excluded = {}};
        change.problem = e.what();
      }
      change.removed = set_difference(current.serving, change.expected.serving);
      change.added = set_difference(change.expected.serving, current.serving);
      if (change.removed.empty() && change.added.empty() && change.expected.excluded == current.excluded) continue;
      current = change.expected;
      on_change(change);
    }
  }
};

ServiceFollower::ServiceFollower(const SourceFlags& source, const NodeFlags& node_flags, Logger log)
    : impl_(std::make_unique<Impl>()) {
  require_source(source);
  impl_->log = std::move(log);
  Impl* impl = impl_.get();
  auto on_change = [impl](const watch::Change& change) { impl->on_change(change); };
  if (!source.api()) {
    impl_->manifests = std::make_unique<watch::ManifestsSource>(source.manifests, impl_->log, on_change);
    impl_->manifests->load();
    for (const auto& d : impl_->manifests->problems()) {
      if (d.scope == watch::Diagnostic::Scope::Unreadable)
        throw std::runtime_error("--manifests " + source.manifests + ": " +
                                 (d.file == source.manifests ? "" : d.file + ": ") + d.message);
    }
    return;
  }
  const watch::ClientConfig config = watch::resolve_client_config(source.kubeconfig, source.master,
                                                                  [](const char* name) { return std::getenv(name); });
  watch::ApiSourceOptions options;
  options.request_timeout = parse_duration("--request-timeout", source.request_timeout, false);
  options.node_name = node_name(node_flags);
  impl_->informer = std::make_unique<watch::ApiInformer>(config, options, impl_->log, on_change);
  impl_->informer->start();
  if (!impl_->informer->wait_for_sync(options.request_timeout))
    throw watch::SourceError("--watch: the API server " + config.url() + " did not list everything within " +
                             source.request_timeout);
}

ServiceFollower::~ServiceFollower() { stop(); }

model::ClusterState ServiceFollower::snapshot() const { return impl_->store().snapshot(); }

void ServiceFollower::start(ExpectationInputs inputs, loadtest::ExpectedEndpoints initial, Handler on_change) {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->target = inputs.target.service;
  }
  impl_->thread = std::thread([impl = impl_.get(), inputs = std::move(inputs), initial = std::move(initial),
                               on_change = std::move(on_change)]() mutable {
    impl->follow(std::move(inputs), std::move(initial), on_change);
  });
}

void ServiceFollower::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->quit.notify();
  impl_->thread.join();
  if (impl_->informer) impl_->informer->stop();
}

namespace {

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out.empty() ? "-" : out;
}

std::string wall_clock_now() {
  const auto now = std::chrono::system_clock::now();
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count();
  const time_t seconds = static_cast<time_t>(us / 1000000);
  tm utc{};
  gmtime_r(&seconds, &utc);
  char text[64];
  const size_t n = strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  snprintf(text + n, sizeof text - n, ".%06lldZ", static_cast<long long>(us % 1000000));
  return text;
}

}  // namespace

std::string ServiceRun::describe() const {
  const auto& e = expectation.expected;
  std::string excluded;
  for (const auto& [endpoint, reason] : e.excluded) excluded += (excluded.empty() ? "" : ", ") + endpoint + " (" + reason + ")";
  std::string sources;
  for (const auto& s : expectation.sources) sources += (sources.empty() ? "" : ",") + s.str();
  return inputs.target.text + " -> " + expectation.address.str() + " (--via " + std::string(to_string(inputs.via)) +
         "); from " + sources + " expected: " + join(e.serving) + "; left out: " + (excluded.empty() ? "-" : excluded);
}

void ServiceRun::watch(loadtest::Engine& engine) {
  if (!follower) return;
  follower->start(inputs, expectation.expected, [&engine](const ExpectationChange& change) {
    // Printed before the engine is told: the line's time is at most the
    // engine's timestamp of the change.
    std::cerr << "svcproxy: loadtest: watch: endpoints changed at " << wall_clock_now()
              << ": removed " << join(change.removed) << "; added " << join(change.added)
              << (change.problem.empty() ? "" : "; " + change.problem) << "\n"
              << std::flush;
    if (!change.removed.empty() || !change.added.empty()) engine.note_change(change.removed, change.added);
    engine.set_expected(change.expected);
  });
}

std::unique_ptr<ServiceRun> resolve_service_run(const SourceFlags& source, const ExpectationInputs& inputs,
                                                bool watch) {
  auto run = std::make_unique<ServiceRun>();
  run->inputs = inputs;
  model::ClusterState cluster;
  bool problems = false;
  if (watch) {
    run->follower = std::make_unique<ServiceFollower>(
        source, inputs.node_flags, [](const std::string& line) { std::cerr << "svcproxy: " << line << "\n"; });
    cluster = run->follower->snapshot();
  } else {
    require_source(source);
    auto decoded = load_cluster(source, inputs.node_flags);
    for (const auto& d : decoded.diagnostics) std::cerr << d.str() << "\n";
    problems = !decoded.diagnostics.empty();
    cluster = std::move(decoded.state);
  }
  run->expectation = compute_expectation(cluster, inputs);
  for (const auto& w : run->expectation.warnings) std::cerr << w << "\n";
  // As rules and trace: an expected set built past skipped objects is not
  // trusted under --strict.
  if (source.strict && (problems || !run->expectation.warnings.empty()))
    throw std::runtime_error("--strict: objects were skipped or the node flags warned (see above); not loading");
  return run;
}

}  // namespace svcproxy::proxy
