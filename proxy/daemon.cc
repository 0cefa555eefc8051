#include "proxy/daemon.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "dataplane/drift_check.h"
#include "dataplane/kernel.h"
#include "proxy/node_flags.h"
#include "proxy/userspace_mode.h"

namespace svcproxy::proxy {

namespace {

using std::chrono::milliseconds;

// kube-proxy's fullSyncPeriod: a periodic sync is full only this often.
constexpr auto kFullSyncPeriod = std::chrono::hours(1);

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

// Signals arrive through a descriptor so the loop never runs code in a
// signal handler.
int block_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  return signalfd(-1, &signals, SFD_CLOEXEC);
}

NodeFlags with_node_name(NodeFlags flags) {
  flags.hostname_override = node_name(flags);
  return flags;
}

std::unique_ptr<ClusterSource> make_source(const RunOptions& options, const NodeFlags& node_flags, Log& log,
                                           ChangeTracker& tracker) {
  auto on_change = [&tracker](const watch::Change& c) { tracker.on_change(c); };
  if (options.api) {
    auto api_options = options.api_options;
    api_options.node_name = node_flags.hostname_override;
    auto source =
        std::make_unique<ApiClusterSource>(*options.api, api_options, log, on_change, [&tracker] { tracker.wake(); });
    log.info("watching the API server", {{"server", options.api->url()}, {"node", api_options.node_name}});
    return source;
  }
  auto source = std::make_unique<ManifestsClusterSource>(options.manifests, log, on_change);
  log.info("reading manifests", {{"path", options.manifests}, {"node", node_flags.hostname_override}});
  return source;
}

void append(std::vector<std::string>& to, const std::vector<std::string>& lines) {
  to.insert(to.end(), lines.begin(), lines.end());
}

std::vector<std::string> ip_strings(const std::vector<model::IPAddress>& ips) {
  std::vector<std::string> out;
  for (const auto& ip : ips) out.push_back(ip.str());
  return out;
}

}  // namespace

void OnceLog::warnings(const std::vector<std::string>& lines) {
  std::set<std::string> now(lines.begin(), lines.end());
  for (const auto& line : now)
    if (!shown_.contains(line)) log_.warning(line);
  shown_ = std::move(now);
}

Daemon::Daemon(const RunOptions& options, Log& log)
    : options_(options),
      log_(log),
      node_flags_(with_node_name(options.node)),
      // Trigger times are whole seconds: a change made in the second this
      // process started counts.
      process_start_(std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now())),
      signal_fd_(base::adopt_or_throw(block_signals(), "run: signalfd")),
      period_fd_(base::adopt_or_throw(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC), "run: timerfd")),
      defer_fd_(base::adopt_or_throw(timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC), "run: timerfd")),
      counters_collector_(std::make_shared<ServiceCountersCollector>()),
      health_(options.sync_period),
      debug_({std::string(to_string(options.proxy_mode)), options.sync_period, options.min_sync_period}),
      once_(log) {
  // Bad flags fail here, before anything starts (FlagError: exit 2).
  const auto start_node = resolve_node_config(node_flags_, {}, interfaces_, nullptr);
  metrics_.set_proxy_mode(options_.proxy_mode);
  if (options_.proxy_mode == ProxyMode::Nftables) count_localhost_rejects(start_node);
  metrics_.add_collectable(counters_collector_);
  // Until the first sync, an update is pending: a daemon that cannot read
  // its cluster turns unhealthy after 2 × sync period, as kube-proxy.
  health_.queued();
  HttpServerOptions http;
  http.healthz_bind_address = options_.healthz_bind_address;
  http.metrics_bind_address = options_.metrics_bind_address;
  http.proxy_mode = options_.proxy_mode;
  http.health_check_ips = ip_strings(start_node.nodeport_ips);
  http.flags = options_.flags;
  http.configz = options_.configz;
  http.started = process_start_;
  http.debug = &debug_;
  server_ = std::make_unique<HttpServer>(http, health_, metrics_);
  server_->start();
  source_ = make_source(options_, node_flags_, log_, tracker_);
  debug_.set_store(&source_->store());
  source_read();
}

