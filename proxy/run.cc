#include "proxy/run.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>

#include "proxy/health.h"
#include "proxy/http_server.h"
#include "proxy/metrics.h"
#include "proxy/sync_loop.h"
#include "watch/manifests_source.h"

namespace svcproxy::proxy {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// The sync-period timer repairs drift with a readback diff (SyncLoop's drift
// check); a full sync still runs this often, as kube-proxy's nftables
// proxier does (fullSyncPeriod).
constexpr auto kFullSyncPeriod = std::chrono::hours(1);

// An owned file descriptor.
class Fd {
 public:
  explicit Fd(int fd, const char* what) : fd_(fd) {
    if (fd_ < 0) throw std::runtime_error(std::string("run: ") + what + ": " + std::strerror(errno));
  }
  ~Fd() { close(fd_); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

void arm_timer(int fd, std::chrono::nanoseconds first, std::chrono::nanoseconds interval = {}) {
  auto spec = [](std::chrono::nanoseconds d) {
    // it_value 0 disarms: a timer due now fires in 1 ns.
    const auto ns = std::max<int64_t>(d.count(), 1);
    return timespec{static_cast<time_t>(ns / 1000000000), static_cast<long>(ns % 1000000000)};
  };
  itimerspec value{};
  value.it_value = spec(first);
  if (interval.count() > 0) value.it_interval = spec(interval);
  timerfd_settime(fd, 0, &value, nullptr);
}

bool read_counter(int fd) {
  uint64_t count = 0;
  return read(fd, &count, sizeof count) == sizeof count;
}

// The change tracker: counts what the store's change stream reports (on the
// watch thread for the API source) and wakes the loop through an eventfd.
// EndpointSlice trigger times are kept until their change is in the kernel
// (kube-proxy's network programming latency).
class ChangeTracker {
 public:
  ChangeTracker() : wake_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK), "eventfd") {}

  void on_change(const watch::Change& change) {
    {
      std::lock_guard lock(mutex_);
      switch (change.resource) {
        case watch::Resource::Services:
          ++arrived_.services;
          break;
        case watch::Resource::EndpointSlices:
          ++arrived_.endpoint_slices;
          if (change.type != watch::ChangeType::Deleted) {
            const auto& slice = std::get<model::EndpointSlice>(change.object);
            if (!slice.last_change_trigger_time.empty()) trigger_times_.push_back(slice.last_change_trigger_time);
          }
          break;
        default:
          ++arrived_.other;  // this Node, ServiceCIDRs
      }
    }
    wake();
  }
  // Also after a list that changed nothing (the loop may be waiting for it).
  void wake() {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = write(wake_.get(), &one, sizeof one);
  }

  int fd() const { return wake_.get(); }

  struct Counts {
    size_t services = 0;
    size_t endpoint_slices = 0;
    size_t other = 0;
    bool any() const { return services + endpoint_slices + other > 0; }
  };
  // Changes that arrived since the last call (drains the eventfd).
  Counts take_arrived() {
    read_counter(wake_.get());
    std::lock_guard lock(mutex_);
    return std::exchange(arrived_, {});
  }
  std::vector<std::string> take_trigger_times() {
    std::lock_guard lock(mutex_);
    return std::exchange(trigger_times_, {});
  }

