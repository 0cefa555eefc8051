// Kernel programming benchmarks (issue 3). Every case that touches nf_tables
// runs in a forked child that unshares CLONE_NEWNET first (as
// tests/dataplane/netlink_test_kernel.h): a fresh, empty network namespace
// that dies with the child. The child removes svcproxy's tables before it
// exits (outside the timings), so the kernel's teardown of a big ruleset does
// not overlap the next case. Nothing ever runs in the caller's namespace.
//
//   sync_bench phases MANIFESTS... [--reps R]
//       run --once split in phases (decode, per-port view, compile, netlink
//       apply_full) for each manifests file; wall, user and sys per phase.
//   sync_bench full SxE... [--reps R] [--copy]
//       full sync from a synthetic cluster: RulesetCompiler reset +
//       NetlinkBackend::apply_full(compiler) (encoded from the compiler's
//       state; --copy: the older apply_full(compiler.ruleset()), which
//       copies the ruleset first); time and peak RSS of the child (wait4
//       ru_maxrss).
//   sync_bench partial SxE... [--reps R] [--rounds K] [--max-seconds T] [--kind replace|remove|add]
//       with S x E loaded by a full sync, one endpoint change at a time:
//       RulesetCompiler::update of that service + apply_partial, R times per
//       round, at most T seconds (default 10) per round and size (median,
//       p99); the sizes alternate round by round.
//   sync_bench connect [NETNS/]IP:PORT... N
//       N rounds of one TCP connect to each target in turn, each from inside
//       the named namespace (/run/netns/NETNS; default: the current one) and
//       closed with a reset; connect() time median / p99 per target. Meant
//       for client namespaces of bench/latency.sh; sends nothing elsewhere.
#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/process_memory.h"
#include "bench/synthetic_cluster.h"
#include "dataplane/compile.h"
#include "dataplane/kernel.h"
#include "model/service_ports.h"
#include "tests/dataplane/netlink_test_kernel.h"
#include "watch/manifests.h"

namespace {

using svcproxy::bench::rss_mib;

using namespace svcproxy;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double tv_seconds(const timeval& tv) { return static_cast<double>(tv.tv_sec) + static_cast<double>(tv.tv_usec) / 1e6; }

// Wall, user and sys time of one phase of this process, and the RSS after it.
struct Phase {
  Clock::time_point wall0;
  rusage ru0{};
  Phase() { start(); }
  void start() {
    getrusage(RUSAGE_SELF, &ru0);
    wall0 = Clock::now();
  }
  std::string stop() {
    const double wall = seconds_since(wall0);
    rusage ru1{};
    getrusage(RUSAGE_SELF, &ru1);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%.3f %.3f %.3f %4ld", wall, tv_seconds(ru1.ru_utime) - tv_seconds(ru0.ru_utime),
                  tv_seconds(ru1.ru_stime) - tv_seconds(ru0.ru_stime), rss_mib());
    start();
    return buf;
  }
};

// A fresh network namespace per measurement, as the netlink tests use.
using dataplane::testing::run_in_fresh_netns;

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p / 100.0 * static_cast<double>(v.size())));
  return v[i];
}
double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

struct Size {
  int services = 0, endpoints = 0;
  std::string str() const { return std::to_string(services) + "x" + std::to_string(endpoints); }
};

Size parse_size(const std::string& text) {
  const auto x = text.find('x');
  if (x == std::string::npos) throw std::invalid_argument("size must be SERVICESxENDPOINTS: " + text);
  return {std::atoi(text.substr(0, x).c_str()), std::atoi(text.substr(x + 1).c_str())};
}

size_t element_count(const dataplane::ir::Ruleset& ruleset) {
  size_t n = 0;
  for (const auto& t : ruleset.tables)
    for (const auto& s : t.sets) n += s.elements.size();
  return n;
}

// Node flags bench/run.sh passes to `svcproxy run` for manifests from
// bench/gen_manifests.py: the same node as bench::synthetic_node().
model::NodeConfig bench_node() { return bench::synthetic_node(); }

// ---------------------------------------------------------------- phases