// The servers first: a /debug answer reads the source's store.
Daemon::~Daemon() { server_->stop(); }

// Localhost NodePorts' loopback rejects (UDP, SCTP) are counted by nftables
// counters, exported as kube-proxy's metric at each scrape. The loopback
// ranges come from the flags alone: known before the first sync.
void Daemon::count_localhost_rejects(const model::NodeConfig& node) {
  std::vector<model::IPFamily> families;
  for (const auto& range : node.localhost_nodeport_ranges) families.push_back(range.family());
  if (families.empty()) return;
  localhost_rejects_ = std::make_unique<LocalhostRejectCounters>(families);
  metrics_.set_scrape_hook([this] {
    for (const auto& t : localhost_rejects_->read())
      metrics_.set_localhost_nodeport_rejected(t.family, t.protocol, t.packets);
  });
}

// After every read of the source: /healthz and the counters say whether it
// could be read completely (no sync follows a read that changed nothing).
void Daemon::source_read() {
  health_.set_source_problem(source_->problem());
  source_->export_metrics(metrics_);
  debug_.set_source(source_->state());
}

int Daemon::run() {
  if (!source_->has_synced()) log_.info("waiting for the first list of every resource before the first sync");
  try_start();
  // poll() skips negative descriptors: the source's (manifests only) and
  // the repair's (none before the first drift check).
  pollfd fds[6] = {{signal_fd_.get(), POLLIN, 0}, {tracker_.fd(), POLLIN, 0}, {period_fd_.get(), POLLIN, 0},
                   {defer_fd_.get(), POLLIN, 0},  {source_->fd(), POLLIN, 0}, {-1, POLLIN, 0}};
  for (;;) {
    fds[5].fd = dataplane_ ? dataplane_->repair_fd() : -1;
    fds[5].revents = 0;
    if (poll(fds, 6, -1) < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("run: poll: ") + std::strerror(errno));
    }
    if ((fds[0].revents & POLLIN) && !on_signal()) return 0;
    if (fds[1].revents & POLLIN) on_change();
    if ((fds[2].revents & POLLIN) && read_counter(period_fd_.get())) on_timer();
    if ((fds[3].revents & POLLIN) && read_counter(defer_fd_.get())) defer_armed_ = false;
    if (fds[5].revents & POLLIN) on_repair_ready();
    on_deferred();
    // After the sync of what arrived: a source's next read (a manifests
    // directory re-read) does not delay changes already in the store.
    if (source_->fd() >= 0 && (fds[4].revents & POLLIN)) on_source_readable();
  }
}

bool Daemon::on_signal() {
  signalfd_siginfo info;
  if (read(signal_fd_.get(), &info, sizeof info) != sizeof info) return true;
  if (info.ssi_signo == SIGHUP) {
    source_->reload();
    source_read();
    take_changes();
    if (started_) sync(SyncKind::Full, "sighup");
    return true;
  }
  // The rules stay in place: a restarting svcproxy adopts them, and traffic
  // keeps flowing meanwhile (as kube-proxy).
  log_.info("exiting; rules left in place", {{"signal", strsignal(static_cast<int>(info.ssi_signo))}});
  return false;
}

void Daemon::on_source_readable() {
  source_->on_readable();
  source_read();
}

void Daemon::on_change() {
  take_changes();
  try_start();
}

// Changes arrived: merged into what is pending. Arrivals before the first
// sync are part of it: they are not counted as pending changes.
void Daemon::take_changes() {
  ChangeBatch arrived = tracker_.take();
  // Every wake, also a relist that changed nothing: the watch counters move.
  source_->export_metrics(metrics_);
  debug_.set_source(source_->state());
  if (arrived.any()) {
    metrics_.changes_received(arrived.endpoint_slice_changes, arrived.service_changes);
    if (started_) {
      metrics_.set_changes_pending(pending_.endpoint_slice_changes + arrived.endpoint_slice_changes,
                                   pending_.service_changes + arrived.service_changes);
      if (!sync_wanted_) {
        health_.queued();
        metrics_.sync_queued(std::chrono::system_clock::now());
        log_.v(2, "changes queued",
               {{"services", arrived.service_changes}, {"endpoint_slices", arrived.endpoint_slice_changes}});
      }
      sync_wanted_ = true;
    }
    pending_.merge(std::move(arrived));
  }
}

