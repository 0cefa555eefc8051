// The userspace dataplane as the daemon drives it: the service addresses on
// svcproxy0 plus the proxier's listeners and endpoint tables, brought to a
// new set of service ports in one call. The daemon's sync loop calls
// apply() where the nftables path would program the kernel.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "model/service_ports.h"
#include "userspace/proxier.h"
#include "userspace/vip_interface.h"

namespace svcproxy::userspace {

struct BackendOptions {
  ProxierOptions proxier;
  std::string interface_name = kVipInterfaceName;
};

struct ApplyResult {
  size_t address_changes = 0;  // addresses added to / removed from svcproxy0
  size_t listeners = 0;        // listening sockets now (all workers)
  std::vector<std::string> warnings;
  std::chrono::microseconds duration{0};
  std::string error;  // empty: success
};

class UserspaceBackend {
 public:
  // Creates svcproxy0 (dummy, else bridge) and starts the workers.
  explicit UserspaceBackend(BackendOptions options);
  ~UserspaceBackend();
  ApplyResult apply(const std::vector<model::ServicePortState>& ports);
  const VipInterface& interface() const { return vip_; }
  ProxierStats stats() const { return proxier_.stats(); }
  unsigned workers() const { return proxier_.workers(); }

 private:
  VipInterface vip_;
  UserspaceProxier proxier_;
};

}  // namespace svcproxy::userspace
