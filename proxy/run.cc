#include "proxy/run.h"

#include <poll.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>

#include "proxy/health.h"
#include "proxy/http_server.h"
#include "proxy/metrics.h"
#include "proxy/sync_loop.h"
#include "watch/manifests.h"

namespace svcproxy::proxy {
namespace {

// An owned file descriptor.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {
    if (fd_ < 0) throw std::runtime_error(std::string("run: ") + std::strerror(errno));
  }
  ~Fd() { close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// One log line per event, klog's shape: I1128 06:13:21.123456  1234 run] msg
void log_line(char severity, const std::string& message) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm parts;
  gmtime_r(&ts.tv_sec, &parts);
  char stamp[64];
  std::snprintf(stamp, sizeof stamp, "%c%02d%02d %02d:%02d:%02d.%06ld %6d run] ", severity, parts.tm_mon + 1,
                parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec, ts.tv_nsec / 1000, getpid());
  std::cerr << stamp << message << std::endl;
}

watch::DecodeResult load(const std::string& path, Metrics& metrics) {
  auto decoded = watch::load_manifests(path);
  for (const auto& d : decoded.diagnostics) log_line('W', d.str());
  metrics.count_decode_errors(decoded.diagnostics.size());
  return decoded;
}

// Health, metrics and the health-check servers follow every sync.
struct Observers {
  ProxyHealth& health;
  Metrics& metrics;
  HttpServer& server;
  // EndpointSlice trigger times already observed: each change is observed
  // once, when it is in the kernel (kube-proxy's network programming latency).
  std::map<model::ObjectRef, std::string> seen_trigger_times;

  void after_sync(const SyncResult& r, const SyncLoop* loop, const model::ClusterState& cluster,
                  const model::NodeConfig& node) {
    const auto now = std::chrono::system_clock::now();
    metrics.observe_sync(r, now);
    for (const auto& n : cluster.nodes)
      if (n.name == node.node_name) health.set_node(n);
    if (!r.error.empty()) return;
    health.updated();
    for (const auto& slice : cluster.endpoint_slices) {
      if (slice.last_change_trigger_time.empty()) continue;
      auto& seen = seen_trigger_times[slice.ref];
      if (seen == slice.last_change_trigger_time) continue;
      seen = slice.last_change_trigger_time;
      metrics.observe_network_programming(slice.last_change_trigger_time, now);
    }
    if (!loop) return;
    metrics.set_no_local_endpoints(count_no_local_endpoints(loop->ports()));
    KernelObjects objects;
    const auto ruleset = loop->compiler().ruleset();
    for (const auto& t : ruleset.tables) {
      objects.chains += t.chains.size();
      objects.sets += t.sets.size();
      for (const auto& set : t.sets) objects.elements += set.elements.size();
    }
    metrics.set_kernel_objects(objects);
    for (const auto& problem : server.set_health_check_services(health_check_services(loop->ports())))
      log_line('W', problem);
  }
};

void report(const SyncResult& r, const char* reason) {
  if (!r.error.empty()) {
    log_line('E', std::string("sync failed reason=") + reason + " error=\"" + r.error + "\" (next sync is full)");
    return;
  }
  log_line('I', std::string("sync done reason=") + reason + " mode=" + (r.full ? "full" : "partial") +
                    " operations=" + std::to_string(r.operations) +
                    " conntrack_deleted=" + std::to_string(r.conntrack_deleted) +
                    " duration_us=" + std::to_string(r.duration.count()));
}

}  // namespace