 private:
  Fd wake_;
  std::mutex mutex_;
  Counts arrived_;
  std::vector<std::string> trigger_times_;
};

// Where the cluster comes from. Both sources fill a watch::Store whose
// changes go to the tracker.
class ClusterSource {
 public:
  virtual ~ClusterSource() = default;
  virtual watch::Store& store() = 0;
  virtual bool has_synced() const = 0;
  // Readable when the source has work for the loop (-1: none).
  virtual int fd() const { return -1; }
  virtual void on_readable() {}
  // SIGHUP: read everything again.
  virtual void reload() {}
  virtual void export_metrics(Metrics&) {}
  // Why the source could not be read completely (the last state read is
  // kept meanwhile); empty: it could.
  virtual std::string problem() const { return {}; }
  virtual const char* change_reason() const = 0;
};

class ManifestsClusterSource : public ClusterSource {
 public:
  // Throws if the path, or a file of it, cannot be read: at start there is
  // no last good state to keep, and an empty cluster would remove every
  // service of the node.
  ManifestsClusterSource(const std::string& path, Log& log, ChangeTracker& tracker)
      : source_(
            path, [&log](const std::string& line) { log.warning(line); },
            [&tracker](const watch::Change& c) { tracker.on_change(c); }) {
    source_.load();
    for (const auto& d : source_.problems()) {
      if (d.scope == watch::Diagnostic::Scope::Unreadable)
        throw std::runtime_error("--manifests " + path + ": " + (d.file == path ? "" : d.file + ": ") + d.message);
    }
  }
  watch::Store& store() override { return source_.store(); }
  bool has_synced() const override { return source_.has_synced(); }
  int fd() const override { return source_.fd(); }
  // A burst of writes (an editor's write, rename, chmod) is one reload.
  void on_readable() override { source_.poll(milliseconds(0), milliseconds(10)); }
  void reload() override { source_.load(); }
  void export_metrics(Metrics& metrics) override {
    const auto s = source_.stats();
    if (s.skipped_objects > skipped_objects_) metrics.count_decode_errors(s.skipped_objects - skipped_objects_);
    skipped_objects_ = s.skipped_objects;
    metrics.set_manifest_read_errors(s.read_errors);
  }
  std::string problem() const override {
    const auto& problems = source_.problems();
    if (problems.empty()) return {};
    std::string text = problems.front().file + ": " + problems.front().message;
    if (problems.size() > 1) text += " (and " + std::to_string(problems.size() - 1) + " more)";
    return text;
  }
  const char* change_reason() const override { return "manifests-changed"; }

 private:
  watch::ManifestsSource source_;
  uint64_t skipped_objects_ = 0;
};

class ApiClusterSource : public ClusterSource {
 public:
  ApiClusterSource(const watch::ClientConfig& config, const watch::ApiSourceOptions& options, Log& log,
                   ChangeTracker& tracker)
      : informer_(
            config, options, [&log](const std::string& line) { log.warning(line, {{"source", "api"}}); },
            [&tracker](const watch::Change& c) { tracker.on_change(c); }, [&tracker] { tracker.wake(); }) {
    informer_.start();
  }
  watch::Store& store() override { return informer_.store(); }
  bool has_synced() const override { return informer_.has_synced(); }
  void export_metrics(Metrics& metrics) override {
    const auto s = informer_.stats();
    // Beyond each resource's first LIST and first watch: relists and restarts.
    metrics.set_watch_totals(s.watches - std::min(s.watches, s.resources), s.lists - std::min(s.lists, s.resources));
    metrics.set_watch_bookmarks(s.bookmarks);
    if (s.bad_objects > bad_objects_) metrics.count_decode_errors(s.bad_objects - bad_objects_);
    bad_objects_ = s.bad_objects;
  }
  const char* change_reason() const override { return "api-changed"; }

 private:
  watch::ApiInformer informer_;
  uint64_t bad_objects_ = 0;
};

// Lines about the same problem are logged once, again only after the
// problem went away and came back (no log spam in steady state).
class OnceLog {
 public:
  explicit OnceLog(Log& log) : log_(log) {}
  void warnings(const std::vector<std::string>& lines) {
    std::set<std::string> now(lines.begin(), lines.end());
    for (const auto& line : now)
      if (!shown_.contains(line)) log_.warning(line);
    shown_ = std::move(now);
  }

 private:
  Log& log_;
  std::set<std::string> shown_;
};

}  // namespace

