#include "proxy/conntrack_sysctls.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <utility>

#include "proxy/config.h"

namespace svcproxy::proxy {

using namespace std::chrono_literals;

std::chrono::seconds conntrack_timeout(std::chrono::nanoseconds value) {
  if (value < 0ns) throw std::invalid_argument("must not be negative, got " + format_go_duration(value));
  if (value > 0ns && value < 1s)
    throw std::invalid_argument("must be 0 (leave as is) or at least 1s, got " + format_go_duration(value));
  return std::chrono::duration_cast<std::chrono::seconds>(value);
}

namespace {

// The hashsize is a module parameter under /sys; everything else a sysctl.
std::string path_of(const std::string& name) { return (name == kConntrackHashsize ? "/sys/" : "/proc/sys/") + name; }

std::string errno_text(const char* what, const std::string& path) {
  return std::string(what) + " " + path + ": " + std::strerror(errno);
}

}  // namespace

base::Result<int64_t> ProcSysctls::read(const std::string& name) {
  const std::string path = path_of(name);
  std::ifstream in(path);
  if (!in) return base::Error{errno_text("read", path)};
  int64_t value = 0;
  if (!(in >> value)) return base::Error{"read " + path + ": not a number"};
  return value;
}

base::Result<void> ProcSysctls::write(const std::string& name, int64_t value) {
  const std::string path = path_of(name);
  // One write(2) of the whole number: the kernel parses what one call gives.
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return base::Error{errno_text("open", path)};
  const std::string text = std::to_string(value) + "\n";
  const ssize_t n = ::write(fd, text.data(), text.size());
  const int saved = errno;
  ::close(fd);
  errno = saved;
  if (n != static_cast<ssize_t>(text.size())) return base::Error{errno_text("write", path)};
  return {};
}

int64_t conntrack_max(const ConntrackSettings& settings, int cpus) {
  if (settings.max_per_core <= 0) return 0;
  const int64_t scaled = int64_t{settings.max_per_core} * cpus;
  return std::max<int64_t>(scaled, settings.min);
}

int online_cpus() {
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

namespace {

// kube-proxy's setIntSysCtl: read, and write only when it differs (a value
// that cannot be read is written anyway).
SysctlOutcome set_if_different(SysctlAccess& access, const std::string& name, int64_t wanted) {
  SysctlOutcome out;
  out.name = name;
  out.wanted = wanted;
  if (const auto current = access.read(name)) {
    out.was = *current;
    if (*current == wanted) return out;
  }
  if (const auto written = access.write(name, wanted); !written) {
    out.problem = written.error();
    return out;
  }
  out.written = true;
  return out;
}

}  // namespace

std::vector<SysctlOutcome> apply_conntrack_sysctls(const ConntrackSettings& settings, int cpus, SysctlAccess& access) {
  std::vector<SysctlOutcome> out;
  if (const int64_t max = conntrack_max(settings, cpus); max > 0) {
    out.push_back(set_if_different(access, kConntrackMax, max));
    // The hash table is sized for the new limit only once the limit is in
    // place (kube-proxy's SetMax): at least max/4 buckets.
    if (out.back().problem.empty()) {
      const auto hashsize = access.read(kConntrackHashsize);
      if (!hashsize) {
        SysctlOutcome unreadable;
        unreadable.name = kConntrackHashsize;
        unreadable.wanted = max / 4;
        unreadable.problem = hashsize.error();
        out.push_back(std::move(unreadable));
      } else if (*hashsize < max / 4) {
        out.push_back(set_if_different(access, kConntrackHashsize, max / 4));
      }
    }
  }
  auto timeout = [&](const char* name, std::chrono::seconds value) {
    if (value > 0s) out.push_back(set_if_different(access, name, value.count()));
  };
  timeout("net/netfilter/nf_conntrack_tcp_timeout_established", settings.tcp_established_timeout);
  timeout("net/netfilter/nf_conntrack_tcp_timeout_close_wait", settings.tcp_close_wait_timeout);
  if (settings.tcp_be_liberal) out.push_back(set_if_different(access, "net/netfilter/nf_conntrack_tcp_be_liberal", 1));
  timeout("net/netfilter/nf_conntrack_udp_timeout", settings.udp_timeout);
  timeout("net/netfilter/nf_conntrack_udp_timeout_stream", settings.udp_stream_timeout);
  return out;
}

void log_conntrack_sysctls(const std::vector<SysctlOutcome>& outcomes, Log& log) {
  for (const auto& o : outcomes) {
    if (o.written) {
      log.info("conntrack sysctl set", {{"sysctl", o.name}, {"value", o.wanted}, {"was", o.was}});
    } else if (!o.problem.empty()) {
      // The table's size is global: a network namespace other than the
      // initial one (a pod, a test namespace) cannot change it.
      const bool global = o.name == kConntrackMax || o.name == kConntrackHashsize;
      log.warning("conntrack sysctl left as it is",
                  {{"sysctl", o.name},
                   {"value", o.wanted},
                   {"current", o.was},
                   {"error", o.problem},
                   {"why", global ? "global: only the initial network namespace may change it"
                                  : "not writable here (read-only /proc/sys, or no CAP_NET_ADMIN)"}});
    }
  }
}

}  // namespace svcproxy::proxy
