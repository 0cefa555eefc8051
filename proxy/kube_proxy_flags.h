// kube-proxy's flags (v1.37 `kube-proxy --help`, and the deprecated
// --healthz-port / --metrics-port it still takes) that `svcproxy run` takes
// so that a kube-proxy command line starts it unchanged. Flags svcproxy
// spells its own way are aliases in proxy/commands.cc (--logging-format,
// --iptables-sync-period, ...); the conntrack flags are in the DaemonSettings
// (proxy/config.h). This file holds the rest: the flags that act once and
// exit (--init-only, --write-config-to, --version), --oom-score-adj, and
// every flag that has no meaning here, which is accepted and warned about
// once, naming why (as kube-proxy does for its own deprecated flags).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <vector>

namespace svcproxy::proxy {

struct KubeProxyFlags {
  bool init_only = false;        // --init-only: set the conntrack sysctls, then exit
  std::string write_config_to;   // --write-config-to FILE: write the configuration, then exit
  std::string version;           // --version[=true|raw|false|vX.Y.Z]; "" when not given
  int32_t healthz_port = 10256;  // deprecated --healthz-port: 0 turns /healthz off
  int32_t metrics_port = 10249;  // deprecated --metrics-port: 0 turns /metrics off
  bool bind_address_hard_fail = false;
};

// Registers them on `run`.
void add_kube_proxy_flags(CLI::App& run, KubeProxyFlags& flags);

// One line per flag given on the command line that changes nothing here
// (or is deprecated), saying why: "--profiling: ignored (svcproxy serves no
// /debug/pprof)".
std::vector<std::string> kube_proxy_flag_warnings(const CLI::App& run, const KubeProxyFlags& flags);

// --oom-score-adj: writes /proc/self/oom_score_adj; "" or why it failed.
std::string apply_oom_score_adj(int value);

}  // namespace svcproxy::proxy
