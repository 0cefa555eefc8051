#include "loadtest/engine.h"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "base/unique_fd.h"
#include "loadtest/changes.h"
#include "loadtest/fairness.h"
#include "loadtest/histogram.h"
#include "loadtest/http_response.h"

namespace svcproxy::loadtest {
namespace {

using Clock = std::chrono::steady_clock;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

constexpr int64_t kMs = 1'000'000;
// A send more than this behind its planned time counts as a schedule miss.
constexpr int64_t kLateNs = 1 * kMs;
// Timeouts are checked by a scan of the worker's connections every 1/20th
// of --timeout (within 1..50 ms): 5% precision without scanning thousands
// of connections hundreds of times a second.
int64_t scan_interval_ns(std::chrono::milliseconds timeout) {
  return std::clamp<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(timeout).count() / 20, kMs, 50 * kMs);
}
constexpr size_t kMaxErrorSamples = 5;
// Per-endpoint and per-interval latencies: two digits keep them small
// (endpoints x threads of them); the run's totals keep three.
constexpr int kEndpointDigits = 2;
constexpr int kTotalDigits = 3;

std::string format_address(const sockaddr_storage& storage) {
  char text[INET6_ADDRSTRLEN] = {};
  if (storage.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(storage);
    inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(v4.sin_port));
  }
  const auto& v6 = reinterpret_cast<const sockaddr_in6&>(storage);
  inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
  return "[" + std::string(text) + "]:" + std::to_string(ntohs(v6.sin6_port));
}

socklen_t address_length(const sockaddr_storage& storage) {
  return storage.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
}

}  // namespace

// Named (not anonymous): Engine::State, declared in the header, derives from it.
namespace engine_internal {

// The expected set and the changes, as workers read them: replaced whole
// under the state's mutex, picked up when the generation moves.
struct Snapshot {
  ExpectedEndpoints expected;
  std::unordered_set<std::string> serving;
  std::unordered_map<std::string, std::string> excluded;
  std::vector<ChangeRecord> changes;
};

// One timeline interval while it is open (workers still adding to it).
struct OpenInterval {
  uint64_t requests = 0;
  uint64_t errors = 0;
  Histogram latency{kEndpointDigits};
};

struct Shared {
  explicit Shared(Plan p) : plan(std::move(p)) {}
  Plan plan;
  std::atomic<bool> stopping{false};
  int64_t start_ns = now_ns();
  std::atomic<uint64_t> issued{0};

  std::mutex mutex;  // guards snapshot, the timeline and live endpoint counts
  std::atomic<uint64_t> generation{0};
  std::shared_ptr<const Snapshot> snapshot = std::make_shared<Snapshot>();
  int64_t interval_ns = 250 * kMs;
  std::map<int64_t, OpenInterval> open_intervals;
  std::unordered_map<std::string, uint64_t> live_endpoint_counts;

  std::mutex done_mutex;
  std::condition_variable done_cv;
  unsigned running = 0;

  void replace_snapshot(const std::function<void(Snapshot&)>& edit) {
    std::lock_guard lock(mutex);
    auto next = std::make_shared<Snapshot>(*snapshot);
    edit(*next);
    snapshot = std::move(next);
    generation.fetch_add(1, std::memory_order_release);
  }
};


}  // namespace engine_internal

using engine_internal::Shared;
using engine_internal::Snapshot;
using engine_internal::OpenInterval;

struct Engine::State : Shared {
  using Shared::Shared;
};

namespace {

enum class Phase { idle, connecting, sending, reading };
enum class Failure { refused, timeout, reset, other };

struct EndpointAcc {
  uint64_t count = 0;
  uint64_t flushed = 0;
  uint64_t violations = 0;
  std::string reason;  // why its violating answers were outside the set
  Histogram latency{kEndpointDigits};
  int64_t first_ns = std::numeric_limits<int64_t>::max();
  int64_t last_ns = std::numeric_limits<int64_t>::min();
  uint64_t judged_generation = UINT64_MAX;
  bool outside = false;
  ChangeTracker::Slot changes;
};

struct Conn {
  base::UniqueFd fd;
  uint32_t sequence = 0;  // tells a stale epoll event from the current socket's
  Phase phase = Phase::idle;
  bool reused = false;    // http: a request on a kept-alive connection
  int64_t intended_ns = 0;
  int64_t sent_ns = 0;
  int64_t deadline_ns = 0;
  size_t out_offset = 0;
  std::string in;
  std::optional<std::string> attributed;  // conntrack's answer, asked once per connection
  // The endpoint its last answer came from: a kept-alive connection keeps
  // reaching the same one, so its answers skip the table lookup.
  std::string last_endpoint;
  EndpointAcc* last_acc = nullptr;
};

class Worker {
 public:
  Worker(Shared& state, unsigned index, unsigned slots, double rate)
      : state_(state), plan_(state.plan), index_(index), conns_(slots), rate_(rate) {}
  void run();

