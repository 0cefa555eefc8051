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
#include <optional>
#include <string>
#include <vector>

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
  LocalhostNodePorts(std::vector<model::IPAddress> addresses, const UserspaceFlags& flags, Log& log);
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

}  // namespace svcproxy::proxy
