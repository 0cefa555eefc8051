// --proxy-mode: which dataplane the daemon runs, decided once at start from
// the nftables feature probe (dataplane/probe.h). The probe is a parameter
// so that tests decide its answer (through an in-memory kernel) instead of
// the host's kernel.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "dataplane/nftables_kernel.h"
#include "proxy/log.h"
#include "proxy/modes.h"

namespace svcproxy::proxy {

// Why nftables cannot be used, naming what is missing ("" when it can):
// runs the feature probe through `kernel`.
std::string nftables_unusable(dataplane::NftablesKernel& kernel);
// The same in this process's network namespace, over netlink.
std::string nftables_unusable();

// Returns "" when nftables is usable, else why not.
using NftablesProbe = std::function<std::string()>;

// The dataplane to run for the mode asked for, Nftables or Userspace, and
// one log line saying why: Nftables (the probe must pass: else an error line
// and nullopt, the command exits 1), Userspace, or Auto (Nftables when the
// probe passes, else Userspace with a warning saying why).
std::optional<ProxyMode> choose_proxy_mode(ProxyMode requested, const NftablesProbe& probe, Log& log);

}  // namespace svcproxy::proxy
