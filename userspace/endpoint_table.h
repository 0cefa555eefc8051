// The userspace proxy's routing state: which endpoints answer on which
// listening address, and how the next one is chosen. Pure data and logic (no
// sockets), so the choice rules are unit-tested without a network.
//
// A Routes value is immutable once built and is published behind an atomic
// shared_ptr: worker threads load it per connection and never lock it. The
// only shared mutable pieces are atomics (the round-robin cursor, an
// endpoint's ejection deadline) and, for ClientIP affinity only, a small
// mutex-guarded map per service port.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "model/ip.h"
#include "model/objects.h"
#include "model/service_ports.h"

namespace svcproxy::userspace {

using Clock = std::chrono::steady_clock;

// Passive health of one endpoint, shared by every table that lists it and
// kept across updates while the endpoint stays.
struct EndpointHealth {
  std::atomic<int64_t> ejected_until_ns{0};  // Clock epoch; 0: never ejected
  std::atomic<uint64_t> ejections{0};
  bool ejected(Clock::time_point now) const {
    return ejected_until_ns.load(std::memory_order_relaxed) > now.time_since_epoch().count();
  }
};

struct Backend {
  model::EndpointAddress address;
  std::shared_ptr<EndpointHealth> health;
};

// ClientIP affinity: client address -> endpoint, with the service's timeout.
// Survives updates of the service port; an entry whose endpoint left is
// ignored (and replaced) on the next lookup.
class AffinityMap {
 public:
  std::optional<model::EndpointAddress> lookup(const model::IPAddress& client, Clock::time_point now,
                                               std::chrono::seconds timeout);
  void record(const model::IPAddress& client, const model::EndpointAddress& endpoint, Clock::time_point now);
  void forget(const model::IPAddress& client);
  size_t size() const;

  // The client's endpoint under one lock: `choose(sticky)` gets the
  // client's valid entry (or nullptr) and returns the backend to use, which
  // is recorded before the lock is released. Two first connections of one
  // client racing on two workers must agree: with a lookup and a record
  // apart, each picked its own endpoint and the second overwrote the first.
  template <typename Choose>
  const Backend* stick(const model::IPAddress& client, Clock::time_point now, std::chrono::seconds timeout,
                       Choose&& choose) {
    std::lock_guard lock(mu_);
    last_timeout_ = timeout;
    const model::EndpointAddress* sticky = nullptr;
    if (auto it = entries_.find(client); it != entries_.end()) {
      if (now - it->second.last_used > timeout)
        entries_.erase(it);
      else
        sticky = &it->second.endpoint;
    }
    const Backend* chosen = choose(sticky);
    if (chosen) record_locked(client, chosen->address, now);
    return chosen;
  }

 private:
  struct Entry {
    model::EndpointAddress endpoint;
    Clock::time_point last_used;
  };
  void record_locked(const model::IPAddress& client, const model::EndpointAddress& endpoint, Clock::time_point now);

  mutable std::mutex mu_;
  std::map<model::IPAddress, Entry> entries_;
  size_t inserts_since_sweep_ = 0;
  std::chrono::seconds last_timeout_{0};
};

// The endpoints one set of listeners balances over (a service port's
// internal or external endpoint set), in the shuffled order round robin
// walks.
struct PortTable {
  std::string name;  // "ns/svc/tcp/port (internal)"
  model::Protocol protocol = model::Protocol::TCP;
  std::vector<Backend> backends;
  std::optional<std::chrono::seconds> affinity_timeout;
  std::shared_ptr<AffinityMap> affinity;  // set iff affinity_timeout
  mutable std::atomic<uint64_t> cursor{0};

  // The next endpoint for a new connection or flow from `client`: the
  // affinity entry if still valid, else the next non-ejected endpoint in
  // round-robin order; when every endpoint is ejected, the next one anyway
  // (better a likely failure than a certain one). nullptr: no endpoints.
  // `reset_affinity` drops the client's entry first (a retry after a
  // failed connect).
  const Backend* pick(const model::IPAddress& client, Clock::time_point now, bool reset_affinity = false) const;
  const Backend* find(const model::EndpointAddress& address) const;

 private:
  const Backend* next_in_turn(Clock::time_point now) const;
};

// Where one listening socket sends what it accepts.
struct Route {
  std::shared_ptr<const PortTable> table;
  // loadBalancerSourceRanges (LB IPs only): empty allows every client.
  std::vector<model::CIDR> source_ranges;
  bool allows(const model::IPAddress& client) const;
};

struct ListenKey {
  model::IPAddress ip;  // unspecified: every local address of the family
  uint16_t port = 0;
  model::Protocol protocol = model::Protocol::TCP;
  std::string str() const;
  auto operator<=>(const ListenKey&) const = default;
};

struct ListenKeyHash {
  size_t operator()(const ListenKey& k) const noexcept;
};

struct Routes {
  std::unordered_map<ListenKey, Route, ListenKeyHash> by_listener;
  const Route* find(const ListenKey& key) const {
    auto it = by_listener.find(key);
    return it == by_listener.end() ? nullptr : &it->second;
  }
};

struct NodePortAddresses {
  std::vector<model::IPAddress> ips;
  bool all_v4 = false;  // listen on 0.0.0.0
  bool all_v6 = false;  // listen on ::
};

// Builds Routes from the model, reusing what `previous` holds: a table whose
// endpoint set is unchanged is shared as is (its cursor keeps turning), a
// changed set is reshuffled (kube-proxy's userspace proxier), affinity maps
// and endpoint health carry over by identity. Conflicting claims on one
// listening address keep the first (ports are sorted by name) and are
// reported in `warnings`.
class RoutesBuilder {
 public:
  explicit RoutesBuilder(uint64_t seed = std::random_device{}()) : rng_(seed) {}
  std::shared_ptr<const Routes> build(const std::vector<model::ServicePortState>& ports,
                                      const NodePortAddresses& nodeports, std::vector<std::string>* warnings);
  // Every address the VIP interface must carry for `ports` (ClusterIPs,
  // external IPs, LB IPs), sorted and unique.
  static std::vector<model::IPAddress> service_addresses(const std::vector<model::ServicePortState>& ports);

 private:
  std::shared_ptr<const PortTable> table_for(const model::ServicePortState& port, bool external);
  std::mt19937_64 rng_;
  // Keyed by "name|internal" / "name|external".
  std::map<std::string, std::shared_ptr<const PortTable>> tables_;
  std::map<model::EndpointAddress, std::shared_ptr<EndpointHealth>> health_;
  std::map<std::string, std::shared_ptr<const PortTable>> next_tables_;
  std::map<model::EndpointAddress, std::shared_ptr<EndpointHealth>> next_health_;
};

}  // namespace svcproxy::userspace