std::string node_name(const NodeFlags& flags) {
  std::string name = flags.hostname_override;
  if (name.empty()) {
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    name = host;
  }
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

int run_daemon(const RunOptions& options, Log& log) {
  // Signals arrive through a descriptor so the loop never runs code in a
  // signal handler.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  Fd signal_fd(signalfd(-1, &signals, SFD_CLOEXEC), "signalfd");
  // Full resyncs, every sync period.
  Fd period_fd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC), "timerfd");
  // One-shot: a sync deferred by --min-sync-period or a retry's backoff.
  Fd defer_fd(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC), "timerfd");

  NodeFlags node_flags = options.node;
  node_flags.hostname_override = node_name(options.node);
  // Bad flags fail here, before anything starts (FlagError: exit 2).
  const InterfaceAddresses interfaces;
  const auto start_node = resolve_node_config(node_flags, {}, interfaces, nullptr);

  // Trigger times are whole seconds: a change made in the second this
  // process started counts.
  const auto process_start = std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now());
  Metrics metrics;
  metrics.set_proxy_mode(options.proxy_mode);
  ProxyHealth health(options.sync_period);
  // Until the first sync, an update is pending: a daemon that cannot read
  // its cluster turns unhealthy after 2 × sync period, as kube-proxy.
  health.queued();
  HttpServerOptions http;
  http.healthz_bind_address = options.healthz_bind_address;
  http.metrics_bind_address = options.metrics_bind_address;
  http.proxy_mode = options.proxy_mode;
  for (const auto& ip : start_node.nodeport_ips) http.health_check_ips.push_back(ip.str());
  HttpServer server(http, health, metrics);
  server.start();

  ChangeTracker tracker;
  std::unique_ptr<ClusterSource> source;
  if (options.api) {
    auto api_options = options.api_options;
    api_options.node_name = node_flags.hostname_override;
    source = std::make_unique<ApiClusterSource>(*options.api, api_options, log, tracker);
    log.info("watching the API server", {{"server", options.api->url()}, {"node", api_options.node_name}});
  } else {
    source = std::make_unique<ManifestsClusterSource>(options.manifests, log, tracker);
    log.info("reading manifests", {{"path", options.manifests}, {"node", node_flags.hostname_override}});
  }

  // After every read of the source: /healthz and the counters say whether
  // it could be read completely (no sync follows a read that changed nothing).
  auto source_read = [&] {
    health.set_source_problem(source->problem());
    source->export_metrics(metrics);
  };
  source_read();

  // The dataplane, created at the first sync (the node's configuration may
  // need its Node object): nftables rules, or the userspace proxy.
  std::optional<SyncLoop> loop;
  std::optional<userspace::UserspaceBackend> proxier;
  std::vector<model::ServicePortState> userspace_ports;  // what the userspace proxy serves
  model::NodeConfig node;
  OnceLog once(log);
  bool started = false;
  bool pending = false;  // changes not yet synced
  int failures = 0;      // consecutive failed syncs
  auto next_sync_allowed = Clock::now();
  auto last_full_sync = Clock::now();
  bool defer_armed = false;
  ChangeTracker::Counts backlog;  // changes not yet synced, for the pending gauges
  // EndpointSlice trigger times whose change is not in the kernel yet.
  std::vector<std::string> trigger_times;

  auto sync = [&](bool full, const char* reason) {
    model::ClusterState cluster = source->store().snapshot();
    std::vector<std::string> node_warnings;
    auto node_now = resolve_node_config(node_flags, cluster, interfaces, &node_warnings);
    if (!loop && !proxier) {
      node = node_now;
      if (options.proxy_mode == "userspace") {
        proxier.emplace(userspace_backend_options(options.userspace, node, log));
        log.info("userspace proxy started", {{"interface", proxier->interface().name()},
                                             {"kind", proxier->interface().kind()},
                                             {"workers", proxier->workers()}});
      } else {
        loop.emplace(node);
      }
    } else if (loop && node_now != node) {
      log.info("node configuration changed; the next sync is full");
      node = node_now;
      loop->set_node(node);
    }
    for (auto& t : tracker.take_trigger_times()) trigger_times.push_back(std::move(t));
    const SyncResult r =
        proxier ? sync_userspace(*proxier, cluster, node, log, &userspace_ports) : loop->sync(cluster, full);
    const auto now = std::chrono::system_clock::now();
    // One list: OnceLog repeats a line only after it went away and came back.
    node_warnings.insert(node_warnings.end(), r.warnings.begin(), r.warnings.end());
    once.warnings(node_warnings);
    metrics.observe_sync(r, now);
    if (r.full && r.error.empty()) last_full_sync = Clock::now();
    source->export_metrics(metrics);
    for (const auto& n : cluster.nodes)
      if (n.name == node.node_name) health.set_node(n);
    next_sync_allowed = Clock::now() + options.min_sync_period;
    if (!r.error.empty()) {
      ++failures;
      // kube-proxy's runner retries failures with backoff: 1 s doubling, at
      // most the sync period.
      const auto backoff =
          std::min<milliseconds>(milliseconds(1000L << std::min(failures - 1, 16)), options.sync_period);
      next_sync_allowed = std::max(next_sync_allowed, Clock::now() + backoff);
      pending = true;
      log.error("sync failed", {{"reason", reason}, {"error", r.error}, {"retry_in_ms", static_cast<int64_t>(backoff.count())}});
      return;
    }
    failures = 0;
    pending = false;
    backlog = {};
    metrics.set_changes_pending(0, 0);
    health.updated();
    log.info("sync done", {{"reason", reason},
                           {"mode", r.full ? "full" : "partial"},
                           {"operations", r.operations},
                           {"conntrack_deleted", r.conntrack_deleted},
                           {"duration_us", static_cast<int64_t>(r.duration.count())}});
    for (const auto& t : trigger_times) {
      // As kube-proxy: only changes made after this process started (the
      // first list carries the annotations of changes long past).
      const auto when = parse_rfc3339(t);
      if (when && *when >= process_start) metrics.observe_network_programming(now - *when);
    }
    trigger_times.clear();
    const auto& ports = loop ? loop->ports() : userspace_ports;
    metrics.set_no_local_endpoints(count_no_local_endpoints(ports));
    if (loop) metrics.set_kernel_objects(loop->kernel_objects());
    std::vector<std::string> health_check_ips;
    for (const auto& ip : node.nodeport_ips) health_check_ips.push_back(ip.str());
    server.set_health_check_ips(std::move(health_check_ips));
    for (const auto& problem : server.set_health_check_services(health_check_services(ports))) log.warning(problem);
  };

  // The periodic sync: a drift check whose readback and comparison run off
  // this thread; its repair is applied when its result is in.
  auto periodic_sync = [&] {
    if (proxier || Clock::now() - last_full_sync >= kFullSyncPeriod) {
      sync(true, "sync-period");
      return;
    }
    // Nothing starts while a check runs, or while the kernel is out of sync
    // (a failed sync: its retry is full).
    loop->start_drift_check();
  };
  auto drift_checked = [&] {
    const DriftRepairResult d = loop->finish_drift_check();
    if (!d.checked) return;  // a full sync or a failure since it started
    const auto& r = d.sync;
    const auto& what = d.drifted;
    std::string objects;
    for (const auto& o : what.objects) objects += (objects.empty() ? "" : ", ") + o;
    if (!d.check_error.empty()) log.warning("drift check failed", {{"error", d.check_error}});
    if (what.total() > 0 || what.full) {
      metrics.count_drift_repair();
      log.info("drift repaired", {{"missing_elements", what.missing_elements},
                                  {"extra_elements", what.extra_elements},
                                  {"changed_chains", what.changed_chains},
                                  {"missing_chains", what.missing_chains},
                                  {"extra_chains", what.extra_chains},
                                  {"missing_sets", what.missing_sets},
                                  {"extra_sets", what.extra_sets},
                                  {"full", what.full},
                                  {"objects", objects}});
    }
    if (!d.check_error.empty() && !r.full) return;
    metrics.observe_sync(r, std::chrono::system_clock::now());
    if (!r.error.empty()) {
      log.error("sync failed", {{"reason", "sync-period"}, {"error", r.error}});
      pending = true;  // the next sync is full
      return;
    }
    if (r.full) last_full_sync = Clock::now();
    if (!pending) health.updated();
    log.info("sync done", {{"reason", "sync-period"},
                           {"mode", r.full ? "full" : "partial"},
                           {"operations", r.operations},
                           {"conntrack_deleted", r.conntrack_deleted},
                           {"duration_us", static_cast<int64_t>(r.duration.count())},
                           {"readback_us", static_cast<int64_t>(d.readback.count())},
                           {"compile_us", static_cast<int64_t>(d.compile.count())},
                           {"compare_us", static_cast<int64_t>(d.compare.count())},
                           {"elements_read", d.kernel_elements},
                           {"raced", d.raced}});
  };

  // Arrivals before the first sync are part of it: they are not counted as
  // pending changes.
  auto take_changes = [&] {
    const auto arrived = tracker.take_arrived();
    // Every wake, also a relist that changed nothing: the watch counters move.
    source->export_metrics(metrics);
    if (!arrived.any()) return;
    metrics.changes_received(arrived.endpoint_slices, arrived.services);
    if (!started) return;
    backlog.services += arrived.services;
    backlog.endpoint_slices += arrived.endpoint_slices;
    metrics.set_changes_pending(backlog.endpoint_slices, backlog.services);
    if (!pending) {
      health.queued();
      metrics.sync_queued(std::chrono::system_clock::now());
      log.v(2, "changes queued", {{"services", arrived.services}, {"endpoint_slices", arrived.endpoint_slices}});
    }
    pending = true;
  };

  auto try_start = [&] {
    if (started || !source->has_synced()) return;
    take_changes();
    started = true;
    sync(true, "start");
    arm_timer(period_fd.get(), options.sync_period, options.sync_period);
  };
  if (!source->has_synced()) log.info("waiting for the first list of every resource before the first sync");
  try_start();

  // poll() skips negative descriptors: the source's (manifests only) and
  // the drift check's (until the first check).
  pollfd fds[6] = {{signal_fd.get(), POLLIN, 0},
                   {tracker.fd(), POLLIN, 0},
                   {period_fd.get(), POLLIN, 0},
                   {defer_fd.get(), POLLIN, 0},
                   {source->fd(), POLLIN, 0},
                   {-1, POLLIN, 0}};
  for (;;) {
    fds[5].fd = loop ? loop->drift_fd() : -1;
    fds[5].revents = 0;
    if (poll(fds, 6, -1) < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("run: poll: ") + std::strerror(errno));
    }
    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info;
      if (read(signal_fd.get(), &info, sizeof info) == sizeof info) {
        if (info.ssi_signo == SIGHUP) {
          source->reload();
          source_read();
          take_changes();
          if (started) sync(true, "sighup");
          continue;
        }
        // The rules stay in place: a restarting svcproxy adopts them, and
        // traffic keeps flowing meanwhile (as kube-proxy).
        log.info("exiting; rules left in place", {{"signal", strsignal(static_cast<int>(info.ssi_signo))}});
        return 0;
      }
    }
    if (source->fd() >= 0 && (fds[4].revents & POLLIN)) {
      source->on_readable();
      source_read();
    }
    if (fds[1].revents & POLLIN) {
      take_changes();
      try_start();
    }
    if ((fds[2].revents & POLLIN) && read_counter(period_fd.get()) && started) {
      // Read again what could not be read: a path may come back where no
      // watch sees it (its parent directory was gone too).
      if (!source->problem().empty()) {
        source->reload();
        source_read();
      }
      take_changes();
      periodic_sync();
    }
    if (fds[5].revents & POLLIN) drift_checked();
    if ((fds[3].revents & POLLIN) && read_counter(defer_fd.get())) defer_armed = false;
    if (started && pending && !defer_armed) {
      const auto now = Clock::now();
      if (now >= next_sync_allowed) {
        sync(false, failures > 0 ? "retry" : source->change_reason());
      }
      if (pending) {  // not yet due, or the sync failed: come back when it is
        arm_timer(defer_fd.get(), std::max(next_sync_allowed - Clock::now(), Clock::duration(0)));
        defer_armed = true;
      }
    }
  }
}

}  // namespace svcproxy::proxy
