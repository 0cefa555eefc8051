// How long a periodic sync blocks the event thread (issue 17: "No stall at
// the periodic full sync", p99 event latency < 50 ms at 100k services).
// Runs in a network namespace of its own (unshare(CLONE_NEWNET) first thing;
// needs root). With S x E loaded by a full sync:
//
//   before  today's periodic sync on the event thread: per-port view of the
//           cluster + RulesetCompiler::replace_all + NetlinkBackend::apply_full.
//           An event arriving during it waits for its end: with events at a
//           steady rate, their latencies spread evenly over [0, block].
//   after   D elements are deleted behind the compiler's back (drift); a
//           DriftCheck (readback + compile + compare on its thread) runs
//           while the event thread keeps serving one endpoint change every
//           --event-ms (RulesetCompiler::update + apply_partial, recorded in
//           ChangedSinceSnapshot); its result is filtered and applied as a
//           partial transaction. Measured: each event's latency from its
//           scheduled arrival to its commit's return, the event thread's own
//           share of the check (start, filter + repair), the check's phases.
//
//   drift_bench [SxE] [--event-ms N] [--drift D]      (default 100000x10, 10 ms, 100)
#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench/process_memory.h"
#include "bench/synthetic_cluster.h"
#include "dataplane/compile.h"
#include "dataplane/drift.h"
#include "dataplane/drift_check.h"
#include "dataplane/kernel.h"
#include "model/service_ports.h"

namespace {

using svcproxy::bench::maxrss_mib;
using svcproxy::bench::rss_mib;

using namespace svcproxy;
using Clock = std::chrono::steady_clock;
using model::ServicePortState;

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }
double ms(std::chrono::microseconds d) { return static_cast<double>(d.count()) / 1000; }

struct Percentiles {
  double p50 = 0, p99 = 0, max = 0;
};
Percentiles percentiles(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))]; };
  return {at(0.5), at(0.99), v.back()};
}

// One endpoint of service `i` moves to a fresh address (the last, so the
// lists stay sorted): one EndpointSlice change.
ServicePortState moved_endpoint(ServicePortState sp, uint32_t& next_pod) {
  if (sp.cluster_endpoints.empty()) return sp;
  auto& last = sp.cluster_endpoints.back();
  const bool local = !sp.local_endpoints.empty() && sp.local_endpoints.back() == last;
  last.ip = bench::v4(next_pod++);
  if (local) sp.local_endpoints.back() = last;
  return sp;
}

struct Args {
  int services = 100000, endpoints = 10, event_ms = 10, drift = 100;
};

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--event-ms" && i + 1 < argc) {
      a.event_ms = std::atoi(argv[++i]);
    } else if (arg == "--drift" && i + 1 < argc) {
      a.drift = std::atoi(argv[++i]);
    } else if (std::sscanf(arg.c_str(), "%dx%d", &a.services, &a.endpoints) != 2) {
      throw std::invalid_argument("usage: drift_bench [SxE] [--event-ms N] [--drift D]");
    }
  }
  if (a.services <= a.drift || a.event_ms <= 0) throw std::invalid_argument("need S > D and --event-ms > 0");
  return a;
}

// Deletes the cluster-ip elements of the first `n` services through the
// backend, without the compiler knowing: what `nft delete element` does.
void drift(dataplane::NetlinkBackend& backend, const dataplane::RulesetCompiler& compiler, int n) {
  const dataplane::ir::Set* def = compiler.set_definition(model::IPFamily::V4, "cluster-ip");
  if (!def) throw std::runtime_error("no cluster-ip set");
  dataplane::RulesetDiff diff;
  auto& t = diff.tables.emplace_back();
  for (int s = 0; s < n; ++s) {
    dataplane::ir::Element e;
    e.key = {bench::v4((10u << 24) | (96u << 16) | static_cast<uint32_t>(s + 10)), model::Protocol::TCP, uint16_t{80}};
    t.deleted_elements.emplace_back("cluster-ip", std::move(e));
  }
  backend.apply_partial(diff, compiler);
}

}  // namespace