int cmd_phases(const std::vector<std::string>& files, int reps) {
  std::printf("# run --once in phases, each rep in a fresh netns: wall user sys (s) and RSS after it (MiB) per phase\n");
  std::printf("%-26s %-25s %-25s %-25s %-25s %9s\n", "manifests", "decode", "view", "compile", "apply_full",
              "maxrss_MB");
  for (const auto& file : files) {
    for (int rep = 0; rep < reps; ++rep) {
      auto r = run_in_fresh_netns([&] {
        Phase phase;
        auto decoded = watch::load_manifests(file);
        if (!decoded.diagnostics.empty()) throw std::runtime_error(file + ": " + decoded.diagnostics[0].str());
        const std::string t_decode = phase.stop();
        const auto node = bench_node();
        auto view = model::build_proxy_state(decoded.state, node);
        const std::string t_view = phase.stop();
        auto compiled = dataplane::compile(view.ports, node);
        const std::string t_compile = phase.stop();
        dataplane::NetlinkBackend backend;
        backend.apply_full(compiled.ruleset);
        const std::string t_apply = phase.stop();
        backend.cleanup();
        return t_decode + "|" + t_view + "|" + t_compile + "|" + t_apply;
      });
      if (!r.ok) throw std::runtime_error("phases " + file + ": " + r.output);
      std::vector<std::string> parts;
      size_t start = 0;
      for (size_t bar; (bar = r.output.find('|', start)) != std::string::npos; start = bar + 1)
        parts.push_back(r.output.substr(start, bar - start));
      parts.push_back(r.output.substr(start));
      std::string name = file.substr(file.rfind('/') + 1);
      std::printf("%-26s %-25s %-25s %-25s %-25s %9ld\n", name.c_str(), parts[0].c_str(), parts[1].c_str(),
                  parts[2].c_str(), parts[3].c_str(), r.maxrss_kib / 1024);
      std::fflush(stdout);
    }
  }
  return 0;
}

// ---------------------------------------------------------------- full

int cmd_full(const std::vector<Size>& sizes, int reps, bool copy) {
  std::printf("# full sync from a synthetic cluster in a fresh netns (RulesetCompiler reset + %s); seconds\n",
              copy ? "ruleset() + apply_full(ruleset) [--copy]" : "apply_full(compiler), no ruleset copy");
  std::printf("# total = reset + ruleset + apply (the model is built before); user/sys: the whole child; "
              "rss_MiB after model/reset/ruleset/apply\n");
  std::printf("%-10s %4s %8s %8s %8s %8s %8s %8s %8s %9s %9s  %s\n", "size", "rep", "model", "reset", "ruleset",
              "apply", "total", "user", "sys", "elements", "maxrss_MB", "rss_MiB_steps");
  for (const auto& size : sizes) {
    std::vector<double> totals, rss;
    for (int rep = 0; rep < reps; ++rep) {
      // Everything, the synthetic cluster too, is built in the child so its
      // peak RSS is the whole sync's (the parent stays small).
      auto r = run_in_fresh_netns([&] {
        const auto node = bench_node();
        const auto cluster = bench::synthetic_cluster(size.services, size.endpoints);
        auto t0 = Clock::now();
        auto view = model::build_proxy_state(cluster, node);
        const double t_model = seconds_since(t0);
        const long rss_model = rss_mib();
        t0 = Clock::now();
        const auto all = Clock::now();
        dataplane::RulesetCompiler compiler(node);
        compiler.reset(view.ports);
        const double t_reset = seconds_since(t0);
        const long rss_reset = rss_mib();
        t0 = Clock::now();
        dataplane::ir::Ruleset ruleset;
        if (copy) ruleset = compiler.ruleset();
        const double t_ruleset = seconds_since(t0);
        const long rss_ruleset = rss_mib();
        t0 = Clock::now();
        dataplane::NetlinkBackend backend;
        if (copy) {
          backend.apply_full(ruleset);
        } else {
          backend.apply_full(compiler);
        }
        const double t_apply = seconds_since(t0);
        const long rss_apply = rss_mib();
        const double total = seconds_since(all);
        size_t elements = element_count(ruleset);  // outside the timings; no copy for the count
        if (!copy)
          for (const auto& t : compiler.ruleset_ref().tables)
            for (const auto& set : t.sets) elements += set.size();
        backend.cleanup();
        char buf[200];
        std::snprintf(buf, sizeof buf, "%.3f %.3f %.3f %.3f %.3f %zu %ld/%ld/%ld/%ld", t_model, t_reset, t_ruleset,
                      t_apply, total, elements, rss_model, rss_reset, rss_ruleset, rss_apply);
        return std::string(buf);
      });
      if (!r.ok) throw std::runtime_error("full " + size.str() + ": " + r.output);
      double m, re, ru, ap, tot;
      size_t el;
      char rss_steps[64] = "";
      std::sscanf(r.output.c_str(), "%lf %lf %lf %lf %lf %zu %63s", &m, &re, &ru, &ap, &tot, &el, rss_steps);
      totals.push_back(tot);
      rss.push_back(static_cast<double>(r.maxrss_kib) / 1024);
      std::printf("%-10s %4d %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f %9zu %9ld  %s\n", size.str().c_str(), rep, m,
                  re, ru, ap, tot, r.user_seconds, r.sys_seconds, el, r.maxrss_kib / 1024, rss_steps);
      std::fflush(stdout);
    }
    std::printf("SUMMARY full %s median_total_s=%.3f median_maxrss_MiB=%.0f\n", size.str().c_str(), median(totals),
                median(rss));
  }
  return 0;
}

