// This benchmark process's memory, for the benches that report it.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>

namespace svcproxy::bench {

// The resident set now, MiB (-1 if /proc cannot be read).
inline long rss_mib() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return -1;
  long size = 0, resident = 0;
  const int n = std::fscanf(f, "%ld %ld", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * sysconf(_SC_PAGESIZE) / (1 << 20) : -1;
}

// The peak resident set so far, MiB.
inline long maxrss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1024;
}

}  // namespace svcproxy::bench