  // Results, read after the thread ended.
  Histogram corrected{kTotalDigits};
  Histogram uncorrected{kTotalDigits};
  std::unordered_map<std::string, EndpointAcc> endpoints;
  ChangeTracker tracker;
  ErrorCounts errors;
  std::vector<std::string> samples;
  uint64_t answers = 0;
  uint64_t schedule_misses = 0;
  uint64_t waited_for_slot = 0;
  int64_t max_lag_ns = 0;
  std::atomic<uint64_t> live_requests{0};
  std::atomic<uint64_t> live_errors{0};

 private:
  bool claim();
  void start(uint32_t slot, int64_t intended, int64_t now);
  bool open_socket(Conn& c, uint32_t slot);
  void send_request(Conn& c, uint32_t slot);
  void on_event(uint32_t slot, uint32_t events);
  void on_connected(Conn& c, uint32_t slot, uint32_t events);
  void on_readable(Conn& c, uint32_t slot);
  void answer(Conn& c, uint32_t slot, std::string_view name, bool keep_open);
  void fail(Conn& c, uint32_t slot, Failure failure, const std::string& detail);
  void retry_fresh(Conn& c, uint32_t slot);
  void finish(uint32_t slot);
  void close_conn(Conn& c, bool abortive);
  void watch(Conn& c, uint32_t slot, uint32_t events, bool add);
  void expire(int64_t now);
  void dispatch_due(int64_t now);
  void refresh_snapshot();
  void judge(EndpointAcc& acc, const std::string& name);
  void flush(int64_t interval);

  Shared& state_;
  const Plan& plan_;
  unsigned index_;
  std::vector<Conn> conns_;
  double rate_;
  base::UniqueFd epoll_;
  size_t next_source_ = 0;
  unsigned in_flight_ = 0;
  bool exhausted_ = false;  // --requests reached
  std::vector<uint32_t> ready_;  // closed loop: slots to start again
  std::vector<uint32_t> idle_;   // open loop: slots free for the next due request
  int64_t period_ns_ = 0;
  int64_t next_due_ = 0;
  bool starved_ = false;  // open loop: a request fell due with every slot busy
  std::string http_request_;
  uint64_t generation_ = UINT64_MAX;
  std::shared_ptr<const Snapshot> snapshot_;
  OpenInterval interval_;
  int64_t interval_index_ = 0;
};

bool Worker::claim() {
  if (exhausted_ || state_.stopping.load(std::memory_order_relaxed)) return false;
  if (!plan_.requests) return true;
  if (state_.issued.fetch_add(1, std::memory_order_relaxed) < *plan_.requests) return true;
  exhausted_ = true;
  return false;
}

void Worker::watch(Conn& c, uint32_t slot, uint32_t events, bool add) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = (uint64_t{c.sequence} << 32) | slot;
  ::epoll_ctl(epoll_.get(), add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c.fd.get(), &ev);
}