// ---------------------------------------------------------------- partial

// The service port of svc-<index> in `ports`.
const model::ServicePortState& port_of(const std::vector<model::ServicePortState>& ports, int index) {
  const std::string name = "svc-" + std::to_string(index);
  for (const auto& p : ports)
    if (p.name.service.name == name) return p;
  throw std::runtime_error("no service " + name);
}

struct PartialStats {
  std::vector<double> update_us, apply_us, total_us;
  size_t operations = 0;
};

// In the child: S x E by full sync, then `reps` changes of one endpoint of one
// service, alternating between two states. kind "replace": one endpoint's
// address changes (a pod replaced; same endpoint count). kind "remove": the
// service loses / regains its last endpoint (moves between dnat-N maps). kind
// "add": a new service with E endpoints is created / deleted (kube-proxy's
// published "one service among 10k" case).
std::string partial_case(const Size& size, int reps, double max_seconds, const std::string& kind) {
  const auto node = bench_node();
  const auto cluster = bench::synthetic_cluster(size.services, size.endpoints);
  const auto view = model::build_proxy_state(cluster, node);
  dataplane::RulesetCompiler compiler(node);
  compiler.reset(view.ports);
  dataplane::NetlinkBackend backend;
  backend.apply_full(compiler);

  const model::ServicePortState original = port_of(view.ports, size.services / 2);
  model::ServicePortState changed = original;
  if (kind == "replace") {
    // Endpoint 1 is on node-b (not local): only the cluster-wide list changes.
    auto& eps = changed.cluster_endpoints;
    if (eps.size() < 2) throw std::runtime_error("replace needs >= 2 endpoints");
    eps[1].ip = model::IPAddress::v4(10, 250, 0, 1);
    std::sort(eps.begin(), eps.end());
  } else if (kind == "remove") {
    auto& eps = changed.cluster_endpoints;
    const auto gone = eps.back();
    eps.pop_back();
    std::erase(changed.local_endpoints, gone);
  } else {  // "add": a new service (E endpoints) appears / goes
    changed.name.service.name = "svc-new";
    changed.cluster_ip = model::IPAddress::v4(10, 96, 250, 1);
    changed.node_port = 0;
    for (auto& ep : changed.cluster_endpoints) ep.ip.bytes[1] = 250;  // 10.250.x.y: new pods
    changed.local_endpoints.clear();
    std::sort(changed.cluster_endpoints.begin(), changed.cluster_endpoints.end());
  }
  const bool add = kind == "add";
  PartialStats stats;
  const int warmup = std::min(20, reps / 10);
  const auto started = Clock::now();
  for (int i = 0; i < reps + warmup; ++i) {
    // A time budget keeps the slow cases bounded (at least 50 samples).
    if (i >= warmup + 50 && i % 2 == 0 && seconds_since(started) > max_seconds) break;
    const model::ServicePortState& next = i % 2 == 0 ? changed : original;
    const auto t0 = Clock::now();
    auto diff = add ? (i % 2 == 0 ? compiler.update({changed.name.service}, {changed})
                                  : compiler.update({changed.name.service}, {}))
                    : compiler.update({next.name.service}, {next});
    const auto t1 = Clock::now();
    if (diff.needs_full_sync) throw std::runtime_error("the change needs a full sync");
    backend.apply_partial(diff, compiler);
    const auto t2 = Clock::now();
    if (i >= warmup) {
      stats.update_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      stats.apply_us.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
      stats.total_us.push_back(std::chrono::duration<double, std::micro>(t2 - t0).count());
      stats.operations = diff.operations();
    }
  }
  // Sanity, outside the timings: the kernel holds what the compiler holds.
  if (!(backend.read_back() == compiler.ruleset())) throw std::runtime_error("kernel differs from the compiler");
  backend.cleanup();
  char buf[256];
  std::snprintf(buf, sizeof buf, "%.1f %.1f %.1f %.1f %.1f %.1f %zu %zu", median(stats.update_us),
                percentile(stats.update_us, 99), median(stats.apply_us), percentile(stats.apply_us, 99),
                median(stats.total_us), percentile(stats.total_us, 99), stats.operations, stats.total_us.size());
  return buf;
}