int main(int argc, char** argv) try {
  const Args args = parse(argc, argv);
  if (unshare(CLONE_NEWNET) != 0) throw std::runtime_error(std::string("unshare(CLONE_NEWNET): ") + strerror(errno));
  utsname uts{};
  uname(&uts);
  double load[3] = {};
  getloadavg(load, 3);
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  std::printf("# %s\n# %ld CPUs, kernel %s, load %.1f %.1f %.1f\n", command.c_str(), sysconf(_SC_NPROCESSORS_ONLN),
              uts.release, load[0], load[1], load[2]);

  const auto node = bench::synthetic_node();
  const auto cluster = bench::synthetic_cluster(args.services, args.endpoints);
  std::vector<ServicePortState> ports = model::build_proxy_state(cluster, node).ports;
  dataplane::RulesetCompiler compiler(node);
  dataplane::NetlinkBackend backend;
  auto t = Clock::now();
  compiler.reset(ports);
  backend.apply_full(compiler);
  std::printf("setup: %dx%d, full sync %.0f ms, rss %ld MiB\n", args.services, args.endpoints, ms_since(t), rss_mib());

  // ---- before: today's periodic full sync, all on the event thread.
  t = Clock::now();
  {
    auto view = model::build_proxy_state(cluster, node);
    auto diff = compiler.replace_all(view.ports);
    backend.apply_full(compiler);
  }
  const double full_block = ms_since(t);
  std::printf(
      "before: periodic full sync blocks the event thread %.0f ms: events arriving during it wait "
      "p50 %.0f ms, p99 %.0f ms\n",
      full_block, full_block * 0.5, full_block * 0.99);

  // ---- baseline: event latency with no periodic sync.
  std::mt19937 rng(7);
  uint32_t next_pod = (10u << 24) | (250u << 16);
  auto one_event = [&] {
    const size_t i = static_cast<size_t>(args.drift) + rng() % (ports.size() - static_cast<size_t>(args.drift));
    ports[i] = moved_endpoint(ports[i], next_pod);
    auto diff = compiler.update({ports[i].name.service}, {ports[i]});
    backend.apply_partial(diff, compiler);
    return diff;
  };
  // Events at the same pace as during the check, `fd` (or `count` events)
  // deciding when to stop: latency from each event's scheduled arrival to
  // its commit's return, wake-up delays included.
  auto paced_events = [&](int fd, size_t count, auto on_event) {
    std::vector<double> latencies;
    auto next = Clock::now();
    while (latencies.size() < count) {
      const auto wait = std::chrono::ceil<std::chrono::milliseconds>(next - Clock::now());
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, fd >= 0 ? 1 : 0, static_cast<int>(std::max<int64_t>(0, wait.count()))) == 1) break;
      on_event(one_event());
      latencies.push_back(ms_since(next));
      next += std::chrono::milliseconds(args.event_ms);
    }
    return latencies;
  };
  const auto base = percentiles(paced_events(-1, 300, [](const auto&) {}));
  std::printf("baseline: %d events every %d ms, no check: latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", 300,
              args.event_ms, base.p50, base.p99, base.max);

  // ---- after: drift, then a check while events keep coming.
  drift(backend, compiler, args.drift);
  malloc_trim(0);
  const long rss_before = rss_mib();
  auto snapshot = std::make_shared<const std::vector<ServicePortState>>(ports);  // the daemon shares its pointer
  dataplane::DriftCheck check(dataplane::netlink_readback());
  dataplane::ChangedSinceSnapshot changed;
  const auto check_start = Clock::now();
  t = Clock::now();
  check.start({{snapshot}, node});
  const double start_block = ms_since(t);
  snapshot.reset();
  const auto latencies =
      paced_events(check.fd(), SIZE_MAX, [&](const dataplane::RulesetDiff& diff) { changed.record(diff); });
  auto result = check.take_result();
  if (!result) throw std::logic_error("the check's fd was readable without a result");
  const double check_wall = ms_since(check_start);
  t = Clock::now();
  auto repair = std::move(result->repair);
  const size_t found = repair.operations();
  changed.drop_from(repair);
  const auto summary = dataplane::summarize(repair);
  backend.apply_partial(repair, compiler);
  const double finish_block = ms_since(t);
  const long rss_peak = maxrss_mib();
  const auto during = percentiles(latencies);
  std::printf("after: check %.0f ms wall (readback %.0f ms of %zu elements%s, compile %.0f ms, compare %.0f ms)%s\n",
              check_wall, ms(result->readback), result->kernel_elements, result->raced ? ", raced" : "",
              ms(result->compile), ms(result->compare),
              result->error.empty() ? "" : (" ERROR " + result->error).c_str());
  std::printf(
      "after: drift found %zu operations, %zu after dropping %zu events' objects; repaired: %zu missing "
      "elements (of %d deleted)\n",
      found, repair.operations(), latencies.size(), summary.missing_elements, args.drift);
  std::printf("after: event thread blocked %.2f ms to start the check, %.2f ms to filter and apply the repair\n",
              start_block, finish_block);
  std::printf("after: %zu events during the check: latency p50 %.2f ms, p99 %.2f ms, max %.2f ms\n", latencies.size(),
              during.p50, during.p99, during.max);
  std::printf("memory: rss %ld MiB before the check, %ld MiB after it (trimmed), peak %ld MiB\n", rss_before, rss_mib(),
              rss_peak);
  std::printf(
      "SUMMARY drift %dx%d before_block_ms=%.0f after_block_ms=%.2f after_event_p99_ms=%.2f "
      "baseline_event_p99_ms=%.2f check_ms=%.0f\n",
      args.services, args.endpoints, full_block, std::max(start_block, finish_block), during.p99, base.p99, check_wall);
  return summary.missing_elements == static_cast<size_t>(args.drift) ? 0 : 1;
} catch (const std::exception& e) {
  std::fprintf(stderr, "drift_bench: %s\n", e.what());
  return 2;
}