void Daemon::try_start() {
  if (started_ || !source_->has_synced()) return;
  take_changes();  // what arrived so far is part of the first sync
  started_ = true;
  sync(SyncKind::Full, "start");
  arm_timer(period_fd_.get(), options_.sync_period, options_.sync_period);
}

void Daemon::on_timer() {
  if (!started_) return;
  // Read again what could not be read: a path may come back where no watch
  // sees it (its parent directory was gone too).
  if (!source_->problem().empty()) {
    source_->reload();
    source_read();
  }
  take_changes();
  const bool full_due = Clock::now() - last_full_sync_ >= kFullSyncPeriod;
  sync(full_due ? SyncKind::Full : SyncKind::Periodic, "sync-period");
}

// A change-driven sync when one is due; else the timer is armed for when it is.
void Daemon::on_deferred() {
  if (!started_ || !sync_wanted_ || defer_armed_) return;
  if (Clock::now() >= next_sync_allowed_) sync(SyncKind::Changes, failures_ > 0 ? "retry" : source_->change_reason());
  if (sync_wanted_) {  // not yet due, or the sync failed: come back when it is
    arm_timer(defer_fd_.get(), std::max(next_sync_allowed_ - Clock::now(), Clock::duration(0)));
    defer_armed_ = true;
  }
}

// A drift check's result is in: its repair is applied now (or dropped, when
// a full sync or a failure made it void). A failed repair is retried as any
// failed sync: full, with backoff.
void Daemon::on_repair_ready() {
  const auto d = dataplane_->finish_repair();
  if (!d) return;
  log_repair(*d);
  const SyncResult& r = d->sync;
  if (!d->check_error.empty() && !r.full) return;  // nothing was applied
  metrics_.observe_sync(r, std::chrono::system_clock::now());
  record_sync(r, "sync-period", r.full ? "full" : "repair");
  if (!r.error.empty()) {
    ++failures_;
    const auto backoff =
        std::min<milliseconds>(milliseconds(1000L << std::min(failures_ - 1, 16)), options_.sync_period);
    next_sync_allowed_ = std::max(next_sync_allowed_, Clock::now() + backoff);
    sync_wanted_ = true;
    log_.error("sync failed",
               {{"reason", "sync-period"}, {"error", r.error}, {"retry_in_ms", static_cast<int64_t>(backoff.count())}});
    return;
  }
  if (!sync_wanted_) health_.updated();
  if (const auto objects = dataplane_->kernel_objects()) metrics_.set_kernel_objects(*objects);
  log_.info("sync done", {{"reason", "sync-period"},
                          {"mode", r.full ? "full" : "partial"},
                          {"operations", r.operations},
                          {"conntrack_deleted", r.conntrack_deleted},
                          {"duration_us", static_cast<int64_t>(r.duration.count())},
                          {"readback_us", static_cast<int64_t>(d->readback.count())},
                          {"compile_us", static_cast<int64_t>(d->compile.count())},
                          {"compare_us", static_cast<int64_t>(d->compare.count())},
                          {"elements_read", d->kernel_elements},
                          {"raced", d->raced}});
}

void Daemon::record_sync(const SyncResult& r, const char* reason, const char* mode) {
  debug_.record_sync({std::chrono::system_clock::now(), reason, mode, r.operations, r.duration, r.error});
}

