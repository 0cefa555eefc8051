#include "proxy/kube_proxy_flags.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "proxy/config.h"

namespace svcproxy::proxy {

namespace {

enum class Takes { Nothing, Text, Duration, Integer, Number };

// A kube-proxy flag with no effect on svcproxy, and why.
struct IgnoredFlag {
  const char* name;
  Takes takes;
  const char* why;
};

constexpr const char* kIpvs = "applies to kube-proxy's ipvs mode; svcproxy runs nftables";
constexpr const char* kLogBuffer = "svcproxy writes every log line at once, unbuffered";
constexpr const char* kLogStreams = "svcproxy writes its whole log to stderr";
constexpr const char* kApiClient = "svcproxy makes one list and one watch per resource and does not rate-limit them";

constexpr IgnoredFlag kIgnored[] = {
    {"--config-sync-period", Takes::Duration,
     "svcproxy's watches never replay their cache; every --sync-period re-applies the rules"},
    {"--feature-gates", Takes::Text, "svcproxy has no feature gates: what it implements is always on"},
    {"--iptables-localhost-nodeports", Takes::Nothing,
     "applies to kube-proxy's iptables mode; loopback NodePorts follow --nodeport-addresses"},
    {"--ipvs-exclude-cidrs", Takes::Text, kIpvs},
    {"--ipvs-min-sync-period", Takes::Duration, kIpvs},
    {"--ipvs-scheduler", Takes::Text, kIpvs},
    {"--ipvs-strict-arp", Takes::Nothing, kIpvs},
    {"--ipvs-sync-period", Takes::Duration, kIpvs},
    {"--ipvs-tcp-timeout", Takes::Duration, kIpvs},
    {"--ipvs-tcpfin-timeout", Takes::Duration, kIpvs},
    {"--ipvs-udp-timeout", Takes::Duration, kIpvs},
    {"--kube-api-burst", Takes::Integer, kApiClient},
    {"--kube-api-qps", Takes::Number, kApiClient},
    {"--kube-api-content-type", Takes::Text, "svcproxy's API client speaks JSON"},
    {"--log-flush-frequency", Takes::Duration, kLogBuffer},
    {"--log-json-info-buffer-size", Takes::Text, kLogBuffer},
    {"--log-text-info-buffer-size", Takes::Text, kLogBuffer},
    {"--log-json-split-stream", Takes::Nothing, kLogStreams},
    {"--log-text-split-stream", Takes::Nothing, kLogStreams},
    {"--profiling", Takes::Nothing, "svcproxy serves no /debug/pprof"},
    {"--show-hidden-metrics-for-version", Takes::Text, "svcproxy hides no metrics"},
    {"--vmodule", Takes::Text, "svcproxy's verbosity (-v) is one level for every file"},
};

// Go's duration syntax, as kube-proxy's pflag reads it.
std::string check_duration(const std::string& text) {
  try {
    (void)parse_go_duration(text);
    return {};
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
}

void add_ignored(CLI::App& run, const IgnoredFlag& f) {
  const std::string help = std::string("kube-proxy's; accepted and ignored: ") + f.why;
  switch (f.takes) {
    case Takes::Nothing:
      // Go's bool flags: --flag, --flag=true, --flag=false.
      run.add_flag(f.name, help)->group("kube-proxy flags ignored");
      break;
    case Takes::Duration:
      run.add_option(f.name, help)->check(check_duration)->group("kube-proxy flags ignored");
      break;
    case Takes::Integer:
      run.add_option(f.name, help)->check(CLI::TypeValidator<int32_t>("INT32"))->group("kube-proxy flags ignored");
      break;
    case Takes::Number:
      run.add_option(f.name, help)->check(CLI::Number)->group("kube-proxy flags ignored");
      break;
    case Takes::Text:
      run.add_option(f.name, help)->group("kube-proxy flags ignored");
      break;
  }
}

bool given(const CLI::App& run, const char* name) {
  const auto* opt = run.get_option_no_throw(name);
  return opt != nullptr && opt->count() > 0;
}

}  // namespace

void add_kube_proxy_flags(CLI::App& run, KubeProxyFlags& flags) {
  run.add_flag("--init-only", flags.init_only,
               "Set the conntrack sysctls (the steps that need more than CAP_NET_ADMIN), then exit");
  run.add_option("--write-config-to", flags.write_config_to,
                 "Write the configuration (flags, --config file and defaults) as a KubeProxyConfiguration to "
                 "this file, then exit");
  run.add_flag("--version", flags.version,
               "Print svcproxy's version and exit (also --version=raw); --version=vX.Y.Z is ignored");
  run.add_option("--healthz-port", flags.healthz_port,
                 "Deprecated (kube-proxy's): 0 turns off the --healthz-bind-address server")
      ->group("kube-proxy flags ignored");
  run.add_option("--metrics-port", flags.metrics_port,
                 "Deprecated (kube-proxy's): 0 turns off the --metrics-bind-address server")
      ->group("kube-proxy flags ignored");
  run.add_flag("--bind-address-hard-fail", flags.bind_address_hard_fail,
               "svcproxy always exits when it cannot listen (kube-proxy's --bind-address-hard-fail=true)");
  for (const auto& f : kIgnored) add_ignored(run, f);
}

std::vector<std::string> kube_proxy_flag_warnings(const CLI::App& run, const KubeProxyFlags& flags) {
  std::vector<std::string> out;
  for (const auto& f : kIgnored)
    if (given(run, f.name)) out.push_back(std::string(f.name) + ": ignored (" + f.why + ")");
  if (given(run, "--bind-address-hard-fail") && !flags.bind_address_hard_fail)
    out.emplace_back("--bind-address-hard-fail=false: ignored (svcproxy always exits when it cannot listen)");
  for (const char* port : {"--healthz-port", "--metrics-port"})
    if (given(run, port))
      out.push_back(
          std::string(port) + ": deprecated (kube-proxy's); use --" + (port[2] == 'h' ? "healthz" : "metrics") +
          "-bind-address (0 turns the server off; another port changes nothing: the port comes from the bind address)");
  const std::string& v = flags.version;
  if (!v.empty() && v != "true" && v != "raw" && v != "false")
    out.push_back("--version=" + v + ": ignored (svcproxy reports its own version)");
  return out;
}

std::string apply_oom_score_adj(int value) {
  std::ofstream out("/proc/self/oom_score_adj");
  if (out) out << value << "\n" << std::flush;
  if (!out) return std::string("write /proc/self/oom_score_adj: ") + std::strerror(errno);
  return {};
}

}  // namespace svcproxy::proxy