void Worker::close_conn(Conn& c, bool abortive) {
  if (!c.fd) return;
  if (abortive) {
    // A reset instead of a FIN: no TIME_WAIT, so a long run at a high
    // connection rate does not run out of client ports.
    linger lg{1, 0};
    ::setsockopt(c.fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  c.fd.reset();
  c.in.clear();
  c.attributed.reset();
  ++c.sequence;
}

bool Worker::open_socket(Conn& c, uint32_t slot) {
  const bool udp = plan_.mode == Mode::udp;
  c.fd.reset(::socket(plan_.address.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!c.fd) {
    fail(c, slot, Failure::other, std::string("socket: ") + std::strerror(errno));
    return false;
  }
  ++c.sequence;
  if (!plan_.sources.empty()) {
    const auto& source = plan_.sources[next_source_++ % plan_.sources.size()];
    if (::bind(c.fd.get(), reinterpret_cast<const sockaddr*>(&source), address_length(source)) != 0) {
      fail(c, slot, Failure::other, "bind " + format_address(source) + ": " + std::strerror(errno));
      return false;
    }
  }
  if (plan_.mode == Mode::http) {
    int one = 1;
    ::setsockopt(c.fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  int rc = ::connect(c.fd.get(), reinterpret_cast<const sockaddr*>(&plan_.address), address_length(plan_.address));
  if (rc != 0 && errno != EINPROGRESS) {
    const int err = errno;
    fail(c, slot, err == ECONNREFUSED ? Failure::refused : Failure::other, std::string("connect: ") + std::strerror(err));
    return false;
  }
  if (udp) {
    watch(c, slot, EPOLLIN, true);
    send_request(c, slot);
  } else {
    c.phase = Phase::connecting;
    watch(c, slot, EPOLLOUT, true);
  }
  return true;
}

void Worker::start(uint32_t slot, int64_t intended, int64_t now) {
  Conn& c = conns_[slot];
  c.intended_ns = intended;
  c.sent_ns = now;
  c.deadline_ns = now + std::chrono::duration_cast<std::chrono::nanoseconds>(plan_.timeout).count();
  ++in_flight_;
  if (c.fd) {
    c.reused = true;
    send_request(c, slot);
    return;
  }
  c.reused = false;
  open_socket(c, slot);
}

void Worker::send_request(Conn& c, uint32_t slot) {
  std::string_view request = plan_.mode == Mode::http ? std::string_view(http_request_) : std::string_view("x\n");
  if (c.phase != Phase::sending) c.out_offset = 0;
  while (c.out_offset < request.size()) {
    ssize_t n = ::send(c.fd.get(), request.data() + c.out_offset, request.size() - c.out_offset, MSG_NOSIGNAL);
    if (n < 0 && errno == EAGAIN) {
      if (c.phase != Phase::sending) watch(c, slot, EPOLLOUT, false);
      c.phase = Phase::sending;
      return;
    }
    if (n < 0) {
      const int err = errno;
      if (c.reused && (err == EPIPE || err == ECONNRESET)) return retry_fresh(c, slot);
      return fail(c, slot, err == ECONNREFUSED ? Failure::refused : err == ECONNRESET || err == EPIPE ? Failure::reset : Failure::other,
                  std::string("send: ") + std::strerror(err));
    }
    c.out_offset += static_cast<size_t>(n);
  }
  // A kept-alive connection is still watched for input; others switch now.
  const bool was = c.phase == Phase::sending || c.phase == Phase::connecting;
  c.phase = Phase::reading;
  c.in.clear();
  if (was && plan_.mode != Mode::udp) watch(c, slot, EPOLLIN, false);
}

// A kept-alive connection the server had closed: not a failure of this
// request, which goes again on a fresh connection (keeping its times).
void Worker::retry_fresh(Conn& c, uint32_t slot) {
  close_conn(c, false);
  c.reused = false;
  open_socket(c, slot);
}

void Worker::on_connected(Conn& c, uint32_t slot, uint32_t events) {
  // A failed connect is reported with EPOLLERR; only then is SO_ERROR worth
  // a syscall (one of ~10 per short connection).
  int err = 0;
  socklen_t len = sizeof err;
  if (events & (EPOLLERR | EPOLLHUP)) ::getsockopt(c.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  if ((events & (EPOLLERR | EPOLLHUP)) && err == 0) err = ECONNRESET;
  if (err != 0) {
    Failure f = err == ECONNREFUSED ? Failure::refused
                : err == ETIMEDOUT  ? Failure::timeout
                : err == ECONNRESET ? Failure::reset
                                    : Failure::other;
    return fail(c, slot, f, std::string("connect: ") + std::strerror(err));
  }
  if (plan_.mode == Mode::connect) return answer(c, slot, {}, false);
  send_request(c, slot);
}

void Worker::on_readable(Conn& c, uint32_t slot) {
  char buffer[16 * 1024];
  bool closed = false;  // EOF or an error ended the input
  int err = 0;
  for (;;) {
    ssize_t n = ::recv(c.fd.get(), buffer, sizeof buffer, 0);
    if (n > 0) {
      c.in.append(buffer, static_cast<size_t>(n));
      // One datagram is the whole answer. A short read emptied the socket:
      // another recv would only say EAGAIN (one syscall of ~10 per short
      // connection, of ~4 per kept-alive request); epoll is level-triggered,
      // so whatever comes later is reported again.
      if (plan_.mode == Mode::udp || static_cast<size_t>(n) < sizeof buffer) break;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    if (n < 0 && errno == EINTR) continue;
    closed = true;
    err = n == 0 ? 0 : errno;
    break;
  }
  if (plan_.mode == Mode::http) {
    HttpResponse response = parse_http_response(c.in, plan_.endpoint_header, closed && err == 0);
    if (response.complete) {
      if (response.status >= 400) return fail(c, slot, Failure::other, "HTTP status " + std::to_string(response.status));
      return answer(c, slot, response.endpoint, plan_.keepalive && response.keep_alive && !closed);
    }
  } else if (const size_t newline = c.in.find('\n'); newline != std::string::npos) {
    // `svcproxy echo` answers "<id> <client>": the id names the endpoint.
    std::string_view line(c.in.data(), newline);
    return answer(c, slot, line.substr(0, line.find(' ')), false);
  }
  if (!closed) return;
  if (c.reused && c.in.empty() && (err == 0 || err == ECONNRESET)) return retry_fresh(c, slot);
  if (err == 0) return fail(c, slot, Failure::other, "closed before answering");
  fail(c, slot, err == ECONNREFUSED ? Failure::refused : err == ECONNRESET ? Failure::reset : Failure::other,
       std::string("recv: ") + std::strerror(err));
}

void Worker::judge(EndpointAcc& acc, const std::string& name) {
  acc.judged_generation = generation_;
  acc.outside = false;
  const Snapshot& s = *snapshot_;
  if (!s.expected.known || name == "?" || s.serving.count(name)) return;
  acc.outside = true;
  auto it = s.excluded.find(name);
  acc.reason = it != s.excluded.end() ? it->second : "not an endpoint";
}

void Worker::answer(Conn& c, uint32_t slot, std::string_view name, bool keep_open) {
  const int64_t now = now_ns();
  if (plan_.attributor && !c.attributed && c.fd) {
    sockaddr_storage local{};
    socklen_t len = sizeof local;
    ::getsockname(c.fd.get(), reinterpret_cast<sockaddr*>(&local), &len);
    c.attributed = plan_.attributor->endpoint_of(local, plan_.address, plan_.mode == Mode::udp ? IPPROTO_UDP : IPPROTO_TCP)
                       .value_or(std::string());
  }
  std::string_view endpoint = c.attributed && !c.attributed->empty() ? std::string_view(*c.attributed) : name;
  if (endpoint.empty()) endpoint = "?";
  const auto corrected_us = static_cast<uint64_t>(std::max<int64_t>(0, now - c.intended_ns) / 1000);
  const auto uncorrected_us = static_cast<uint64_t>(std::max<int64_t>(0, now - c.sent_ns) / 1000);
  corrected.record(corrected_us);
  uncorrected.record(uncorrected_us);
  interval_.latency.record(corrected_us);
  ++interval_.requests;
  ++answers;
  live_requests.fetch_add(1, std::memory_order_relaxed);

  if (c.last_acc == nullptr || c.last_endpoint != endpoint) {
    c.last_endpoint.assign(endpoint);
    auto [it, inserted] = endpoints.try_emplace(c.last_endpoint);
    if (inserted) tracker.attach(it->first, it->second.changes);
    c.last_acc = &it->second;
  }
  EndpointAcc& acc = *c.last_acc;
  if (acc.judged_generation != generation_) judge(acc, c.last_endpoint);
  ++acc.count;
  if (acc.outside) ++acc.violations;
  acc.latency.record(corrected_us);
  acc.first_ns = std::min(acc.first_ns, now);
  acc.last_ns = now;
  tracker.answer(acc.changes, now);

  if (!keep_open) close_conn(c, plan_.mode == Mode::connect || plan_.mode == Mode::request);
  c.phase = Phase::idle;
  finish(slot);
}

void Worker::fail(Conn& c, uint32_t slot, Failure failure, const std::string& detail) {
  switch (failure) {
    case Failure::refused: ++errors.refused; break;
    case Failure::timeout:
      ++errors.timeout;
      if (plan_.mode == Mode::udp) ++errors.udp_lost;
      break;
    case Failure::reset: ++errors.reset; break;
    case Failure::other:
      ++errors.other;
      if (samples.size() < kMaxErrorSamples &&
          std::find(samples.begin(), samples.end(), detail) == samples.end())
        samples.push_back(detail);
      break;
  }
  ++interval_.requests;
  ++interval_.errors;
  live_requests.fetch_add(1, std::memory_order_relaxed);
  live_errors.fetch_add(1, std::memory_order_relaxed);
  close_conn(c, true);
  c.phase = Phase::idle;
  finish(slot);
}

void Worker::finish(uint32_t slot) {
  --in_flight_;
  if (rate_ > 0) idle_.push_back(slot);
  else ready_.push_back(slot);
}

void Worker::on_event(uint32_t slot, uint32_t events) {
  Conn& c = conns_[slot];
  if (!c.fd) return;
  switch (c.phase) {
    case Phase::connecting: return on_connected(c, slot, events);
    case Phase::sending:
      if (events & (EPOLLERR | EPOLLHUP)) return on_readable(c, slot);
      return send_request(c, slot);
    case Phase::reading: return on_readable(c, slot);
    case Phase::idle:
      // A kept-alive connection closed by the server while idle: drop it
      // now, the next request opens a fresh one.
      close_conn(c, false);
      return;
  }
}

void Worker::expire(int64_t now) {
  for (uint32_t slot = 0; slot < conns_.size(); ++slot) {
    Conn& c = conns_[slot];
    if (c.phase != Phase::idle && c.fd && now >= c.deadline_ns) fail(c, slot, Failure::timeout, "timeout");
  }
}

void Worker::dispatch_due(int64_t now) {
  while (next_due_ <= now) {
    if (idle_.empty()) {
      starved_ = true;
      return;
    }
    if (!claim()) return;
    const uint32_t slot = idle_.back();
    idle_.pop_back();
    const int64_t lag = now - next_due_;
    if (lag > kLateNs) {
      // Late with every connection busy: the server (or --concurrency) held
      // it back, which the corrected latency shows. Late with one free: the
      // generator itself could not keep up.
      if (starved_) ++waited_for_slot;
      else ++schedule_misses, max_lag_ns = std::max(max_lag_ns, lag);
    }
    start(slot, next_due_, now);
    next_due_ += period_ns_;
  }
  starved_ = false;
}

void Worker::refresh_snapshot() {
  const uint64_t g = state_.generation.load(std::memory_order_acquire);
  if (g == generation_) return;
  {
    std::lock_guard lock(state_.mutex);
    snapshot_ = state_.snapshot;
    generation_ = state_.generation.load(std::memory_order_relaxed);
  }
  tracker.update(snapshot_->changes);
}

void Worker::flush(int64_t interval) {
  std::lock_guard lock(state_.mutex);
  auto& open = state_.open_intervals[interval];
  open.requests += interval_.requests;
  open.errors += interval_.errors;
  open.latency.merge(interval_.latency);
  for (auto& [name, acc] : endpoints) {
    if (acc.count == acc.flushed) continue;
    state_.live_endpoint_counts[name] += acc.count - acc.flushed;
    acc.flushed = acc.count;
  }
  interval_.requests = interval_.errors = 0;
  interval_.latency.clear();
}

void Worker::run() {
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  if (plan_.mode == Mode::http) {
    http_request_ = "GET " + plan_.http_path + " HTTP/1.1\r\nHost: " + format_address(plan_.address) +
                    "\r\nUser-Agent: svcproxy-loadtest\r\n" + (plan_.keepalive ? "" : "Connection: close\r\n") + "\r\n";
  }
  refresh_snapshot();
  const int64_t run_start = state_.start_ns;
  const int64_t end = plan_.duration ? run_start + std::chrono::duration_cast<std::chrono::nanoseconds>(*plan_.duration).count()
                                     : std::numeric_limits<int64_t>::max();
  for (uint32_t slot = 0; slot < conns_.size(); ++slot) (rate_ > 0 ? idle_ : ready_).push_back(slot);
  if (rate_ > 0) {
    period_ns_ = std::max<int64_t>(1, static_cast<int64_t>(1e9 / rate_));
    next_due_ = run_start + period_ns_ * index_ / std::max<int64_t>(1, static_cast<int64_t>(plan_.threads));
  }
  const int64_t scan_ns = scan_interval_ns(plan_.timeout);
  int64_t next_scan = run_start + scan_ns;
  int64_t next_flush = run_start + state_.interval_ns;
  std::vector<epoll_event> events(256);
  std::vector<uint32_t> starting;
  for (;;) {
    int64_t now = now_ns();
    if (state_.stopping.load(std::memory_order_relaxed) || now >= end) break;
    refresh_snapshot();
    if (rate_ > 0) {
      dispatch_due(now);
    } else {
      starting.swap(ready_);
      for (uint32_t slot : starting)
        if (claim()) start(slot, now, now);
      starting.clear();
    }
    if (exhausted_ && in_flight_ == 0) break;
    if (now >= next_scan) {
      expire(now);
      next_scan = now + scan_ns;
    }
    if (now >= next_flush) {
      flush(interval_index_);
      interval_index_ = (now - run_start) / state_.interval_ns;
      next_flush = run_start + (interval_index_ + 1) * state_.interval_ns;
    }
    if (!ready_.empty()) continue;
    int64_t wake = std::min({next_scan, next_flush, end});
    if (rate_ > 0 && !idle_.empty() && !exhausted_) wake = std::min(wake, next_due_);
    const int64_t wait_ns = std::max<int64_t>(0, wake - now);
    timespec timeout{static_cast<time_t>(wait_ns / 1'000'000'000), static_cast<long>(wait_ns % 1'000'000'000)};
    int n = ::epoll_pwait2(epoll_.get(), events.data(), static_cast<int>(events.size()), &timeout, nullptr);
    for (int i = 0; i < n; ++i) {
      const auto slot = static_cast<uint32_t>(events[i].data.u64 & 0xffffffffu);
      const auto sequence = static_cast<uint32_t>(events[i].data.u64 >> 32);
      if (conns_[slot].sequence == sequence) on_event(slot, events[i].events);
    }
  }
  flush(interval_index_);
}

}  // namespace

namespace {

Percentiles percentiles_of(const Histogram& h) {
  return {h.percentile(50), h.percentile(90), h.percentile(99), h.percentile(99.9), h.max()};
}

// The percentile plot's points: denser towards the tail, as HDR plots are.
std::vector<CurvePoint> curve_of(const Histogram& h) {
  std::vector<CurvePoint> curve;
  if (h.count() == 0) return curve;
  for (double p : {0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 96.0, 97.0,
                   98.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0})
    curve.push_back({p, p == 0.0 ? h.min() : h.percentile(p)});
  return curve;
}

struct MergedEndpoint {
  uint64_t count = 0;
  uint64_t violations = 0;
  std::string reason;
  Histogram latency{kEndpointDigits};
  int64_t first_ns = std::numeric_limits<int64_t>::max();
  int64_t last_ns = std::numeric_limits<int64_t>::min();
};

}  // namespace

Engine::Engine(Plan plan) : state_(std::make_unique<State>(std::move(plan))) { set_expected(state_->plan.expected); }
Engine::~Engine() = default;

void Engine::stop() { state_->stopping.store(true, std::memory_order_relaxed); }

void Engine::set_expected(ExpectedEndpoints expected) {
  state_->replace_snapshot([&](Snapshot& s) {
    s.serving = {expected.serving.begin(), expected.serving.end()};
    s.excluded = {expected.excluded.begin(), expected.excluded.end()};
    s.expected = std::move(expected);
  });
}

void Engine::note_change(std::vector<std::string> removed, std::vector<std::string> added) {
  const int64_t at = now_ns();
  state_->replace_snapshot([&](Snapshot& s) { s.changes.push_back({at, std::move(removed), std::move(added)}); });
}

namespace {

// Closes the timeline's intervals that every worker has moved past (all of
// them when `all`), keeping memory flat over long runs.
void close_intervals(Shared& state, int64_t now, bool all, std::vector<TimelinePoint>& timeline,
                     Histogram& so_far) {
  std::lock_guard lock(state.mutex);
  const int64_t current = (now - state.start_ns) / state.interval_ns;
  for (auto it = state.open_intervals.begin(); it != state.open_intervals.end();) {
    if (!all && it->first >= current - 1) break;
    const int64_t begin_ns = it->first * state.interval_ns;
    const int64_t width_ns = std::max<int64_t>(1, std::min(state.interval_ns, now - state.start_ns - begin_ns));
    TimelinePoint point;
    point.at_us = begin_ns / 1000;
    point.requests_per_s = static_cast<double>(it->second.requests) * 1e9 / static_cast<double>(width_ns);
    point.errors = it->second.errors;
    point.p99_us = it->second.latency.percentile(99);
    timeline.push_back(point);
    so_far.merge(it->second.latency);
    it = state.open_intervals.erase(it);
  }
}

Progress progress_of(Shared& state, const std::vector<std::unique_ptr<Worker>>& workers, int64_t now,
                     uint64_t& last_requests, int64_t& last_ns, const Histogram& so_far) {
  Progress p;
  p.elapsed_s = static_cast<double>(now - state.start_ns) / 1e9;
  for (const auto& w : workers) {
    p.requests += w->live_requests.load(std::memory_order_relaxed);
    p.errors += w->live_errors.load(std::memory_order_relaxed);
  }
  p.requests_per_s = static_cast<double>(p.requests - last_requests) * 1e9 / static_cast<double>(std::max<int64_t>(1, now - last_ns));
  last_requests = p.requests;
  last_ns = now;
  Histogram latest = so_far;
  std::vector<std::pair<std::string, uint64_t>> counts;
  {
    std::lock_guard lock(state.mutex);
    for (const auto& [index, open] : state.open_intervals) latest.merge(open.latency);
    counts.assign(state.live_endpoint_counts.begin(), state.live_endpoint_counts.end());
  }
  p.p99_us = latest.percentile(99);
  std::sort(counts.begin(), counts.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  if (counts.size() > 3) counts.resize(3);
  p.busiest = std::move(counts);
  return p;
}

void fill_endpoints(Report& report, const std::vector<std::unique_ptr<Worker>>& workers, const Snapshot& final_set,
                    int64_t start_ns) {
  std::map<std::string, MergedEndpoint> merged;
  for (const auto& w : workers) {
    for (const auto& [name, acc] : w->endpoints) {
      MergedEndpoint& m = merged[name];
      m.count += acc.count;
      m.violations += acc.violations;
      if (acc.violations && m.reason.empty()) m.reason = acc.reason;
      m.latency.merge(acc.latency);
      m.first_ns = std::min(m.first_ns, acc.first_ns);
      m.last_ns = std::max(m.last_ns, acc.last_ns);
    }
  }
  if (final_set.expected.known)
    for (const auto& name : final_set.expected.serving) merged.try_emplace(name);
  uint64_t unattributed = 0;
  if (auto it = merged.find("?"); it != merged.end()) {
    unattributed = it->second.count;
    merged.erase(it);
  }
  uint64_t attributed = 0;
  for (const auto& [name, m] : merged) attributed += m.count;
  for (auto& [name, m] : merged) {
    EndpointStats e;
    e.endpoint = name;
    e.count = m.count;
    e.share = attributed ? static_cast<double>(m.count) / static_cast<double>(attributed) : 0;
    if (final_set.expected.known) {
      const bool serving = final_set.serving.count(name) > 0;
      e.expected_share = serving ? 1.0 / static_cast<double>(final_set.serving.size()) : 0.0;
    }
    e.expected = m.violations == 0;
    e.latency = percentiles_of(m.latency);
    if (m.count) {
      e.first_at_us = (m.first_ns - start_ns) / 1000;
      e.last_at_us = (m.last_ns - start_ns) / 1000;
    }
    if (m.violations) report.violations.push_back({name, m.violations, m.reason});
    report.endpoints.push_back(std::move(e));
  }
  std::stable_sort(report.endpoints.begin(), report.endpoints.end(),
                   [](const EndpointStats& a, const EndpointStats& b) { return a.count > b.count; });
  std::vector<uint64_t> counts;
  if (final_set.expected.known && !final_set.serving.empty()) {
    for (const auto& e : report.endpoints)
      if (final_set.serving.count(e.endpoint)) counts.push_back(e.count);
    report.fairness = fairness_of(counts, "expected");
  } else {
    for (const auto& e : report.endpoints) counts.push_back(e.count);
    report.fairness = fairness_of(counts, "answered");
  }
  if (unattributed) {
    report.warnings.push_back(
        std::to_string(unattributed) + " answers named no endpoint (left out of the per-endpoint counts and fairness)" +
        (report.mode == Mode::connect ? ": connect mode learns endpoints only from conntrack, on the node that DNATs"
         : report.mode == Mode::http  ? ": no endpoint header in the responses (--endpoint-header)"
                                      : ""));
  }
}

void fill_totals(Report& report, const std::vector<std::unique_ptr<Worker>>& workers) {
  Histogram corrected(kTotalDigits), uncorrected(kTotalDigits);
  uint64_t misses = 0, waited = 0;
  int64_t max_lag = 0;
  for (const auto& w : workers) {
    corrected.merge(w->corrected);
    uncorrected.merge(w->uncorrected);
    report.answers += w->answers;
    report.errors.refused += w->errors.refused;
    report.errors.timeout += w->errors.timeout;
    report.errors.reset += w->errors.reset;
    report.errors.other += w->errors.other;
    report.errors.udp_lost += w->errors.udp_lost;
    for (const auto& s : w->samples)
      if (report.error_samples.size() < kMaxErrorSamples &&
          std::find(report.error_samples.begin(), report.error_samples.end(), s) == report.error_samples.end())
        report.error_samples.push_back(s);
    misses += w->schedule_misses;
    waited += w->waited_for_slot;
    max_lag = std::max(max_lag, w->max_lag_ns);
  }
  report.requests = report.answers + report.errors.total();
  report.latency = percentiles_of(corrected);
  report.latency_uncorrected = percentiles_of(uncorrected);
  report.latency_curve = curve_of(corrected);
  report.schedule_misses = misses;
  if (misses > 0 && misses * 100 >= std::max<uint64_t>(report.requests, 1)) {
    report.warnings.push_back("the generator missed its schedule for " + std::to_string(misses) + " requests (up to " +
                              std::to_string(max_lag / kMs) +
                              " ms late) with connections free: it is the bottleneck, add --threads or lower --rate");
  }
  if (waited > 0) {
    report.warnings.push_back(std::to_string(waited) + " requests waited for a free connection (all " +
                              std::to_string(report.concurrency) +
                              " busy): the corrected latency includes the wait; raise --concurrency if the server is "
                              "not the cause");
  }
}

}  // namespace

Report Engine::run(const std::function<void(const Progress&)>& on_progress) {
  State& state = *state_;
  Plan& plan = state.plan;
  plan.concurrency = std::max(1u, plan.concurrency);
  plan.threads = std::clamp(plan.threads, 1u, plan.concurrency);
  const int64_t duration_ns =
      plan.duration ? std::chrono::duration_cast<std::chrono::nanoseconds>(*plan.duration).count() : 0;
  state.interval_ns = plan.duration && duration_ns > 60'000 * kMs ? 1000 * kMs : 250 * kMs;

  std::vector<std::unique_ptr<Worker>> workers;
  for (unsigned i = 0; i < plan.threads; ++i) {
    const unsigned slots = plan.concurrency / plan.threads + (i < plan.concurrency % plan.threads ? 1 : 0);
    workers.push_back(std::make_unique<Worker>(state, i, slots, plan.rate ? *plan.rate / plan.threads : 0.0));
  }
  state.start_ns = now_ns();
  state.running = plan.threads;
  std::vector<std::thread> threads;
  for (auto& w : workers) {
    threads.emplace_back([&state, worker = w.get()] {
      worker->run();
      std::lock_guard lock(state.done_mutex);
      --state.running;
      state.done_cv.notify_all();
    });
  }

  std::vector<TimelinePoint> timeline;
  Histogram so_far(kEndpointDigits);
  uint64_t last_requests = 0;
  int64_t last_ns = state.start_ns;
  for (;;) {
    {
      std::unique_lock lock(state.done_mutex);
      if (state.done_cv.wait_for(lock, std::chrono::milliseconds(250), [&] { return state.running == 0; })) break;
    }
    const int64_t now = now_ns();
    close_intervals(state, now, false, timeline, so_far);
    if (on_progress) on_progress(progress_of(state, workers, now, last_requests, last_ns, so_far));
  }
  for (auto& t : threads) t.join();
  const int64_t end = now_ns();
  close_intervals(state, end, true, timeline, so_far);

  Report report;
  report.target = plan.target;
  report.address = format_address(plan.address);
  report.mode = plan.mode;
  report.open_loop = plan.rate.has_value();
  report.rate = plan.rate.value_or(0);
  report.concurrency = plan.concurrency;
  report.threads = plan.threads;
  report.duration_s = static_cast<double>(end - state.start_ns) / 1e9;
  report.timeline = std::move(timeline);
  fill_totals(report, workers);
  std::shared_ptr<const Snapshot> final_set;
  {
    std::lock_guard lock(state.mutex);
    final_set = state.snapshot;
  }
  fill_endpoints(report, workers, *final_set, state.start_ns);
  std::vector<const ChangeTracker*> trackers;
  for (const auto& w : workers) trackers.push_back(&w->tracker);
  report.changes = ChangeTracker::results(final_set->changes, trackers, state.start_ns);
  return report;
}

}  // namespace svcproxy::loadtest