int cmd_partial(const std::vector<Size>& sizes, int reps, double max_seconds, int rounds,
                const std::vector<std::string>& kinds) {
  std::printf("# one change: RulesetCompiler::update + NetlinkBackend::apply_partial, up to %d reps (or %.0f s) per "
              "round, fresh netns per round; microseconds\n",
              reps, max_seconds);
  std::printf("%-8s %-10s %5s %10s %10s %10s %10s %10s %10s %4s %5s\n", "change", "size", "round", "update_med",
              "update_p99", "apply_med", "apply_p99", "total_med", "total_p99", "ops", "reps");
  for (const std::string& kind : kinds) {
    std::vector<std::vector<double>> med(sizes.size()), p99(sizes.size());
    for (int round = 0; round < rounds; ++round) {
      for (size_t s = 0; s < sizes.size(); ++s) {
        auto r = run_in_fresh_netns([&] { return partial_case(sizes[s], reps, max_seconds, kind); });
        if (!r.ok) throw std::runtime_error("partial " + sizes[s].str() + ": " + r.output);
        double um, u99, am, a99, tm, t99;
        size_t ops, done;
        std::sscanf(r.output.c_str(), "%lf %lf %lf %lf %lf %lf %zu %zu", &um, &u99, &am, &a99, &tm, &t99, &ops, &done);
        med[s].push_back(tm);
        p99[s].push_back(t99);
        std::printf("%-8s %-10s %5d %10.1f %10.1f %10.1f %10.1f %10.1f %10.1f %4zu %5zu\n", kind.c_str(),
                    sizes[s].str().c_str(), round, um, u99, am, a99, tm, t99, ops, done);
        std::fflush(stdout);
      }
    }
    for (size_t s = 0; s < sizes.size(); ++s)
      std::printf("SUMMARY partial %s %s median_us=%.1f p99_us=%.1f (median over rounds)\n", kind.c_str(),
                  sizes[s].str().c_str(), median(med[s]), median(p99[s]));
    for (size_t s = 1; s < sizes.size(); ++s)
      std::printf("SUMMARY partial %s ratio %s/%s median=%.2f p99=%.2f\n", kind.c_str(), sizes[s].str().c_str(),
                  sizes.front().str().c_str(), median(med[s]) / median(med.front()),
                  median(p99[s]) / median(p99.front()));
  }
  return 0;
}

// ---------------------------------------------------------------- connect

struct ConnectTarget {
  std::string spec;  // [NETNS/]IP:PORT
  int netns_fd = -1;  // -1: the current namespace
  sockaddr_in addr{};
  std::vector<double> us;
  int failures = 0;
};

ConnectTarget parse_target(const std::string& spec) {
  ConnectTarget t;
  t.spec = spec;
  std::string rest = spec;
  if (const auto slash = rest.find('/'); slash != std::string::npos) {
    const std::string path = "/run/netns/" + rest.substr(0, slash);
    t.netns_fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (t.netns_fd < 0) throw std::runtime_error("cannot open " + path);
    rest = rest.substr(slash + 1);
  }
  const auto colon = rest.rfind(':');
  if (colon == std::string::npos) throw std::invalid_argument("target must be [NETNS/]IP:PORT: " + spec);
  t.addr.sin_family = AF_INET;
  t.addr.sin_port = htons(static_cast<uint16_t>(std::atoi(rest.substr(colon + 1).c_str())));
  if (inet_pton(AF_INET, rest.substr(0, colon).c_str(), &t.addr.sin_addr) != 1)
    throw std::invalid_argument("bad IPv4 address in " + spec);
  return t;
}