void Daemon::log_repair(const RepairResult& d) {
  if (!d.check_error.empty()) log_.warning("drift check failed", {{"error", d.check_error}});
  const auto& what = d.drifted;
  if (what.total() == 0 && !what.full) return;
  metrics_.count_drift_repair();
  std::string objects;
  for (const auto& o : what.objects) objects += (objects.empty() ? "" : ", ") + o;
  log_.info("drift repaired", {{"missing_elements", what.missing_elements},
                               {"extra_elements", what.extra_elements},
                               {"changed_chains", what.changed_chains},
                               {"missing_chains", what.missing_chains},
                               {"extra_chains", what.extra_chains},
                               {"missing_sets", what.missing_sets},
                               {"extra_sets", what.extra_sets},
                               {"full", what.full},
                               {"objects", objects}});
}

bool Daemon::refresh_node() {
  // Only what the node's configuration depends on: no snapshot of services.
  const auto cluster = source_->store().snapshot({watch::Resource::Nodes, watch::Resource::ServiceCIDRs});
  node_warnings_.clear();
  auto now = resolve_node_config(node_flags_, cluster, interfaces_, &node_warnings_);
  for (const auto& n : cluster.nodes)
    if (n.name == now.node_name) health_.set_node(n);
  if (!dataplane_) {
    node_ = std::move(now);
    if (options_.proxy_mode == ProxyMode::Userspace) {
      dataplane_ = std::make_unique<UserspaceDataplane>(options_.userspace, node_, log_);
    } else {
      kernel_ = std::make_unique<dataplane::NetlinkBackend>();
      if (localhost_rejects_) kernel_ = std::make_unique<RejectCountingKernel>(std::move(kernel_), *localhost_rejects_);
      conntrack_ = std::make_unique<KernelConntrack>();
      dataplane_ = std::make_unique<SyncLoop>(node_, *kernel_, *conntrack_, dataplane::netlink_readback());
      // The loopback ranges come from the flags alone: no node change
      // turns the relay on or off.
      if (auto relay = localhost_relay_addresses(node_); !relay.empty()) {
        localhost_ = std::make_unique<LocalhostNodePorts>(relay, options_.userspace, log_);
        std::string listening;
        for (const auto& ip : relay) listening += (listening.empty() ? "" : ",") + ip.str();
        log_.info("localhost nodeports: TCP NodePorts answer through a userspace relay", {{"addresses", listening}});
      }
    }
    counters_collector_->set_source(dataplane_->traffic_counters());
    // The dataplane lives until after the HTTP server stops (~Daemon).
    debug_.set_counters(dataplane_->traffic_counters().get());
  } else {
    if (now == node_) return false;
    log_.info("node configuration changed; the next sync is full");
    node_ = std::move(now);
    dataplane_->set_node(node_);
  }
  debug_.set_node(node_);
  // Opened there by the next set_health_check_services (after the rebuild).
  server_->set_health_check_ips(ip_strings(node_.nodeport_ips));
  return true;
}

// Programs the dataplane; `rebuilt` tells whether the whole model was
// recomputed (the health check servers must be looked at again).
SyncResult Daemon::program(SyncKind kind, const ChangeBatch& changes, bool& rebuilt) {
  // The node's configuration: at start, when a Node or ServiceCIDR changed,
  // and at every periodic or full sync (the interfaces' addresses have no
  // change stream).
  const bool node_changed = (!dataplane_ || changes.node_changed || kind != SyncKind::Changes) && refresh_node();
  rebuilt = kind == SyncKind::Full || node_changed || dataplane_->needs_full_sync();
  if (rebuilt) {
    model_.rebuild(source_->store().snapshot(), node_);
    SyncResult r = dataplane_->full_sync(model_.all_ports());
    if (localhost_) append(r.warnings, localhost_->set_all(model_.all_ports()));
    return r;
  }
  SyncResult r;
  if (!changes.services.empty()) {
    auto ports = model_.recompute(source_->store(), changes.services, node_);
    const std::vector<model::ObjectRef> services(changes.services.begin(), changes.services.end());
    r = dataplane_->apply_changes(services, ports);
    if (localhost_) append(r.warnings, localhost_->set_services(services, ports));
  }
  // Drift repair: a check starts here and is finished by on_repair_ready.
  if (kind == SyncKind::Periodic && r.error.empty()) dataplane_->repair();
  return r;
}

