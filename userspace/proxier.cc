#include "userspace/proxier.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/intrusive/list.hpp>
#include <cerrno>
#include <cstring>
#include <future>
#include <map>
#include <set>
#include <thread>
#include <unordered_map>

#include "base/result.h"
#include "base/unique_fd.h"
#include "userspace/relay.h"

namespace svcproxy::userspace {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using asio::ip::udp;

struct Counters {
  std::atomic<uint64_t> accepted{0}, proxied{0}, active{0}, rejected_no_endpoints{0}, rejected_source_range{0},
      rejected_limit{0}, connect_failures{0}, retries{0}, ejections{0}, accept_backoffs{0}, drained{0}, spliced{0}, copied{0},
      udp_flows{0}, udp_active{0}, udp_in{0}, udp_out{0}, udp_dropped{0}, listeners{0}, listen_errors{0}, updates{0},
      last_update_us{0};
};

void bump(std::atomic<uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }

asio::ip::address to_asio(const model::IPAddress& ip) {
  if (ip.family == model::IPFamily::V4) {
    asio::ip::address_v4::bytes_type b;
    std::memcpy(b.data(), ip.bytes.data(), 4);
    return asio::ip::address_v4(b);
  }
  asio::ip::address_v6::bytes_type b;
  std::memcpy(b.data(), ip.bytes.data(), 16);
  return asio::ip::address_v6(b);
}

model::IPAddress from_asio(const asio::ip::address& a) {
  model::IPAddress ip;
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return from_asio(asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6()));
  if (a.is_v4()) {
    const auto b = a.to_v4().to_bytes();
    std::memcpy(ip.bytes.data(), b.data(), 4);
  } else {
    ip.family = model::IPFamily::V6;
    const auto b = a.to_v6().to_bytes();
    std::memcpy(ip.bytes.data(), b.data(), 16);
  }
  return ip;
}

// Resets (RST) rather than closes: the client learns at once that nothing
// answers, as with kube-proxy's REJECT.
void reset_close(tcp::socket& s) {
  boost::system::error_code ec;
  s.set_option(asio::socket_base::linger(true, 0), ec);
  s.close(ec);
}

bool is_fd_exhaustion(const boost::system::error_code& ec) {
  const int v = ec.value();
  return ec.category() == boost::system::system_category() &&
         (v == EMFILE || v == ENFILE || v == ENOBUFS || v == ENOMEM);
}

// A listening socket made in the control thread (so that a bind error is
// reported by update()) and handed to one worker.
base::Result<base::UniqueFd> open_listener(const ListenKey& key) {
  const bool v4 = key.ip.family == model::IPFamily::V4;
  const int type = key.protocol == model::Protocol::UDP ? SOCK_DGRAM : SOCK_STREAM;
  base::UniqueFd owned(::socket(v4 ? AF_INET : AF_INET6, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!owned) return base::Error{std::string("socket: ") + std::strerror(errno)};
  const int fd = owned.get();
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (v4) {
    setsockopt(fd, IPPROTO_IP, IP_FREEBIND, &one, sizeof one);
  } else {
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    setsockopt(fd, IPPROTO_IPV6, IPV6_FREEBIND, &one, sizeof one);
  }
  const model::SocketAddress address = model::to_sockaddr(key.ip, key.port);
  if (::bind(fd, address.get(), address.length) < 0) return base::Error{std::string("bind: ") + std::strerror(errno)};
  // Accepted sockets inherit TCP_NODELAY from the listener (one syscall
  // less per connection).
  if (type == SOCK_STREAM) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (type == SOCK_STREAM && ::listen(fd, 4096) < 0) return base::Error{std::string("listen: ") + std::strerror(errno)};
  return owned;
}

base::Result<base::UniqueFd> duplicate(const base::UniqueFd& fd) {
  base::UniqueFd copy(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!copy) return base::Error{std::string("dup: ") + std::strerror(errno)};
  return copy;
}

}  // namespace

// ====================================================================== Impl

