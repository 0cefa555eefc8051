// Which addresses are this node's: what --nodeport-addresses selects among
// and where the node IPs fall back to. The daemon (and `run --once`, `trace
// --live`) runs on the node and asks its interfaces; `rules` and `trace`
// from manifests describe a node that is usually not the machine running
// them, so they take the node's own IPs instead. One interface, so resolving
// the node flags never branches on which it holds, and unit tests give a
// fixed list instead of the host's interfaces (kube-proxy's
// NetworkInterfacer seam).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "model/ip.h"

namespace svcproxy::proxy {

class LocalAddresses {
 public:
  virtual ~LocalAddresses() = default;
  // Sorted, without duplicates; loopback included (callers skip it).
  virtual std::vector<model::IPAddress> list() const = 0;
  // Where the list came from, for messages: "this network namespace's
  // interfaces", "--node-ip", ...
  virtual std::string origin() const = 0;
};

// The addresses on this network namespace's interfaces (getifaddrs), IPv6
// link-local ones left out.
class InterfaceAddresses final : public LocalAddresses {
 public:
  std::vector<model::IPAddress> list() const override;
  std::string origin() const override { return "this network namespace's interfaces"; }
};

// A fixed list: an offline node's own IPs, or a test's fake interfaces.
class FixedAddresses final : public LocalAddresses {
 public:
  FixedAddresses(std::vector<model::IPAddress> addresses, std::string origin);
  std::vector<model::IPAddress> list() const override { return addresses_; }
  std::string origin() const override { return origin_; }

 private:
  std::vector<model::IPAddress> addresses_;
  std::string origin_;
};

}  // namespace svcproxy::proxy
