// The conntrack sysctls kube-proxy sets at start (pkg/proxy/conntrack/
// sysctls.go, called from platformSetup in every Linux mode): the table's
// size and the TCP/UDP timeouts of NATed connections. Read from the
// --conntrack-* flags and the config file's `conntrack:` section.
//
// As kube-proxy: nf_conntrack_max = max(maxPerCore × CPUs, min), 0 per core
// leaves it alone; the module's hashsize is raised to max/4 when it is
// smaller; a timeout of 0 leaves that sysctl alone; a value is written only
// when it differs from what the kernel holds. Unlike kube-proxy, a sysctl
// that cannot be written never stops the start: nf_conntrack_max and the
// hashsize are global (read-only outside the initial network namespace,
// where a pod or a test namespace runs), /proc/sys is read-only in an
// unprivileged container and under systemd's ProtectKernelTunables. Each
// one is reported once, with the reason.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "proxy/log.h"

namespace svcproxy::proxy {

// kube-proxy's KubeProxyConntrackConfiguration, with its defaults.
struct ConntrackSettings {
  int32_t max_per_core = 32768;  // --conntrack-max-per-core; 0: nf_conntrack_max left alone
  int32_t min = 131072;          // --conntrack-min
  std::chrono::seconds tcp_established_timeout = std::chrono::hours(24);  // 0: left alone
  std::chrono::seconds tcp_close_wait_timeout = std::chrono::hours(1);    // 0: left alone
  bool tcp_be_liberal = false;                                            // true: set to 1
  std::chrono::seconds udp_timeout{0};                                    // 0: left alone
  std::chrono::seconds udp_stream_timeout{0};                             // 0: left alone

  bool operator==(const ConntrackSettings&) const = default;
};

// A timeout from a flag or the file, in whole seconds (the sysctls' unit).
// Throws std::invalid_argument for a negative value or one between 0 and 1s
// (kube-proxy would write 0 for it, which expires every entry at once).
std::chrono::seconds conntrack_timeout(std::chrono::nanoseconds value);

// The seam to the kernel: sysctls by their /proc/sys name
// ("net/netfilter/nf_conntrack_max") and the module's hashsize parameter.
// The real one is ProcSysctls; tests use an in-memory fake.
class SysctlAccess {
 public:
  virtual ~SysctlAccess() = default;
  virtual base::Result<int64_t> read(const std::string& name) = 0;
  virtual base::Result<void> write(const std::string& name, int64_t value) = 0;
};

// Names SysctlAccess is asked for. kHashsize is not a sysctl: the real
// access maps it to /sys/module/nf_conntrack/parameters/hashsize.
inline constexpr const char* kConntrackMax = "net/netfilter/nf_conntrack_max";
inline constexpr const char* kConntrackHashsize = "module/nf_conntrack/parameters/hashsize";

// /proc/sys/<name>, and /sys/<name> for the hashsize.
class ProcSysctls : public SysctlAccess {
 public:
  base::Result<int64_t> read(const std::string& name) override;
  base::Result<void> write(const std::string& name, int64_t value) override;
};

// nf_conntrack_max as kube-proxy computes it (getConntrackMax): 0 (leave
// it alone) when max_per_core is 0, else max(max_per_core × cpus, min).
int64_t conntrack_max(const ConntrackSettings& settings, int cpus);

// The machine's online CPUs, as kube-proxy counts them (from /sys, not the
// process's affinity mask: kubernetes issue 99225).
int online_cpus();

struct SysctlOutcome {
  std::string name;
  int64_t wanted = 0;
  int64_t was = -1;     // -1: could not be read
  std::string problem;  // empty: written (or already so)
  bool written = false;
};

// Applies `settings` through `access`: every sysctl kube-proxy would set,
// in its order, each written only when it differs. Returns one outcome per
// sysctl it looked at; it never throws for a sysctl it cannot read or write.
std::vector<SysctlOutcome> apply_conntrack_sysctls(const ConntrackSettings& settings, int cpus, SysctlAccess& access);

// One line per sysctl written (info) or left as it is with the reason
// (warning); nothing for one that already had the value.
void log_conntrack_sysctls(const std::vector<SysctlOutcome>& outcomes, Log& log);

}  // namespace svcproxy::proxy