// N rounds over the targets: each round connects once to every target in
// turn (entering its namespace first), so all targets see the same noise.
int cmd_connect(const std::vector<std::string>& specs, int n) {
  std::vector<ConnectTarget> targets;
  for (const auto& spec : specs) targets.push_back(parse_target(spec));
  // A target without a namespace connects from the one this process started in.
  const int own = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
  if (own < 0) throw std::runtime_error("cannot open /proc/self/ns/net");
  for (auto& t : targets)
    if (t.netns_fd < 0) t.netns_fd = own;
  for (int i = 0; i < n; ++i) {
    for (auto& t : targets) {
      if (setns(t.netns_fd, CLONE_NEWNET) != 0) throw std::runtime_error("setns failed");
      const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) throw std::runtime_error("socket failed");
      timeval timeout{2, 0};
      setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
      const auto t0 = Clock::now();
      const int rc = connect(fd, reinterpret_cast<const sockaddr*>(&t.addr), sizeof t.addr);
      const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      if (rc == 0) {
        t.us.push_back(us);
      } else {
        ++t.failures;
      }
      linger lg{1, 0};  // close with a reset: no TIME_WAIT, no port exhaustion
      setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
      close(fd);
    }
  }
  int failures = 0;
  for (const auto& t : targets) {
    std::printf("%s connects=%zu failures=%d median_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f\n", t.spec.c_str(),
                t.us.size(), t.failures, median(t.us), percentile(t.us, 90), percentile(t.us, 99),
                t.us.empty() ? 0.0 : *std::max_element(t.us.begin(), t.us.end()));
    failures += t.failures;
  }
  return failures == 0 ? 0 : 1;
}

int usage() {
  std::fprintf(stderr,
               "usage: sync_bench phases MANIFESTS... [--reps R]\n"
               "       sync_bench full SxE... [--reps R] [--copy]\n"
               "       sync_bench partial SxE... [--reps R] [--rounds K] [--max-seconds T] [--kind replace|remove|add]\n"
               "       sync_bench connect [NETNS/]IP:PORT... N\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // As svcproxy's main (proxy/main.cc): keep freed memory across syncs.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  if (argc < 2) return usage();
  const std::string mode = argv[1];
  std::vector<std::string> args;
  int reps = -1, rounds = 3;
  double max_seconds = 10;
  std::vector<std::string> kinds = {"replace", "remove", "add"};
  bool copy = false;
  for (int i = 2; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--reps" && i + 1 < argc) {
      reps = std::atoi(argv[++i]);
    } else if (a == "--kind" && i + 1 < argc) {
      kinds = {argv[++i]};
      if (kinds[0] != "replace" && kinds[0] != "remove" && kinds[0] != "add") return usage();
    } else if (a == "--max-seconds" && i + 1 < argc) {
      max_seconds = std::atof(argv[++i]);
    } else if (a == "--copy") {
      copy = true;
    } else if (a == "--rounds" && i + 1 < argc) {
      rounds = std::atoi(argv[++i]);
    } else {
      args.push_back(a);
    }
  }
  try {
    if (mode == "connect") {
      if (args.size() < 2) return usage();
      const int n = std::atoi(args.back().c_str());
      args.pop_back();
      return cmd_connect(args, n);
    }
    if (args.empty()) return usage();
    if (mode == "phases") return cmd_phases(args, reps > 0 ? reps : 3);
    std::vector<Size> sizes;
    for (const auto& a : args) sizes.push_back(parse_size(a));
    if (mode == "full") return cmd_full(sizes, reps > 0 ? reps : 3, copy);
    if (mode == "partial") return cmd_partial(sizes, reps > 0 ? reps : 1000, max_seconds, rounds, kinds);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sync_bench: %s\n", e.what());
    return 1;
  }
  return usage();
}
