// Localhost NodePorts in nftables mode (kube-proxy's KEP-6032): TCP
// NodePorts answer on 127.0.0.1 and ::1 through a userspace relay.
//
// nftables cannot serve them: a connection to 127.0.0.1 DNATed to a pod
// would leave the host with a loopback source, which the kernel drops
// (iptables mode relies on route_localnet; nftables has no counterpart).
// So the userspace proxy (userspace/) is handed only the TCP NodePorts and
// listens on the relay addresses. It picks endpoints as the NodePort does
// (externalTrafficPolicy Cluster: every usable endpoint, Local: this node's),
// has no listener for a port without endpoints (the kernel refuses its
// clients at once) and follows every update: update() returns once every
// worker passed a barrier, so after a sync no new connection goes to an
// endpoint that left or turned unready. UDP and SCTP NodePorts on loopback
// are refused by the nftables rules, which count them.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "dataplane/netlink_socket.h"
#include "dataplane/ruleset_kernel.h"
#include "model/ip.h"
#include "model/objects.h"
#include "model/service_ports.h"
#include "proxy/log.h"
#include "proxy/userspace_mode.h"
#include "userspace/proxier.h"

namespace svcproxy::proxy {

// What the relay serves of a port: its NodePort alone (no ClusterIP,
// external or LB IP listener); none for a port that is not a TCP NodePort.
std::optional<model::ServicePortState> localhost_nodeport_view(const model::ServicePortState& port);

class LocalhostNodePorts {
 public:
  // Listens on `addresses` (127.0.0.1 and/or ::1). The --userspace-* flags
  // apply (one worker per address unless --userspace-workers says
  // otherwise: loopback clients are the node's own processes). Events are
  // logged to `log`, which must outlive this.
  LocalhostNodePorts(const std::vector<model::IPAddress>& addresses, const UserspaceFlags& flags, Log& log);
  // Closes every listener and relayed connection, and joins the workers.
  ~LocalhostNodePorts();
  LocalhostNodePorts(const LocalhostNodePorts&) = delete;
  LocalhostNodePorts& operator=(const LocalhostNodePorts&) = delete;

  // Every service's ports (a full sync). Returns the relay's warnings (a
  // port it could not listen on), complete after every call.
  std::vector<std::string> set_all(const std::vector<model::ServicePortState>& ports);
  // The ports of `services` are now `ports` (a service without ports is
  // gone). The proxy is updated only when a TCP NodePort changed.
  std::vector<std::string> set_services(const std::vector<model::ObjectRef>& services,
                                        const std::vector<model::ServicePortState>& ports);

  // Per relay address (kube-proxy's per-family metrics): listeners open
  // now, and failed attempts to open one so far (each update retries).
  struct FamilyStats {
    model::IPFamily family;
    size_t listeners = 0;
    uint64_t listen_failures = 0;
  };
  std::vector<FamilyStats> stats() const;

 private:
  using Views = std::map<model::ObjectRef, std::vector<model::ServicePortState>>;
  static void add_views(Views& views, const std::vector<model::ServicePortState>& ports);
  std::vector<std::string> apply();

  Views views_;  // by service: its TCP NodePorts as the relay serves them
  std::vector<std::string> warnings_;
  // One proxy per relay address: each family's listeners are counted apart.
  struct Relay {
    model::IPFamily family;
    std::unique_ptr<userspace::UserspaceProxier> proxier;
  };
  std::vector<Relay> relays_;
};

// kubeproxy_nftables_localhost_nodeport_rejected_packets_total: what the
// rules refusing UDP and SCTP NodePorts on loopback counted, per family and
// protocol, read from the kernel (one counter dump per table) when asked.
// The kernel's counters start again from 0 whenever a full sync recreates
// the table (RejectCountingKernel tells): the totals here add what each read
// finds since the previous one, so they only grow.
class LocalhostRejectCounters {
 public:
  struct Total {
    model::IPFamily family;
    model::Protocol protocol;
    uint64_t packets = 0;
  };
  // The families whose tables refuse loopback NodePorts.
  explicit LocalhostRejectCounters(const std::vector<model::IPFamily>& families);
  // Reads the counters; a table that cannot be read keeps its totals.
  // Thread-safe (one reader at a time).
  std::vector<Total> read();
  // Runs `recreate`, a full sync (the table and its counters made anew),
  // with reads held off: what the old counters counted is taken first, and
  // if `recreate` returns the new ones count from 0 (if it throws, the
  // transaction changed nothing).
  template <typename Recreate>
  void around_recreation(Recreate&& recreate) {
    std::lock_guard lock(mutex_);
    read_locked();
    recreate();
    for (auto& seen : seen_) seen.kernel = 0;
  }

 private:
  std::vector<Total> read_locked();

  struct Seen {
    uint64_t kernel = 0;  // the counter's value at the last read
    Total total;
  };
  std::mutex mutex_;
  dataplane::NetlinkSocket socket_;
  std::vector<Seen> seen_;  // per family and protocol
};

// The nftables kernel seam with the loopback rejects' counters kept across
// full syncs (each recreates the table).
class RejectCountingKernel final : public dataplane::RulesetKernel {
 public:
  RejectCountingKernel(std::unique_ptr<dataplane::RulesetKernel> inner, LocalhostRejectCounters& counters)
      : inner_(std::move(inner)), counters_(counters) {}
  void apply_full(const dataplane::RulesetCompiler& compiler) override {
    counters_.around_recreation([&] { inner_->apply_full(compiler); });
  }
  void apply_partial(const dataplane::RulesetDiff& diff, const dataplane::RulesetCompiler& definitions) override {
    inner_->apply_partial(diff, definitions);
  }
  dataplane::ir::Ruleset read_back() override { return inner_->read_back(); }
  void cleanup() override { inner_->cleanup(); }
  bool in_sync() const override { return inner_->in_sync(); }

 private:
  std::unique_ptr<dataplane::RulesetKernel> inner_;
  LocalhostRejectCounters& counters_;
};

}  // namespace svcproxy::proxy