class UserspaceProxier::Impl {
 public:
  struct Worker;
  class TcpListener;
  class TcpConnection;
  class UdpListener;
  class UdpFlow;

  explicit Impl(ProxierOptions options);
  ~Impl() { stop(); }
  std::vector<std::string> update(const std::vector<model::ServicePortState>& ports);
  void stop();
  ProxierStats stats() const;
  // On `w`'s thread: connections whose endpoint `next` no longer routes to
  // are reset at `deadline` unless it routes to them again by then.
  void schedule_drain(Worker& w, const Routes& next, Clock::time_point deadline);

  ProxierOptions opt;
  Counters c;
  std::atomic<std::shared_ptr<const Routes>> routes;
  RoutesBuilder builder;
  std::vector<std::unique_ptr<Worker>> workers;
  std::set<ListenKey> open;  // keys with a listener on every worker (control thread only)
  bool stopped = false;
  unsigned worker_count = 0;
};

// ---------------------------------------------------------------------- TCP

// Every TCP connection is linked into its worker's list (no allocation;
// unlinked by its destructor) so that an update can find the ones whose
// endpoint it removed.
using ConnectionHook = boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

class UserspaceProxier::Impl::TcpConnection : public std::enable_shared_from_this<TcpConnection>,
                                              public RelayOwner,
                                              public ConnectionHook {
 public:
  TcpConnection(Impl& impl, Worker& worker, ListenKey key, tcp::socket client, model::IPAddress client_ip);
  ~TcpConnection() override { impl_.c.active.fetch_sub(1, std::memory_order_relaxed); }

  void start() {
    read_first();
    attempt();
  }

  // Its endpoint (chosen, connecting or connected) is not one `routes`
  // sends this listener's connections to.
  bool endpoint_gone(const Routes& routes) const {
    if (!backend_ || closed_) return false;
    const Route* route = routes.find(key_);
    return !route || !route->table->find(backend_->address);
  }
  bool draining = false;  // in a pending drain batch
  // The drain deadline passed: reset both sides unless the endpoint is
  // usable again.
  void drain_expired(const Routes& routes) {
    draining = false;
    if (!endpoint_gone(routes)) return;
    bump(impl_.c.drained);
    closed_ = true;
    timer_.cancel();
    if (relay_) return relay_->abort();
    reset_close(client_);
    reset_close(upstream_);
  }

 private:
  void attempt() {
    if (closed_) return;
    const auto routes = impl_.routes.load(std::memory_order_acquire);
    const Route* route = routes ? routes->find(key_) : nullptr;
    const Backend* backend =
        route ? route->table->pick(client_ip_, Clock::now(), /*reset_affinity=*/attempts_ > 0) : nullptr;
    if (!backend) {
      bump(impl_.c.rejected_no_endpoints);
      reset_close(client_);
      return;
    }
    table_ = route->table;
    backend_ = backend;
    boost::system::error_code ec;
    upstream_ = tcp::socket(client_.get_executor());
    upstream_.open(backend->address.ip.family == model::IPFamily::V4 ? tcp::v4() : tcp::v6(), ec);
    if (ec) {
      // Out of descriptors: the client waits (as those still in the
      // backlog do) while connections finish and free some, up to ~2 s.
      if (is_fd_exhaustion(ec) && ++fd_waits_ <= 20) {
        timer_.expires_after(impl_.opt.accept_backoff);
        timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
          if (!e) self->attempt();
        });
        return;
      }
      bump(impl_.c.rejected_no_endpoints);
      reset_close(client_);
      return;
    }
    if (attempts_ > 0) bump(impl_.c.retries);
    const auto timeout = impl_.opt.connect_timeout * (1u << std::min(attempts_, 8u));
    ++attempts_;
    timed_out_ = false;
    // connect() by hand: Asio's async_connect adds a poll() per connection
    // to what getsockopt(SO_ERROR) tells.
    const tcp::endpoint to(to_asio(backend->address.ip), backend->address.port);
    const int fd = upstream_.native_handle();
    upstream_.native_non_blocking(true, ec);
    if (!ec && ::connect(fd, to.data(), static_cast<socklen_t>(to.size())) != 0 && errno != EINPROGRESS)
      ec.assign(errno, boost::system::system_category());
    // The client's first bytes, sent at once: a connect to a local
    // endpoint (loopback, a bridge) has usually completed inside connect(),
    // and then the send proves it without a wait for writability (an
    // epoll_ctl MOD, a wakeup and getsockopt(SO_ERROR) saved). A refusal
    // shows here too, with nothing sent: the next attempt resends.
    if (!ec && first_.size() > first_sent_) {
      const ssize_t n = ::send(fd, first_.data() + first_sent_, first_.size() - first_sent_, MSG_NOSIGNAL);
      if (n > 0) {
        first_sent_ += static_cast<size_t>(n);
        return connected({});
      }
      if (errno != EAGAIN && errno != EINTR) ec.assign(errno, boost::system::system_category());
    }
    if (ec) {
      asio::post(client_.get_executor(), [self = shared_from_this(), ec] { self->connected(ec); });
      return;
    }
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
      if (e) return;
      self->timed_out_ = true;
      boost::system::error_code ignored;
      self->upstream_.close(ignored);
    });
    upstream_.async_wait(tcp::socket::wait_write, [self = shared_from_this()](boost::system::error_code e) {
      if (!e && self->upstream_.is_open()) {
        int error = 0;
        socklen_t len = sizeof error;
        if (::getsockopt(self->upstream_.native_handle(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
        if (error) e.assign(error, boost::system::system_category());
      }
      self->connected(e);
    });
  }

  void connected(const boost::system::error_code& ec) {
    timer_.cancel();
    if (closed_) return;
    if (ec || timed_out_) {
      bump(impl_.c.connect_failures);
      // Refused, unreachable or silent: skip it for a while (passive
      // ejection); count only the transition into back-off.
      const auto now = Clock::now();
      auto& health = *backend_->health;
      if (!health.ejected(now)) {
        bump(impl_.c.ejections);
        health.ejections.fetch_add(1, std::memory_order_relaxed);
        if (impl_.opt.on_event)
          impl_.opt.on_event("endpoint ejected endpoint=" + backend_->address.str() + " service=\"" + table_->name +
                             "\" error=\"" + (timed_out_ ? std::string("connect timeout") : ec.message()) +
                             "\" backoff_ms=" + std::to_string(impl_.opt.ejection_backoff.count()));
      }
      health.ejected_until_ns.store((now + impl_.opt.ejection_backoff).time_since_epoch().count(),
                                    std::memory_order_relaxed);
      boost::system::error_code ignored;
      upstream_.close(ignored);
      if (attempts_ < impl_.opt.connect_attempts) return attempt();
      bump(impl_.c.rejected_no_endpoints);
      reset_close(client_);
      return;
    }
    bump(impl_.c.proxied);
    boost::system::error_code ignored;
    upstream_.set_option(tcp::no_delay(true), ignored);  // the client's is inherited from the listener
    relay_ = std::make_unique<Relay>(*this, client_, upstream_, impl_.opt.buffer_bytes, impl_.opt.use_splice,
                                     impl_.opt.half_close_timeout, BulkCounters{&impl_.c.spliced, &impl_.c.copied});
    relay_->start(std::move(first_), first_sent_);
  }

  // Reads what the client already sent (usually all of a short request:
  // it arrives with the handshake), to be sent right after connect().
  // Nothing there yet, or EOF, or an error: the relay finds out itself.
  void read_first() {
    first_.resize(kFirstChunk);
    const ssize_t n = ::recv(client_.native_handle(), first_.data(), first_.size(), 0);
    first_.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  static constexpr size_t kFirstChunk = 16 * 1024;

  std::shared_ptr<void> keep_alive() override { return shared_from_this(); }

  Impl& impl_;
  ListenKey key_;
  tcp::socket client_;
  tcp::socket upstream_;
  asio::steady_timer timer_;
  model::IPAddress client_ip_;
  std::shared_ptr<const PortTable> table_;  // keeps backend_ alive
  const Backend* backend_ = nullptr;
  unsigned attempts_ = 0;
  unsigned fd_waits_ = 0;
  bool timed_out_ = false;
  bool closed_ = false;  // reset by the drain timeout
  std::unique_ptr<Relay> relay_;
  std::vector<char> first_;  // the client's first bytes (see read_first)
  size_t first_sent_ = 0;    // ... of which sent upstream
};

struct UserspaceProxier::Impl::Worker {
  // Declared first, destroyed last: the io_context's destructor destroys
  // pending handlers and with them connections, which unlink themselves.
  boost::intrusive::list<TcpConnection, boost::intrusive::constant_time_size<false>> connections;
  asio::io_context ctx{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard{ctx.get_executor()};
  std::thread thread;
  // Touched only on this worker's thread.
  std::map<ListenKey, std::shared_ptr<TcpListener>> tcp;
  std::map<ListenKey, std::shared_ptr<UdpListener>> udp;
};

UserspaceProxier::Impl::TcpConnection::TcpConnection(Impl& impl, Worker& worker, ListenKey key, tcp::socket client,
                                                     model::IPAddress client_ip)
    : impl_(impl),
      key_(std::move(key)),
      client_(std::move(client)),
      upstream_(client_.get_executor()),
      timer_(client_.get_executor()),
      client_ip_(client_ip) {
  bump(impl_.c.active);
  worker.connections.push_back(*this);
}

class UserspaceProxier::Impl::TcpListener : public std::enable_shared_from_this<TcpListener> {
 public:
  TcpListener(Impl& impl, Worker& worker, ListenKey key, int fd)
      : impl_(impl),
        worker_(worker),
        key_(std::move(key)),
        acceptor_(worker.ctx, key_.ip.family == model::IPFamily::V4 ? tcp::v4() : tcp::v6(), fd),
        backoff_(worker.ctx) {}

  void start() {
    // The peer's address comes with accept() itself (no getpeername).
    acceptor_.async_accept(peer_, [self = shared_from_this()](const boost::system::error_code& ec, tcp::socket s) {
      self->accepted(ec, std::move(s));
    });
  }
  void close() {
    boost::system::error_code ignored;
    closed_ = true;
    backoff_.cancel();
    acceptor_.close(ignored);
  }

 private:
  void accepted(const boost::system::error_code& ec, tcp::socket s) {
    if (closed_ || ec == asio::error::operation_aborted) return;
    if (ec) {
      if (is_fd_exhaustion(ec)) {
        // Out of descriptors: stop accepting for a moment (the backlog
        // holds the clients) and keep serving what is open.
        bump(impl_.c.accept_backoffs);
        if (!paused_ && impl_.opt.on_event)
          impl_.opt.on_event("accept paused listener=" + key_.str() + " error=\"" + ec.message() +
                             "\" retry_ms=" + std::to_string(impl_.opt.accept_backoff.count()));
        paused_ = true;
        backoff_.expires_after(impl_.opt.accept_backoff);
        backoff_.async_wait([self = shared_from_this()](const boost::system::error_code& e) {
          if (!e && !self->closed_) self->start();
        });
        return;
      }
      return start();
    }
    bump(impl_.c.accepted);
    if (paused_ && impl_.opt.on_event) impl_.opt.on_event("accept resumed listener=" + key_.str());
    paused_ = false;
    boost::system::error_code rec;
    const auto client_ip = from_asio(peer_.address());
    if (impl_.opt.max_connections && impl_.c.active.load(std::memory_order_relaxed) >= impl_.opt.max_connections) {
      bump(impl_.c.rejected_limit);
      reset_close(s);
      return start();
    }
    const auto routes = impl_.routes.load(std::memory_order_acquire);
    const Route* route = routes ? routes->find(key_) : nullptr;
    if (route && !route->allows(client_ip)) {
      bump(impl_.c.rejected_source_range);
      reset_close(s);
      return start();
    }
    s.native_non_blocking(true, rec);
    std::make_shared<TcpConnection>(impl_, worker_, key_, std::move(s), client_ip)->start();
    start();
  }

  Impl& impl_;
  Worker& worker_;
  ListenKey key_;
  tcp::acceptor acceptor_;
  asio::steady_timer backoff_;
  tcp::endpoint peer_;  // filled in by the pending accept
  bool closed_ = false;
  bool paused_ = false;  // the last accept() failed for lack of descriptors
};

// ---------------------------------------------------------------------- UDP

class UserspaceProxier::Impl::UdpFlow : public std::enable_shared_from_this<UdpFlow> {
 public:
  UdpFlow(Impl& impl, std::shared_ptr<UdpListener> listener, udp::endpoint client,
          std::shared_ptr<const PortTable> table, model::EndpointAddress backend)
      : impl_(impl),
        listener_(std::move(listener)),
        client_(client),
        upstream_(listener_socket_executor()),
        timer_(upstream_.get_executor()),
        table_(std::move(table)),
        backend_(backend) {}
  ~UdpFlow() { impl_.c.udp_active.fetch_sub(1, std::memory_order_relaxed); }

  // false: no socket (descriptors exhausted).
  bool open() {
    boost::system::error_code ec;
    const udp::endpoint to(to_asio(backend_.ip), backend_.port);
    upstream_.open(to.protocol(), ec);
    if (!ec) upstream_.connect(to, ec);
    if (!ec) upstream_.native_non_blocking(true, ec);
    if (ec) return false;
    bump(impl_.c.udp_flows);
    bump(impl_.c.udp_active);
    last_ = Clock::now();
    arm(impl_.opt.udp_timeout);
    receive();
    return true;
  }
  void send(const char* data, size_t n) {
    last_ = Clock::now();
    boost::system::error_code ec;
    upstream_.send(asio::buffer(data, n), 0, ec);
    bump(ec ? impl_.c.udp_dropped : impl_.c.udp_in);
  }
  void close() {
    boost::system::error_code ignored;
    timer_.cancel();
    upstream_.close(ignored);
  }
  const std::shared_ptr<const PortTable>& table() const { return table_; }
  void set_table(std::shared_ptr<const PortTable> t) { table_ = std::move(t); }
  const model::EndpointAddress& backend() const { return backend_; }

 private:
  asio::any_io_executor listener_socket_executor();
  void arm(Clock::duration after) {
    timer_.expires_after(after);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      const auto idle = Clock::now() - self->last_;
      if (idle >= self->impl_.opt.udp_timeout) return self->expire();
      self->arm(self->impl_.opt.udp_timeout - idle);
    });
  }
  void expire();
  void receive() {
    upstream_.async_receive(asio::buffer(buf_), [self = shared_from_this()](const boost::system::error_code& ec,
                                                                            size_t n) {
      if (ec == asio::error::operation_aborted || !self->upstream_.is_open()) return;
      if (!ec) self->reply(n);
      // ECONNREFUSED (ICMP port unreachable from the endpoint): keep the
      // flow; the client's next datagram tries again.
      self->receive();
    });
  }
  void reply(size_t n);

  Impl& impl_;
  std::shared_ptr<UdpListener> listener_;
  udp::endpoint client_;
  udp::socket upstream_;
  asio::steady_timer timer_;
  std::shared_ptr<const PortTable> table_;
  model::EndpointAddress backend_;
  Clock::time_point last_;
  std::array<char, 65536> buf_;
};

class UserspaceProxier::Impl::UdpListener : public std::enable_shared_from_this<UdpListener> {
 public:
  UdpListener(Impl& impl, asio::io_context& ctx, ListenKey key, int fd)
      : impl_(impl), key_(std::move(key)), socket_(ctx, key_.ip.family == model::IPFamily::V4 ? udp::v4() : udp::v6(), fd) {}

  void start() {
    socket_.async_receive_from(asio::buffer(buf_), sender_,
                               [self = shared_from_this()](const boost::system::error_code& ec, size_t n) {
                                 if (ec == asio::error::operation_aborted || self->closed_) return;
                                 if (!ec) self->datagram(n);
                                 self->start();
                               });
  }
  void close() {
    closed_ = true;
    boost::system::error_code ignored;
    socket_.close(ignored);
    for (auto& [_, flow] : flows_) flow->close();
    flows_.clear();
  }
  void forget(const udp::endpoint& client, const UdpFlow* flow) {
    auto it = flows_.find(client);
    if (it != flows_.end() && it->second.get() == flow) flows_.erase(it);
  }
  udp::socket& socket() { return socket_; }

 private:
  void datagram(size_t n) {
    const auto routes = impl_.routes.load(std::memory_order_acquire);
    const Route* route = routes ? routes->find(key_) : nullptr;
    auto it = flows_.find(sender_);
    if (it != flows_.end()) {
      auto& flow = it->second;
      // The flow's endpoint may have been removed since: then it is closed
      // and the datagram starts a new flow (no new traffic to a removed
      // endpoint once update() returned).
      if (route && route->table == flow->table()) return flow->send(buf_.data(), n);
      if (route && route->table->find(flow->backend())) {
        flow->set_table(route->table);
        return flow->send(buf_.data(), n);
      }
      flow->close();
      flows_.erase(it);
    }
    const auto client_ip = from_asio(sender_.address());
    const Backend* backend = route && route->allows(client_ip) ? route->table->pick(client_ip, Clock::now()) : nullptr;
    if (!backend) {
      bump(impl_.c.udp_dropped);
      return;
    }
    auto flow = std::make_shared<UdpFlow>(impl_, shared_from_this(), sender_, route->table, backend->address);
    if (!flow->open()) {
      bump(impl_.c.udp_dropped);
      return;
    }
    flows_[sender_] = flow;
    flow->send(buf_.data(), n);
  }

  Impl& impl_;
  ListenKey key_;
  udp::socket socket_;
  udp::endpoint sender_;
  std::array<char, 65536> buf_;
  std::map<udp::endpoint, std::shared_ptr<UdpFlow>> flows_;
  bool closed_ = false;
};

asio::any_io_executor UserspaceProxier::Impl::UdpFlow::listener_socket_executor() {
  return listener_->socket().get_executor();
}

void UserspaceProxier::Impl::UdpFlow::expire() {
  close();
  listener_->forget(client_, this);
}

void UserspaceProxier::Impl::UdpFlow::reply(size_t n) {
  last_ = Clock::now();
  boost::system::error_code ec;
  // From the listening socket: the client sees the answer come from the
  // address it sent to.
  listener_->socket().send_to(asio::buffer(buf_.data(), n), client_, 0, ec);
  bump(ec ? impl_.c.udp_dropped : impl_.c.udp_out);
}

// ---------------------------------------------------------------------- Impl

UserspaceProxier::Impl::Impl(ProxierOptions options) : opt(std::move(options)) {
  unsigned n = opt.workers ? opt.workers : std::max(1u, std::thread::hardware_concurrency());
  worker_count = n;
  routes.store(std::make_shared<const Routes>());
  for (unsigned i = 0; i < n; ++i) {
    auto w = std::make_unique<Worker>();
    auto* ctx = &w->ctx;
    w->thread = std::thread([ctx] {
      // splice(2) into a socket whose peer is gone raises SIGPIPE (there is
      // no MSG_NOSIGNAL for it); blocked on the workers, the call just
      // fails with EPIPE and the relay resets.
      sigset_t pipe;
      sigemptyset(&pipe);
      sigaddset(&pipe, SIGPIPE);
      pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
      for (;;) {
        try {
          ctx->run();
          return;
        } catch (const std::exception&) {
          // A handler threw (allocation failure): keep serving the rest.
        }
      }
    });
    workers.push_back(std::move(w));
  }
}

std::vector<std::string> UserspaceProxier::Impl::update(const std::vector<model::ServicePortState>& ports) {
  std::vector<std::string> warnings;
  if (stopped) return warnings;
  const auto start = Clock::now();
  auto next = builder.build(ports, opt.nodeports, &warnings);

  // Publish first: a listener opened below already finds its route.
  routes.store(next, std::memory_order_release);

  // A port with no endpoints gets no socket: the kernel then refuses a
  // TCP SYN (RST) and answers a UDP datagram with ICMP port unreachable,
  // as kube-proxy's REJECT does; the client's connect()/recv() fails with
  // ECONNREFUSED at once. (A listener that accepted and then reset would
  // show the client a connection that breaks, not a refusal.) Closing a
  // TCP listener touches only its backlog: accepted connections are
  // sockets of their own. Reopening binds anew beside them (and beside
  // closed ones in TIME_WAIT): SO_REUSEADDR, set here and inherited by
  // them, allows that.
  std::set<ListenKey> wanted;
  for (const auto& [key, route] : next->by_listener)
    if (!route.table->backends.empty()) wanted.insert(key);
  for (const auto& key : wanted) {
    if (open.count(key)) continue;
    std::vector<base::UniqueFd> fds;
    std::string error;
    // TCP: one listening socket shared by every worker (each holds a dup
    // of it in its own reactor), so whichever worker is running takes the
    // next connection; with one SO_REUSEPORT socket per worker the kernel
    // would queue it behind a worker that may be preempted. UDP: one
    // SO_REUSEPORT socket per worker (a flow is a 4-tuple the kernel
    // hashes to the same socket every time).
    const bool shared = key.protocol == model::Protocol::TCP;
    for (size_t i = 0; i < workers.size(); ++i) {
      auto fd = shared && i > 0 ? duplicate(fds[0]) : open_listener(key);
      if (!fd) {
        error = fd.error();
        break;
      }
      fds.push_back(std::move(fd).value());
    }
    if (fds.size() != workers.size()) {
      fds.clear();
      bump(c.listen_errors);
      warnings.push_back("userspace: cannot listen on " + key.str() + ": " + error + " (retried on the next update)");
      continue;
    }
    for (size_t i = 0; i < workers.size(); ++i) {
      Worker* w = workers[i].get();
      asio::post(w->ctx, [this, w, key, fd = fds[i].release()] {
        if (key.protocol == model::Protocol::UDP) {
          auto l = std::make_shared<UdpListener>(*this, w->ctx, key, fd);
          w->udp[key] = l;
          l->start();
        } else {
          auto l = std::make_shared<TcpListener>(*this, *w, key, fd);
          w->tcp[key] = l;
          l->start();
        }
      });
    }
    open.insert(key);
  }
  // Each worker closes its descriptor of the listener in a handler queued
  // before the barrier below, so the socket itself (its last descriptor)
  // is closed when update() returns: a later update that opens the key
  // again never finds the old one still listening (with SO_REUSEPORT the
  // two would share the port's connections).
  for (auto it = open.begin(); it != open.end();) {
    if (wanted.count(*it)) {
      ++it;
      continue;
    }
    for (auto& w : workers) {
      asio::post(w->ctx, [w = w.get(), key = *it] {
        if (auto t = w->tcp.find(key); t != w->tcp.end()) {
          t->second->close();
          w->tcp.erase(t);
        }
        if (auto u = w->udp.find(key); u != w->udp.end()) {
          u->second->close();
          w->udp.erase(u);
        }
      });
    }
    it = open.erase(it);
  }

  // Barrier: a handler that loaded the previous routes has finished with it
  // (picking an endpoint and issuing connect() happen in one handler) once
  // every worker ran this. Connections to endpoints gone are found here too.
  std::vector<std::future<void>> done;
  const bool drain = opt.drain_timeout.count() > 0;
  for (auto& w : workers) {
    auto p = std::make_shared<std::promise<void>>();
    done.push_back(p->get_future());
    asio::post(w->ctx, [this, p, w = w.get(), next = drain ? next : nullptr, deadline = start + opt.drain_timeout] {
      if (next) schedule_drain(*w, *next, deadline);
      p->set_value();
    });
  }
  for (auto& f : done) f.wait();
  c.listeners.store(open.size() * workers.size(), std::memory_order_relaxed);
  bump(c.updates);
  c.last_update_us.store(
      static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count()),
      std::memory_order_relaxed);
  return warnings;
}

