#include "proxy/run.h"

#include <unistd.h>

#include <cctype>

#include "proxy/daemon.h"

namespace svcproxy::proxy {

std::string node_name(const NodeFlags& flags) {
  std::string name = flags.hostname_override;
  if (name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    name = host;
  }
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

int run_daemon(const RunOptions& options, Log& log) {
  Daemon daemon(options, log);
  if (options.proxy_mode == ProxyMode::Nftables) {
    ProcSysctls sysctls;
    log_conntrack_sysctls(apply_conntrack_sysctls(options.conntrack, online_cpus(), sysctls), log);
  } else {
    // kube-proxy sets them in every mode; the userspace proxy's connections
    // are its own sockets, not NATed flows, so it leaves them alone.
    log.info("conntrack sysctls left as they are (userspace mode does not NAT)");
  }
  return daemon.run();
}

}  // namespace svcproxy::proxy
