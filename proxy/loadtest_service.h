// The service side of `svcproxy loadtest NAMESPACE/SERVICE`: the cluster is
// read through the usual source flags, the target resolved (--via), the
// expected endpoints computed for the client's addresses, and with --watch
// the source followed during the run, each change of the target's expected
// endpoints handed to the engine.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "loadtest/engine.h"
#include "model/ip.h"
#include "model/objects.h"
#include "proxy/node_flags.h"
#include "proxy/service_target.h"
#include "proxy/source_flags.h"

namespace svcproxy::proxy {

// What the expected set depends on, fixed for the run.
struct ExpectationInputs {
  ServiceTarget target;
  Via via = Via::Cluster;
  model::Protocol protocol = model::Protocol::TCP;
  std::optional<model::IPFamily> family;
  NodeFlags node_flags;
  // The client's addresses (--sources); empty: the address the kernel picks
  // to reach the target from here.
  std::vector<model::IPAddress> sources;
};

struct Expectation {
  ServiceAddress address;
  loadtest::ExpectedEndpoints expected;  // merged over the sources
  std::vector<model::IPAddress> sources;  // the ones it was computed for
  std::vector<model::IPAddress> local_addresses;  // the node's (trace's "fib type local")
  bool sources_differ = false;            // the sources' sets were not all equal
  std::vector<std::string> warnings;      // node flags, compile: one line each
};

// Resolves the target in `cluster` and computes the expected set, as `trace`
// from the same flags would see it (throws TargetError, FlagError).
Expectation compute_expectation(const model::ClusterState& cluster, const ExpectationInputs& inputs);

// The source address this machine uses to reach `destination` (a connected
// UDP socket's local address; nothing is sent). Throws on no route.
model::IPAddress route_source(const model::IPAddress& destination, uint16_t port);

// A change of the expected set seen with --watch.
struct ExpectationChange {
  loadtest::ExpectedEndpoints expected;  // the new set
  std::vector<std::string> removed;      // left the serving set (unready, removed, ...)
  std::vector<std::string> added;        // joined it
  std::string problem;                   // the target no longer resolves (deleted service): why
};

// Reads the cluster from the source flags and, once start() is called,
// follows it on a thread of its own (the manifests watcher or the API
// informer, as `svcproxy run` does). Every change of the target's Service,
// its EndpointSlices or the Nodes recomputes the expected set; a changed set
// is handed to `on_change` (on the follower's thread).
class ServiceFollower {
 public:
  using Handler = std::function<void(const ExpectationChange&)>;
  using Logger = std::function<void(const std::string&)>;

  // Loads the source completely (the first list of every resource); throws
  // as the one-shot commands do when it cannot be read.
  ServiceFollower(const SourceFlags& source, const NodeFlags& node_flags, Logger log);
  ~ServiceFollower();  // stops
  ServiceFollower(const ServiceFollower&) = delete;
  ServiceFollower& operator=(const ServiceFollower&) = delete;

  model::ClusterState snapshot() const;
  // Follows from now on; `initial` is the set the run starts with.
  void start(ExpectationInputs inputs, loadtest::ExpectedEndpoints initial, Handler on_change);
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Endpoints in `a` and not in `b` (both sorted).
std::vector<std::string> set_difference(const std::vector<std::string>& a, const std::vector<std::string>& b);

}  // namespace svcproxy::proxy

namespace svcproxy::proxy {

// The service half of one loadtest run, built by resolve_target and kept
// for the run: what the target resolved to and, with --watch, the follower.
struct ServiceRun {
  ExpectationInputs inputs;
  Expectation expectation;
  std::unique_ptr<ServiceFollower> follower;  // set with --watch

  // Starts following (with --watch): each change of the expected set goes
  // to the engine (note_change for the serving set, set_expected always)
  // and is printed on stderr as one line with its wall-clock time.
  void watch(loadtest::Engine& engine);
  // One line: the target, the address, the expected and excluded endpoints.
  std::string describe() const;
};

// Reads the cluster (following it with `watch`) and resolves `target` for
// the clients `sources` (empty: the route's source). Throws TargetError,
// FlagError, or std::runtime_error when the source cannot be read.
std::unique_ptr<ServiceRun> resolve_service_run(const SourceFlags& source, const ExpectationInputs& inputs,
                                                bool watch);

}  // namespace svcproxy::proxy