void UserspaceProxier::Impl::schedule_drain(Worker& w, const Routes& next, Clock::time_point deadline) {
  std::vector<std::weak_ptr<TcpConnection>> batch;
  for (auto& conn : w.connections) {
    if (conn.draining || !conn.endpoint_gone(next)) continue;
    conn.draining = true;
    batch.push_back(conn.weak_from_this());
  }
  if (batch.empty()) return;
  auto timer = std::make_shared<asio::steady_timer>(w.ctx, deadline);
  timer->async_wait([this, timer, batch = std::move(batch)](const boost::system::error_code& ec) {
    if (ec) return;
    // Judged by the routes of now: an endpoint that came back is kept.
    const auto current = routes.load(std::memory_order_acquire);
    for (const auto& weak : batch)
      if (auto conn = weak.lock()) conn->drain_expired(*current);
  });
}

void UserspaceProxier::Impl::stop() {
  if (stopped) return;
  stopped = true;
  for (auto& w : workers) {
    w->guard.reset();
    w->ctx.stop();
  }
  for (auto& w : workers)
    if (w->thread.joinable()) w->thread.join();
  // The threads are gone: close listeners (and UDP flows, which point back
  // at their listener) from here; the contexts' destructors then destroy
  // every pending handler and with it every connection.
  for (auto& w : workers) {
    for (auto& [_, l] : w->tcp) l->close();
    for (auto& [_, l] : w->udp) l->close();
    w->tcp.clear();
    w->udp.clear();
  }
  workers.clear();
  open.clear();
  c.listeners.store(0);
}

