#include "proxy/proxy_mode.h"

#include <exception>

#include "dataplane/netlink_socket.h"
#include "dataplane/probe.h"

namespace svcproxy::proxy {

std::string nftables_unusable(dataplane::NftablesKernel& kernel) {
  try {
    const auto missing = dataplane::probe_nftables_features(kernel);
    if (missing.empty()) return {};
    std::string text = "this kernel's nftables lacks:";
    for (const auto& m : missing) text += " [" + m.feature + ": " + m.error + "]";
    return text;
  } catch (const std::exception& e) {
    return std::string("cannot program nftables (needs CAP_NET_ADMIN and nf_tables): ") + e.what();
  }
}

std::string nftables_unusable() {
  try {
    dataplane::NetlinkSocket socket;
    return nftables_unusable(socket);
  } catch (const std::exception& e) {
    // No netlink socket at all: a kernel without nf_tables (nfnetlink).
    return std::string("cannot program nftables (needs CAP_NET_ADMIN and nf_tables): ") + e.what();
  }
}

std::optional<ProxyMode> choose_proxy_mode(ProxyMode requested, const NftablesProbe& probe, Log& log) {
  if (requested == ProxyMode::Userspace) {
    log.info("proxy mode userspace (--proxy-mode userspace)", {{"mode", "userspace"}});
    return ProxyMode::Userspace;
  }
  const std::string problem = probe();
  const bool is_auto = requested == ProxyMode::Auto;
  if (problem.empty()) {
    log.info(is_auto ? "proxy mode nftables (--proxy-mode auto: the nftables probe passed)"
                     : "proxy mode nftables (--proxy-mode nftables: the nftables probe passed)",
             {{"mode", "nftables"}});
    return ProxyMode::Nftables;
  }
  if (is_auto) {
    log.warning("proxy mode userspace (--proxy-mode auto: nftables unusable: " + problem + ")", {{"mode", "userspace"}});
    return ProxyMode::Userspace;
  }
  log.error("--proxy-mode nftables: " + problem);
  return std::nullopt;
}

}  // namespace svcproxy::proxy
