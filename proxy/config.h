// `--config FILE`: a kube-proxy KubeProxyConfiguration
// (kubeproxy.config.k8s.io/v1alpha1), so an operator's existing kube-proxy
// ConfigMap works unchanged. Every field that applies to svcproxy is read
// and validated (errors name the file and field); every other field that
// asks for something is reported once as a warning; command-line flags
// override the file.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/conntrack_sysctls.h"
#include "proxy/modes.h"
#include "proxy/node_flags.h"

namespace svcproxy::proxy {

// A bad config file or value: "config.yaml: nftables.masqueradeBit: must be 0..31, got 40".
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Go's time.ParseDuration ("300ms", "30s", "1m0s", "1h2m3.5s", "0"); throws
// std::invalid_argument saying what is wrong.
std::chrono::nanoseconds parse_go_duration(std::string_view text);
// Go's Duration.String(): "30s", "1m0s", "1.5s", "500ms", "0s".
std::string format_go_duration(std::chrono::nanoseconds d);

// What a config file sets; nullopt: the file does not set it.
struct ProxyConfigFile {
  std::string path;                                // as named in messages
  std::optional<std::string> bind_address;         // bindAddress: the node's primary IP (when not 0.0.0.0/::)
  std::optional<std::string> healthz_bind_address; // healthzBindAddress ("" disables)
  std::optional<std::string> metrics_bind_address; // metricsBindAddress ("" disables)
  std::optional<std::vector<std::string>> cluster_cidrs;       // clusterCIDR (comma-separated in the file)
  std::optional<std::vector<std::string>> nodeport_addresses;  // nodePortAddresses ('all' expanded to CIDRs)
  std::optional<ProxyMode> mode;                               // mode: nftables, userspace or auto
  std::optional<std::string> kubeconfig;           // clientConnection.kubeconfig
  std::optional<std::string> hostname_override;    // hostnameOverride
  std::optional<DetectLocalMode> detect_local_mode;  // detectLocalMode
  std::optional<std::string> bridge_interface;     // detectLocal.bridgeInterface
  std::optional<std::string> interface_name_prefix;// detectLocal.interfaceNamePrefix
  std::optional<std::chrono::nanoseconds> sync_period;      // nftables.syncPeriod (> 0)
  std::optional<std::chrono::nanoseconds> min_sync_period;  // nftables.minSyncPeriod (>= 0)
  std::optional<int> masquerade_bit;               // nftables.masqueradeBit (0..31)
  std::optional<bool> masquerade_all;              // nftables.masqueradeAll (or top-level masqueradeAll)
  std::optional<bool> counters;                    // nftables.counters (svcproxy's; false: --no-counters)
  std::optional<int> verbosity;                    // logging.verbosity
  std::optional<LogFormat> log_format;             // logging.format: text or json
  // conntrack.*: kube-proxy's conntrack sysctls (proxy/conntrack_sysctls.h).
  std::optional<int32_t> conntrack_max_per_core;                     // conntrack.maxPerCore (>= 0)
  std::optional<int32_t> conntrack_min;                              // conntrack.min (>= 0)
  std::optional<std::chrono::seconds> conntrack_tcp_established;     // conntrack.tcpEstablishedTimeout
  std::optional<std::chrono::seconds> conntrack_tcp_close_wait;      // conntrack.tcpCloseWaitTimeout
  std::optional<bool> conntrack_tcp_be_liberal;                      // conntrack.tcpBeLiberal
  std::optional<std::chrono::seconds> conntrack_udp_timeout;         // conntrack.udpTimeout
  std::optional<std::chrono::seconds> conntrack_udp_stream_timeout;  // conntrack.udpStreamTimeout
  std::optional<int> oom_score_adj;                                  // oomScoreAdj (-1000..1000)

  // One per field that asks for something svcproxy does not do (set to
  // something other than null, empty, false, 0, "0s" or kube-proxy's own
  // default, so that a dump of the defaults is quiet): "config.yaml:
  // iptables.syncPeriod: ignored (applies to kube-proxy's iptables mode)".
  // Unknown fields too (kube-proxy's lenient v1alpha1 decoding also only
  // warns), and `mode: iptables` / `ipvs` (svcproxy runs nftables instead).
  std::vector<std::string> warnings;
};

// `name` is used in messages. Throws ConfigError.
ProxyConfigFile parse_proxy_config(std::string_view yaml, const std::string& name);
ProxyConfigFile load_proxy_config(const std::string& path);

// The daemon settings a config file can provide, with the defaults used when
// neither the command line nor the file sets them. The comment names each
// one's flag: the flag given on the command line wins over the file.
struct DaemonSettings {
  NodeFlags
      node;  // --hostname-override --node-ip --cluster-cidr --nodeport-addresses --masquerade-all --masquerade-bit
             // --detect-local-mode --pod-bridge-interface --pod-interface-name-prefix
  std::string kubeconfig;                                           // --kubeconfig
  ProxyMode proxy_mode = ProxyMode::Nftables;                       // --proxy-mode
  std::string healthz_bind_address = "0.0.0.0:10256";               // --healthz-bind-address
  std::string metrics_bind_address = "127.0.0.1:10249";             // --metrics-bind-address
  std::chrono::nanoseconds sync_period = std::chrono::seconds(30);  // --sync-period
  std::chrono::nanoseconds min_sync_period{0};                      // --min-sync-period
  int verbosity = 0;                                                // -v
  LogFormat log_format = LogFormat::Text;                           // --log-format
  ConntrackSettings conntrack;       // --conntrack-max-per-core --conntrack-min --conntrack-tcp-timeout-established
                                     // --conntrack-tcp-timeout-close-wait --conntrack-tcp-be-liberal
                                     // --conntrack-udp-timeout --conntrack-udp-timeout-stream
  std::string bind_address;          // --bind-address: the node's primary IP (0.0.0.0, :: or "": none)
  std::optional<int> oom_score_adj;  // --oom-score-adj; nullopt: left as it is
};

// The settings as a KubeProxyConfiguration file (every field svcproxy
// reads), for --write-config-to; parse_proxy_config reads it back to the
// same settings, without warnings.
std::string render_proxy_config(const DaemonSettings& settings);

// Whether a flag (by its name as above, or "-v") was given on the command
// line. Flags a command does not register count as not given. With CLI11:
//   [&](std::string_view f) {
//     const auto* opt = cmd->get_option_no_throw(std::string(f));
//     return opt != nullptr && opt->count() > 0;
//   }
using FlagGiven = std::function<bool(std::string_view flag)>;

// Sets in `settings` every value the file has and the command line did not
// give, then checks the combination (minSyncPeriod <= syncPeriod). A
// bind address (--bind-address, else the file's bindAddress) that is a
// specific IP becomes the node IP unless --node-ip is given; an IPv6 one
// makes the default bind addresses [::]:10256 and [::1]:10249, as kube-proxy.
// Throws ConfigError naming the file field or flag.
void merge_config(const ProxyConfigFile& file, const FlagGiven& given, DaemonSettings& settings);

}  // namespace svcproxy::proxy