ProxierStats UserspaceProxier::Impl::stats() const {
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  ProxierStats s;
  s.accepted = get(c.accepted);
  s.proxied = get(c.proxied);
  s.active = get(c.active);
  s.rejected_no_endpoints = get(c.rejected_no_endpoints);
  s.rejected_source_range = get(c.rejected_source_range);
  s.rejected_limit = get(c.rejected_limit);
  s.connect_failures = get(c.connect_failures);
  s.retries = get(c.retries);
  s.ejections = get(c.ejections);
  s.accept_backoffs = get(c.accept_backoffs);
  s.drained = get(c.drained);
  s.spliced_connections = get(c.spliced);
  s.copied_connections = get(c.copied);
  s.udp_flows = get(c.udp_flows);
  s.udp_active_flows = get(c.udp_active);
  s.udp_datagrams_in = get(c.udp_in);
  s.udp_datagrams_out = get(c.udp_out);
  s.udp_dropped = get(c.udp_dropped);
  s.listeners = get(c.listeners);
  s.listen_errors = get(c.listen_errors);
  s.updates = get(c.updates);
  s.last_update_duration = std::chrono::microseconds(get(c.last_update_us));
  return s;
}

// ====================================================================== facade

UserspaceProxier::UserspaceProxier(ProxierOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
UserspaceProxier::~UserspaceProxier() { stop(); }
std::vector<std::string> UserspaceProxier::update(const std::vector<model::ServicePortState>& ports) {
  return impl_->update(ports);
}
void UserspaceProxier::stop() { impl_->stop(); }
ProxierStats UserspaceProxier::stats() const {
  return impl_->stats();
}
unsigned UserspaceProxier::workers() const { return impl_->worker_count; }

}  // namespace svcproxy::userspace
