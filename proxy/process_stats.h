// The process's own resource use, read from /proc as Prometheus's Go client
// (client_golang's process collector, which kube-proxy exports) reads it, so
// that the process_* metrics mean the same for both.
#pragma once

#include <functional>
#include <string_view>

namespace svcproxy::proxy {

struct ProcessStats {
  double cpu_seconds = 0;               // user + system time (/proc/self/stat)
  double open_fds = 0;                  // entries of /proc/self/fd
  double max_fds = 0;                   // RLIMIT_NOFILE, soft
  double virtual_memory_bytes = 0;      // vsize
  double virtual_memory_max_bytes = 0;  // RLIMIT_AS, soft (unlimited: 2^64 − 1, as Go writes it)
  double resident_memory_bytes = 0;     // rss pages × page size
  double start_time_seconds = 0;        // since the epoch: boot time + starttime ticks
  // IP bytes of this network namespace (/proc/self/net/netstat IpExt
  // InOctets/OutOctets): client_golang's "network" bytes are these.
  double network_receive_bytes = 0;
  double network_transmit_bytes = 0;
};

// This process's stats; a file that cannot be read leaves its fields at 0.
ProcessStats read_process_stats();

// The parsers, separate for unit tests: each takes the file's whole text.
// /proc/<pid>/stat → cpu_seconds, virtual_memory_bytes, resident_memory_bytes
// and start_time_seconds (needs /proc/stat's btime, the clock tick and the
// page size); false if it does not parse.
bool parse_proc_stat(std::string_view stat, double boot_time, long ticks_per_second, long page_size, ProcessStats& out);
// /proc/stat's "btime" (seconds since the epoch); 0 if absent.
double parse_boot_time(std::string_view proc_stat);
// /proc/<pid>/net/netstat's IpExt InOctets/OutOctets; false if absent.
bool parse_netstat_octets(std::string_view netstat, ProcessStats& out);

// Where Metrics reads them (a seam: unit tests give fixed values).
using ProcessStatsSource = std::function<ProcessStats()>;

}  // namespace svcproxy::proxy
