#include "proxy/process_stats.h"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace svcproxy::proxy {

namespace {

std::string slurp(const char* path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string_view> words(std::string_view line) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < line.size()) {
    const size_t start = line.find_first_not_of(' ', pos);
    if (start == std::string_view::npos) break;
    const size_t end = std::min(line.find(' ', start), line.size());
    out.push_back(line.substr(start, end - start));
    pos = end;
  }
  return out;
}

bool to_double(std::string_view text, double& out) {
  unsigned long long v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size()) return false;
  out = static_cast<double>(v);
  return true;
}

// Go's client writes RLIM_INFINITY as the uint64 it is.
double limit(int resource) {
  rlimit r{};
  if (getrlimit(resource, &r) != 0) return 0;
  return r.rlim_cur == RLIM_INFINITY ? static_cast<double>(std::numeric_limits<uint64_t>::max())
                                     : static_cast<double>(r.rlim_cur);
}

double count_open_fds() {
  std::error_code ec;
  double n = 0;
  for (std::filesystem::directory_iterator it("/proc/self/fd", ec), end; !ec && it != end; it.increment(ec)) ++n;
  // The iterator's own descriptor is one of them.
  return n > 0 ? n - 1 : 0;
}

}  // namespace

bool parse_proc_stat(std::string_view stat, double boot_time, long ticks_per_second, long page_size,
                     ProcessStats& out) {
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so
  // fields are counted from the last ')'; after it comes field 3 (state).
  const auto close = stat.rfind(')');
  if (close == std::string_view::npos || ticks_per_second <= 0) return false;
  auto rest = stat.substr(close + 1);
  if (const auto nl = rest.find('\n'); nl != std::string_view::npos) rest = rest.substr(0, nl);
  const auto f = words(rest);
  auto field = [&](size_t n, double& v) { return n - 3 < f.size() && to_double(f[n - 3], v); };
  double utime = 0, stime = 0, start = 0, vsize = 0, rss = 0;
  if (!field(14, utime) || !field(15, stime) || !field(22, start) || !field(23, vsize) || !field(24, rss)) return false;
  const auto tps = static_cast<double>(ticks_per_second);
  out.cpu_seconds = (utime + stime) / tps;
  out.start_time_seconds = boot_time + start / tps;
  out.virtual_memory_bytes = vsize;
  out.resident_memory_bytes = rss * static_cast<double>(page_size);
  return true;
}

double parse_boot_time(std::string_view proc_stat) {
  std::istringstream in{std::string(proc_stat)};
  for (std::string line; std::getline(in, line);) {
    const auto w = words(line);
    double v = 0;
    if (w.size() == 2 && w[0] == "btime" && to_double(w[1], v)) return v;
  }
  return 0;
}

bool parse_netstat_octets(std::string_view netstat, ProcessStats& out) {
  // Pairs of lines: "IpExt: Name Name ..." then "IpExt: value value ...".
  std::istringstream in{std::string(netstat)};
  std::string names, values;
  while (std::getline(in, names) && std::getline(in, values)) {
    if (!names.starts_with("IpExt:")) continue;
    const auto n = words(names), v = words(values);
    bool rx = false, tx = false;
    for (size_t i = 1; i < n.size() && i < v.size(); ++i) {
      if (n[i] == "InOctets") rx = to_double(v[i], out.network_receive_bytes);
      if (n[i] == "OutOctets") tx = to_double(v[i], out.network_transmit_bytes);
    }
    return rx && tx;
  }
  return false;
}

ProcessStats read_process_stats() {
  ProcessStats s;
  parse_proc_stat(slurp("/proc/self/stat"), parse_boot_time(slurp("/proc/stat")), sysconf(_SC_CLK_TCK),
                  sysconf(_SC_PAGESIZE), s);
  parse_netstat_octets(slurp("/proc/self/net/netstat"), s);
  s.open_fds = count_open_fds();
  s.max_fds = limit(RLIMIT_NOFILE);
  s.virtual_memory_max_bytes = limit(RLIMIT_AS);
  return s;
}

}  // namespace svcproxy::proxy
