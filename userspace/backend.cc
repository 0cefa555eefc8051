#include "userspace/backend.h"

namespace svcproxy::userspace {

UserspaceBackend::UserspaceBackend(BackendOptions options)
    : vip_(options.interface_name), proxier_(std::move(options.proxier)) {
  vip_.ensure();
}

// The interface and its addresses stay on exit (as nftables rules do): a
// restarted daemon adopts them and clients of existing VIPs see no gap in
// address ownership. `svcproxy cleanup` removes them.
UserspaceBackend::~UserspaceBackend() = default;

ApplyResult UserspaceBackend::apply(const std::vector<model::ServicePortState>& ports) {
  ApplyResult out;
  const auto start = std::chrono::steady_clock::now();
  try {
    // Addresses first, then listeners (they bind with IP_FREEBIND, so the
    // order is not required; it keeps a new VIP answering as soon as it
    // is local). Removed addresses go in the same call: their listeners are
    // closed by the update below.
    out.address_changes = vip_.set_addresses(RoutesBuilder::service_addresses(ports));
  } catch (const std::exception& e) {
    out.error = e.what();
  }
  out.warnings = proxier_.update(ports);
  out.listeners = proxier_.stats().listeners;
  out.duration = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  return out;
}

}  // namespace svcproxy::userspace