int run_daemon(const RunOptions& options) {
  // Signals arrive through a descriptor so the loop never runs code in a
  // signal handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  Fd signal_fd(signalfd(-1, &signals, SFD_CLOEXEC));

  // Watch the directory (or the file's directory): editors and config tools
  // replace files by rename, which a watch on the file itself would lose.
  namespace fs = std::filesystem;
  const fs::path path(options.manifests);
  const bool is_dir = fs::is_directory(path);
  const fs::path dir = is_dir ? path : (path.has_parent_path() ? path.parent_path() : fs::path("."));
  Fd inotify_fd(inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (inotify_add_watch(inotify_fd.get(), dir.c_str(),
                        IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE) < 0)
    throw std::runtime_error("run: cannot watch " + dir.string() + ": " + std::strerror(errno));

  Fd timer_fd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC));
  itimerspec period{};
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(options.sync_period).count();
  period.it_interval = {static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  period.it_value = period.it_interval;
  timerfd_settime(timer_fd.get(), 0, &period, nullptr);

  // One-shot timer for a sync deferred by --min-sync-period.
  Fd defer_fd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC));

  Metrics metrics;
  ProxyHealth health(options.sync_period);
  auto cluster = load(options.manifests, metrics);
  const auto node = resolve_node_config(options.node, cluster.state, interface_addresses());
  HttpServerOptions http;
  http.healthz_bind_address = options.healthz_bind_address;
  http.metrics_bind_address = options.metrics_bind_address;
  http.proxy_mode = options.proxy_mode;
  for (const auto& ip : node.nodeport_ips) http.health_check_ips.push_back(ip.str());
  HttpServer server(http, health, metrics);
  server.start();
  Observers observers{health, metrics, server, {}};
  // One dataplane: nftables rules, or the userspace proxy (userspace/).
  std::optional<SyncLoop> loop;
  std::optional<userspace::UserspaceBackend> proxier;
  if (options.proxy_mode == "userspace") {
    proxier.emplace(userspace_backend_options(options.userspace, node));
    log_line('I', "userspace proxy started interface=" + proxier->interface().name() +
                      " kind=" + proxier->interface().kind() + " workers=" + std::to_string(proxier->workers()));
  } else {
    loop.emplace(node);
  }
  auto last_sync = std::chrono::steady_clock::now();
  auto sync = [&](bool full, const char* reason) {
    const SyncResult result =
        proxier ? sync_userspace(*proxier, cluster.state, node) : loop->sync(cluster.state, full);
    report(result, reason);
    observers.after_sync(result, loop ? &*loop : nullptr, cluster.state, node);
    last_sync = std::chrono::steady_clock::now();
  };
  sync(false, "start");

  bool pending = false;   // manifests changed, not yet synced
  bool deferred = false;  // defer_fd is armed
  pollfd fds[4] = {{signal_fd.get(), POLLIN, 0},
                   {inotify_fd.get(), POLLIN, 0},
                   {timer_fd.get(), POLLIN, 0},
                   {defer_fd.get(), POLLIN, 0}};
  for (;;) {
    if (poll(fds, 4, -1) < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("run: poll: ") + std::strerror(errno));
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info;
      if (read(signal_fd.get(), &info, sizeof info) == sizeof info) {
        if (info.ssi_signo == SIGHUP) {
          cluster = load(options.manifests, metrics);
          sync(true, "sighup");
          pending = false;
          continue;
        }
        // The rules stay in place: a restarting svcproxy adopts them, and
        // traffic keeps flowing meanwhile (as kube-proxy).
        log_line('I', "exiting on signal " + std::to_string(info.ssi_signo) + "; rules left in place");
        return 0;
      }
    }
    if (fds[1].revents & POLLIN) {
      // Drain every pending event: one sync covers a burst of edits.
      char buf[16384];
      for (ssize_t n; (n = read(inotify_fd.get(), buf, sizeof buf)) > 0;) {
        for (char* p = buf; p < buf + n;) {
          const auto* event = reinterpret_cast<const inotify_event*>(p);
          const std::string name = event->len ? event->name : "";
          if ((is_dir || name == path.filename().string()) && !pending) {
            pending = true;
            health.queued();
            metrics.sync_queued(std::chrono::system_clock::now());
          }
          p += sizeof(inotify_event) + event->len;
        }
      }
    }
    if (fds[2].revents & POLLIN) {
      uint64_t expirations = 0;
      if (read(timer_fd.get(), &expirations, sizeof expirations) > 0) {
        if (pending) cluster = load(options.manifests, metrics);
        sync(true, "sync-period");
        pending = false;
      }
    }
    if (fds[3].revents & POLLIN) {
      uint64_t expirations = 0;
      if (read(defer_fd.get(), &expirations, sizeof expirations) > 0) deferred = false;
    }
    if (pending && !deferred) {
      const auto due = last_sync + options.min_sync_period;
      const auto now = std::chrono::steady_clock::now();
      if (now >= due) {
        cluster = load(options.manifests, metrics);
        sync(false, "manifests-changed");
        pending = false;
      } else {
        const auto wait = std::chrono::duration_cast<std::chrono::nanoseconds>(due - now).count();
        itimerspec once{};
        once.it_value = {static_cast<time_t>(wait / 1000000000), static_cast<long>(wait % 1000000000)};
        timerfd_settime(defer_fd.get(), 0, &once, nullptr);
        deferred = true;
      }
    }
  }
}

}  // namespace svcproxy::proxy
