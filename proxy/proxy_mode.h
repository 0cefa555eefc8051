// --proxy-mode: which dataplane the daemon runs, decided once at start from
// the nftables feature probe (dataplane/probe.h). The probe is a parameter
// so that tests decide its answer (through an in-memory kernel) instead of
// the host's kernel.
#pragma once

#include <functional>
#include <string>

#include "dataplane/nftables_kernel.h"
#include "proxy/log.h"

namespace svcproxy::proxy {

// Why nftables cannot be used, naming what is missing ("" when it can):
// runs the feature probe through `kernel`.
std::string nftables_unusable(dataplane::NftablesKernel& kernel);
// The same in this process's network namespace, over netlink.
std::string nftables_unusable();

// Returns "" when nftables is usable, else why not.
using NftablesProbe = std::function<std::string()>;

// nftables (the probe must pass: else one error line and 1), userspace, or
// auto (nftables when the probe passes, else userspace with a warning saying
// why). Sets *chosen and logs the choice; returns the exit code (0: go on).
int check_proxy_mode(const std::string& mode, const NftablesProbe& probe, std::string* chosen, Log& log);

}  // namespace svcproxy::proxy