void Daemon::sync(SyncKind kind, const char* reason) {
  // Nothing arrives while the loop syncs: what arrives meanwhile waits in
  // the tracker and is merged into pending_ afterwards.
  ChangeBatch synced = std::exchange(pending_, {});
  bool rebuilt = false;
  const SyncResult r = program(kind, synced, rebuilt);
  const auto committed = Clock::now();
  dataplane_->log_stats();
  if (localhost_)
    for (const auto& s : localhost_->stats())
      metrics_.set_localhost_nodeports(s.family, s.listeners, s.listen_failures);
  std::vector<std::string> warnings = node_warnings_;
  for (auto& w : model_.skip_warnings()) warnings.push_back(std::move(w));
  warnings.insert(warnings.end(), r.warnings.begin(), r.warnings.end());
  once_.warnings(warnings);
  metrics_.observe_sync(r, std::chrono::system_clock::now());
  record_sync(r, reason, r.full ? "full" : "partial");
  source_->export_metrics(metrics_);
  next_sync_allowed_ = Clock::now() + options_.min_sync_period;
  if (!r.error.empty()) {
    ++failures_;
    // kube-proxy's runner retries failures with backoff: 1 s doubling, at
    // most the sync period. The next sync is full (the dataplane says so);
    // the changes stay pending for their metrics and latency.
    const auto backoff =
        std::min<milliseconds>(milliseconds(1000L << std::min(failures_ - 1, 16)), options_.sync_period);
    next_sync_allowed_ = std::max(next_sync_allowed_, Clock::now() + backoff);
    pending_ = std::move(synced);
    sync_wanted_ = true;
    log_.error("sync failed",
               {{"reason", reason}, {"error", r.error}, {"retry_in_ms", static_cast<int64_t>(backoff.count())}});
    return;
  }
  if (rebuilt) last_full_sync_ = committed;
  after_success(r, reason, synced, committed);
}

void Daemon::after_success(const SyncResult& r, const char* reason, const ChangeBatch& synced,
                           Clock::time_point committed) {
  failures_ = 0;
  sync_wanted_ = false;
  metrics_.set_changes_pending(0, 0);
  health_.updated();
  const char* mode = r.full ? "full" : "partial";
  const auto duration_us = static_cast<int64_t>(r.duration.count());
  if (synced.oldest) {
    // Daemon-side latency: from the arrival of the oldest change synced to
    // the commit's return (syncs without a change have none).
    const auto latency = std::chrono::duration_cast<std::chrono::microseconds>(committed - *synced.oldest);
    log_.info("sync done", {{"reason", reason},
                            {"mode", mode},
                            {"operations", r.operations},
                            {"conntrack_deleted", r.conntrack_deleted},
                            {"duration_us", duration_us},
                            {"event_to_commit_us", static_cast<int64_t>(latency.count())}});
  } else {
    log_.info("sync done", {{"reason", reason},
                            {"mode", mode},
                            {"operations", r.operations},
                            {"conntrack_deleted", r.conntrack_deleted},
                            {"duration_us", duration_us}});
  }
  const auto now = std::chrono::system_clock::now();
  for (const auto& t : synced.trigger_times) {
    // As kube-proxy: only changes made after this process started (the
    // first list carries the annotations of changes long past).
    const auto when = parse_rfc3339(t.time);
    if (when && *when >= process_start_) metrics_.observe_network_programming(t.family, now - *when);
  }
  metrics_.set_no_local_endpoints(model_.no_local_endpoints());
  if (const auto objects = dataplane_->kernel_objects()) metrics_.set_kernel_objects(*objects);
  if (auto services = model_.take_health_check_services()) {
    for (const auto& problem : server_->set_health_check_services(*services)) log_.warning(problem);
  }
}

}  // namespace svcproxy::proxy
