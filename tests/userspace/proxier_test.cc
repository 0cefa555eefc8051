// The userspace proxier with real sockets on loopback (127.0.0.0/8 is all
// local, so no interface and no root are needed): round robin, retry past a
// dead endpoint with ejection, RST when nothing answers, snapshot swap,
// source ranges, connection limit, UDP request/response, large transfers
// through splice and copy.
#include "userspace/proxier.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/ip.h"

namespace svcproxy::userspace {
namespace {

using model::IPAddress;

// A tiny TCP (and UDP) backend on 127.0.0.1:<ephemeral>: answers each
// connection with its id and then echoes until EOF.
class Backend {
 public:
  explicit Backend(std::string id, bool udp = false) : id_(std::move(id)), udp_(udp) {
    fd_ = ::socket(AF_INET, udp ? SOCK_DGRAM : SOCK_STREAM, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
    socklen_t len = sizeof sin;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&sin), &len);
    port_ = ntohs(sin.sin_port);
    if (!udp) ::listen(fd_, 512);
    thread_ = std::thread([this] { serve(); });
  }
  ~Backend() { stop(); }
  void stop() {
    if (stopped_.exchange(true)) return;
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }
  int served() const { return served_; }

 private:
  void serve() {
    while (!stopped_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      if (udp_) {
        char buf[2048];
        sockaddr_storage from{};
        socklen_t len = sizeof from;
        const ssize_t n = ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n < 0) continue;
        ++served_;
        std::string reply = id_ + ":" + std::string(buf, static_cast<size_t>(n));
        ::sendto(fd_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
        continue;
      }
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      ++served_;
      std::thread([c, id = id_] {
        std::string hello = id + "\n";
        ::send(c, hello.data(), hello.size(), MSG_NOSIGNAL);
        char buf[65536];
        for (ssize_t n; (n = ::recv(c, buf, sizeof buf, 0)) > 0;)
          if (::send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
        ::close(c);
      }).detach();
    }
  }

  std::string id_;
  bool udp_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> served_{0};
  std::atomic<bool> stopped_{false};
  std::thread thread_;
};

using test_support::ip;

// Free port on 127.0.0.1 (for a "dead" endpoint and for VIP ports).
uint16_t free_port(int type = SOCK_STREAM) {
  const int fd = ::socket(AF_INET, type, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin);
  socklen_t len = sizeof sin;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  ::close(fd);
  return ntohs(sin.sin_port);
}

sockaddr_in ipv4_address(const char* ip, uint16_t port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  inet_pton(AF_INET, ip, &sin.sin_addr);
  return sin;
}

// A TCP socket connected to ip:port, or -1 (errno set).
int connect_to(const char* ip, uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  const sockaddr_in to = ipv4_address(ip, port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) < 0) {
    const int error = errno;
    ::close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

// A connected client socket to vip:port whose backend id line was read.
int hold(const char* vip, uint16_t port, std::string* id) {
  const int fd = connect_to(vip, port);
  if (fd < 0) return -1;
  char c;
  for (ssize_t n; (n = ::recv(fd, &c, 1, 0)) == 1 && c != '\n';) *id += c;
  return fd;
}

// A listening TCP socket on 127.0.0.1 (an endpoint the test drives by
// hand); its port in *port.
int listen_loopback(uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sin = ipv4_address("127.0.0.1", 0);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) return -1;
  socklen_t len = sizeof sin;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  ::listen(fd, 16);
  *port = ntohs(sin.sin_port);
  return fd;
}

// Polls `done` (a state the workers change on their own threads, just
// after the event the test saw) every 10 ms until it holds or `within`
// passes; returns its last value.
template <typename Done>
bool wait_until(Done done, std::chrono::milliseconds within = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

model::ServicePortState service(const char* vip, uint16_t port, std::vector<uint16_t> backend_ports,
                                model::Protocol proto = model::Protocol::TCP) {
  model::ServicePortState p;
  p.name.service = {"default", "web"};
  p.name.protocol = proto;
  p.port = port;
  p.cluster_ip = ip(vip);
  for (auto bp : backend_ports) p.cluster_endpoints.push_back({ip("127.0.0.1"), bp});
  std::sort(p.cluster_endpoints.begin(), p.cluster_endpoints.end());
  return p;
}

struct Reply {
  std::string first_line;  // the backend's id, empty on failure
  int error = 0;           // errno of the failure
};

// Connects to vip:port, reads the backend's id line.
Reply ask(const char* vip, uint16_t port, const std::string& payload = "", std::string* echoed = nullptr,
          const char* bind_ip = nullptr) {
  Reply r;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (bind_ip) {
    const sockaddr_in b = ipv4_address(bind_ip, 0);
    ::bind(fd, reinterpret_cast<const sockaddr*>(&b), sizeof b);
  }
  const sockaddr_in to = ipv4_address(vip, port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) < 0) {
    r.error = errno;
    ::close(fd);
    return r;
  }
  std::string got;
  char c;
  for (ssize_t n; (n = ::recv(fd, &c, 1, 0)) == 1 && c != '\n';) got += c;
  if (got.empty()) r.error = errno ? errno : EPIPE;
  r.first_line = got;
  if (!payload.empty() && echoed) {
    std::thread writer([&] {
      size_t off = 0;
      while (off < payload.size()) {
        const ssize_t n = ::send(fd, payload.data() + off, payload.size() - off, MSG_NOSIGNAL);
        if (n <= 0) break;
        off += static_cast<size_t>(n);
      }
      ::shutdown(fd, SHUT_WR);
    });
    char buf[65536];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) echoed->append(buf, static_cast<size_t>(n));
    writer.join();
  }
  ::close(fd);
  return r;
}

ProxierOptions options() {
  ProxierOptions o;
  o.workers = 2;
  return o;
}

TEST(UserspaceProxier, RoundRobinSpreadsEvenly) {
  Backend a("a"), b("b"), c("c");
  UserspaceProxier proxier(options());
  const uint16_t vport = free_port();
  EXPECT_TRUE(proxier.update({service("127.0.0.10", vport, {a.port(), b.port(), c.port()})}).empty());
  std::map<std::string, int> seen;
  for (int i = 0; i < 300; ++i) seen[ask("127.0.0.10", vport).first_line]++;
  EXPECT_EQ(seen["a"], 100);
  EXPECT_EQ(seen["b"], 100);
  EXPECT_EQ(seen["c"], 100);
  EXPECT_EQ(proxier.stats().proxied, 300u);
}

TEST(UserspaceProxier, RefusingEndpointIsRetriedPastAndEjected) {
  Backend a("a"), b("b");
  const uint16_t dead = free_port();
  UserspaceProxier proxier(options());
  const uint16_t vport = free_port();
  proxier.update({service("127.0.0.10", vport, {a.port(), b.port(), dead})});
  std::map<std::string, int> seen;
  for (int i = 0; i < 60; ++i) seen[ask("127.0.0.10", vport).first_line]++;
  EXPECT_EQ(seen[""], 0) << "a client saw a failure";
  EXPECT_EQ(seen["a"] + seen["b"], 60);
  const auto s = proxier.stats();
  EXPECT_EQ(s.ejections, 1u);  // refused once, then skipped during the back-off
  EXPECT_EQ(s.connect_failures, 1u);
  EXPECT_EQ(s.retries, 1u);
}

// A client that talks first: its first bytes are usually read with the
// accept and sent right after connect(); an endpoint that refuses must not
// swallow them (the next attempt sends them again).
TEST(UserspaceProxier, ClientFirstBytesReachTheEndpointPastARefusingOne) {
  Backend a("a");
  const uint16_t dead = free_port();
  auto o = options();
  o.ejection_backoff = std::chrono::milliseconds(0);  // every pick of `dead` is refused and retried
  UserspaceProxier proxier(o);
  const uint16_t vport = free_port();
  proxier.update({service("127.0.0.10", vport, {a.port(), dead})});
  for (int i = 0; i < 20; ++i) {
    const int fd = connect_to("127.0.0.10", vport);
    ASSERT_GE(fd, 0);
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const std::string request = "request " + std::to_string(i) + "\n";
    ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
    const std::string want = "a\n" + request;  // the backend's id, then the echo
    std::string got;
    char buf[256];
    while (got.size() < want.size()) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
    EXPECT_EQ(got, want);
    ::close(fd);
  }
  const auto s = proxier.stats();
  EXPECT_EQ(s.proxied, 20u);
  EXPECT_GE(s.retries, 1u);  // round robin sent some to `dead` first
  EXPECT_EQ(s.retries, s.connect_failures);
}

// A TCP port without endpoints has no listener, so the kernel refuses the
// SYN (ECONNREFUSED at once, as kube-proxy's REJECT and our nftables mode);
// the listener opens with the first endpoint and closes with the last,
// and a connection established meanwhile is not touched by either.
TEST(UserspaceProxier, TcpWithoutEndpointsIsRefusedAndEstablishedConnectionsSurvive) {
  Backend a("a");
  UserspaceProxier proxier(options());
  const uint16_t vport = free_port();
  auto refused_at_once = [&] {
    const auto start = std::chrono::steady_clock::now();
    const int fd = connect_to("127.0.0.10", vport);
    const int error = errno;
    if (fd >= 0) ::close(fd);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
    return fd < 0 && error == ECONNREFUSED;
  };
  proxier.update({service("127.0.0.10", vport, {})});
  EXPECT_TRUE(refused_at_once()) << "no endpoints: the SYN is refused";
  EXPECT_EQ(proxier.stats().listeners, 0u);

  proxier.update({service("127.0.0.10", vport, {a.port()})});
  std::string id;
  const int held = hold("127.0.0.10", vport, &id);
  ASSERT_GE(held, 0);
  EXPECT_EQ(id, "a");

  proxier.update({service("127.0.0.10", vport, {})});
  EXPECT_TRUE(refused_at_once()) << "the last endpoint left: refused again";
  ASSERT_EQ(::send(held, "ping", 4, 0), 4);  // ... the established one still relays
  char buf[4];
  ASSERT_EQ(::recv(held, buf, 4, MSG_WAITALL), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");

  // Back again: the listener binds VIP:port anew while the held connection's
  // socket still has that local address (SO_REUSEADDR lets it).
  proxier.update({service("127.0.0.10", vport, {a.port()})});
  EXPECT_EQ(ask("127.0.0.10", vport).first_line, "a");
  ASSERT_EQ(::send(held, "pong", 4, 0), 4);
  ASSERT_EQ(::recv(held, buf, 4, MSG_WAITALL), 4);
  EXPECT_EQ(std::string(buf, 4), "pong");
  ::close(held);
  const auto s = proxier.stats();
  EXPECT_EQ(s.accepted, 2u);  // refused clients never reached the proxy
  EXPECT_EQ(s.rejected_no_endpoints, 0u);
}

TEST(UserspaceProxier, EveryEndpointDeadResetsAfterFourAttempts) {
  UserspaceProxier proxier(options());
  const uint16_t vport = free_port();
  proxier.update({service("127.0.0.10", vport, {free_port(), free_port()})});
  const auto r = ask("127.0.0.10", vport);
  EXPECT_EQ(r.error, ECONNRESET);
  EXPECT_EQ(proxier.stats().connect_failures, 4u);
}

TEST(UserspaceProxier, AfterUpdateNoNewConnectionGoesToARemovedEndpoint) {
  Backend a("a"), b("b");
  UserspaceProxier proxier(options());
  const uint16_t vport = free_port();
  proxier.update({service("127.0.0.10", vport, {a.port(), b.port()})});
  // A long-lived connection to each endpoint stays open across the update.
  for (int i = 0; i < 10; ++i) ask("127.0.0.10", vport);
  proxier.update({service("127.0.0.10", vport, {a.port()})});
  const int b_before = b.served();
  for (int i = 0; i < 50; ++i) EXPECT_EQ(ask("127.0.0.10", vport).first_line, "a");
  EXPECT_EQ(b.served(), b_before);
}

TEST(UserspaceProxier, EstablishedConnectionSurvivesRemovalOfItsEndpoint) {
  Backend a("a");
  UserspaceProxier proxier(options());
  const uint16_t vport = free_port();
  proxier.update({service("127.0.0.10", vport, {a.port()})});
  const int fd = connect_to("127.0.0.10", vport);
  ASSERT_GE(fd, 0);
  char buf[16];
  ASSERT_EQ(::recv(fd, buf, 2, MSG_WAITALL), 2);
  proxier.update({});  // the service is gone: its listener closes
  ASSERT_EQ(::send(fd, "ping", 4, 0), 4);
  ASSERT_EQ(::recv(fd, buf, 4, MSG_WAITALL), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
  ::close(fd);
  EXPECT_NE(ask("127.0.0.10", vport).error, 0);  // no listener any more
}

TEST(UserspaceProxier, LargeTransferBothWaysWithSpliceAndCopy) {
  for (bool splice : {true, false}) {
    Backend a("a");
    auto o = options();
    o.use_splice = splice;
    o.buffer_bytes = 64 * 1024;
    UserspaceProxier proxier(o);
    const uint16_t vport = free_port();
    proxier.update({service("127.0.0.10", vport, {a.port()})});
    std::string payload(8 << 20, '\0');
    for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 + i / 4096);
    std::string echoed;
    EXPECT_EQ(ask("127.0.0.10", vport, payload, &echoed).first_line, "a");
    EXPECT_TRUE(echoed == payload) << "splice=" << splice << " got " << echoed.size() << " bytes";
    const auto s = proxier.stats();
    EXPECT_EQ(splice ? s.spliced_connections : s.copied_connections, 1u);
  }
}

TEST(UserspaceProxier, SourceRangesRejectOtherClients) {
  Backend a("a");
  UserspaceProxier proxier(options());
  const uint16_t vport = free_port();
  auto p = service("127.0.0.10", vport, {a.port()});
  p.load_balancer_ips = {ip("127.0.0.20")};
  p.load_balancer_source_ranges = {*model::CIDR::parse("127.0.0.5/32")};
  proxier.update({p});
  EXPECT_EQ(ask("127.0.0.20", vport, "", nullptr, "127.0.0.5").first_line, "a");
  EXPECT_EQ(ask("127.0.0.20", vport, "", nullptr, "127.0.0.6").error, ECONNRESET);
  EXPECT_EQ(ask("127.0.0.10", vport, "", nullptr, "127.0.0.6").first_line, "a");  // ClusterIP: no ranges
  EXPECT_EQ(proxier.stats().rejected_source_range, 1u);
}

TEST(UserspaceProxier, ConnectionLimitResetsTheExcess) {
  Backend a("a");
  auto o = options();
  o.max_connections = 2;
  UserspaceProxier proxier(o);
  const uint16_t vport = free_port();
  proxier.update({service("127.0.0.10", vport, {a.port()})});
  std::vector<int> held;
  for (int i = 0; i < 2; ++i) {
    const int fd = connect_to("127.0.0.10", vport);
    ASSERT_GE(fd, 0);
    char buf[2];
    ASSERT_EQ(::recv(fd, buf, 2, MSG_WAITALL), 2);
    held.push_back(fd);
  }
  EXPECT_EQ(ask("127.0.0.10", vport).error, ECONNRESET);
  EXPECT_EQ(proxier.stats().rejected_limit, 1u);
  for (int fd : held) ::close(fd);
}

TEST(UserspaceProxier, UdpRequestResponseFromTheVip) {
  Backend a("a", true), b("b", true);
  auto o = options();
  o.udp_timeout = std::chrono::milliseconds(100);
  UserspaceProxier proxier(o);
  const uint16_t vport = free_port(SOCK_DGRAM);
  proxier.update({service("127.0.0.10", vport, {a.port(), b.port()}, model::Protocol::UDP)});
  std::map<std::string, int> seen;
  // Every client socket stays open until all 20 are done: a closed one's
  // port could be handed to the next socket, whose datagrams would then
  // join the first one's flow (not yet idle) and count one flow short.
  std::vector<int> clients;
  for (int i = 0; i < 20; ++i) {
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    clients.push_back(fd);
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const sockaddr_in to = ipv4_address("127.0.0.10", vport);
    // Two datagrams of one flow go to the same endpoint.
    std::string ids;
    for (int k = 0; k < 2; ++k) {
      ASSERT_EQ(::sendto(fd, "hi", 2, 0, reinterpret_cast<const sockaddr*>(&to), sizeof to), 2);
      char buf[64];
      sockaddr_in from{};
      socklen_t len = sizeof from;
      const ssize_t n = ::recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      ASSERT_GT(n, 0);
      EXPECT_EQ(from.sin_addr.s_addr, to.sin_addr.s_addr);  // from the VIP
      EXPECT_EQ(from.sin_port, to.sin_port);
      ids += std::string(buf, static_cast<size_t>(n)) + ";";
    }
    EXPECT_TRUE(ids == "a:hi;a:hi;" || ids == "b:hi;b:hi;") << ids;
    seen[ids]++;
  }
  for (int fd : clients) ::close(fd);
  EXPECT_EQ(seen.size(), 2u);
  // Workers count a flow on their own thread, possibly just after relaying its
  // reply; and flows expire after the idle timeout: poll both with a deadline.
  wait_until([&] { return proxier.stats().udp_flows == 20u && proxier.stats().udp_active_flows == 0; });
  EXPECT_EQ(proxier.stats().udp_flows, 20u);
  EXPECT_EQ(proxier.stats().udp_active_flows, 0u);  // idle timeout
}

TEST(UserspaceProxier, StopIsIdempotentAndClosesListeners) {
  Backend a("a");
  UserspaceProxier proxier(options());
  const uint16_t vport = free_port();
  proxier.update({service("127.0.0.10", vport, {a.port()})});
  EXPECT_EQ(proxier.stats().listeners, 2u);
  proxier.stop();
  proxier.stop();
  EXPECT_NE(ask("127.0.0.10", vport).error, 0);
}

}  // namespace
}  // namespace svcproxy::userspace

namespace svcproxy::userspace {
namespace {

TEST(UserspaceProxier, ClosedConnectionsAreReleased) {
  Backend a("a");
  UserspaceProxier proxier(options());
  const uint16_t vport = free_port();
  proxier.update({service("127.0.0.10", vport, {a.port()})});
  for (int i = 0; i < 5; ++i) {
    std::string echoed;
    EXPECT_EQ(ask("127.0.0.10", vport, "x", &echoed).first_line, "a");
  }
  for (int i = 0; i < 5; ++i) EXPECT_EQ(ask("127.0.0.10", vport).first_line, "a");
  wait_until([&] { return proxier.stats().active == 0; }, std::chrono::seconds(1));
  EXPECT_EQ(proxier.stats().active, 0u);
}

}  // namespace
}  // namespace svcproxy::userspace

namespace svcproxy::userspace {
namespace {

// A server that never closes its half after the client's FIN (as `svcproxy
// echo` with nothing left to answer): the proxy resets both sides after the
// half-close timeout instead of keeping the connection forever.
TEST(UserspaceProxier, HalfClosedConnectionIsResetAfterTheTimeout) {
  uint16_t endpoint_port = 0;
  const int lfd = listen_loopback(&endpoint_port);
  ASSERT_GE(lfd, 0);
  auto o = options();
  o.half_close_timeout = std::chrono::milliseconds(200);
  UserspaceProxier proxier(o);
  const uint16_t vport = free_port();
  proxier.update({service("127.0.0.10", vport, {endpoint_port})});

  const int fd = connect_to("127.0.0.10", vport);
  ASSERT_GE(fd, 0);
  const int server_side = ::accept(lfd, nullptr, nullptr);
  ASSERT_GE(server_side, 0);
  ::close(fd);  // FIN; the server never answers it
  wait_until([&] { return proxier.stats().active != 1; }, std::chrono::seconds(1));
  EXPECT_EQ(proxier.stats().active, 0u);
  ::close(server_side);
  ::close(lfd);
}

}  // namespace
}  // namespace svcproxy::userspace

namespace svcproxy::userspace {
namespace {

// Waits up to `within` for the connection to end (EOF or reset): true if it did.
bool ends_within(int fd, std::chrono::milliseconds within) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(within.count())) <= 0) return false;
  char buf[64];
  return ::recv(fd, buf, sizeof buf, MSG_DONTWAIT) <= 0;
}

// --userspace-drain-timeout: after the update that removed endpoint b, the
// connection to b is reset the drain timeout later; the one to a (kept)
// is not and keeps relaying.
TEST(UserspaceProxier, DrainTimeoutResetsConnectionsToARemovedEndpointOnly) {
  Backend a("a"), b("b");
  auto o = options();
  o.drain_timeout = std::chrono::milliseconds(300);
  UserspaceProxier proxier(o);
  const uint16_t vport = free_port();
  proxier.update({service("127.0.0.10", vport, {a.port(), b.port()})});
  std::map<std::string, int> held;
  while (held.size() < 2) {  // round robin: two connections reach both
    std::string id;
    const int fd = hold("127.0.0.10", vport, &id);
    ASSERT_GE(fd, 0);
    if (held.count(id)) ::close(fd);
    else held[id] = fd;
  }
  const auto removed = std::chrono::steady_clock::now();
  proxier.update({service("127.0.0.10", vport, {a.port()})});
  // Reset soon, but not before the timeout: ends_within returns as the
  // connection ends, so the elapsed time since the removal is when it ended
  // (measured from before update(), which can itself be slow under load).
  EXPECT_TRUE(ends_within(held["b"], std::chrono::seconds(5)));
  EXPECT_GE(std::chrono::steady_clock::now() - removed, std::chrono::milliseconds(300));
  EXPECT_EQ(proxier.stats().drained, 1u);
  // The kept endpoint's connection still relays, past the deadline.
  ASSERT_EQ(::send(held["a"], "ping", 4, 0), 4);
  char buf[4];
  ASSERT_EQ(::recv(held["a"], buf, 4, MSG_WAITALL), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
  for (auto& [_, fd] : held) ::close(fd);
}

// An endpoint that is removed and comes back before the deadline keeps its
// connections; without a drain timeout nothing is ever reset.
TEST(UserspaceProxier, DrainKeepsConnectionsOfAnEndpointThatCameBack) {
  for (const auto timeout : {std::chrono::milliseconds(300), std::chrono::milliseconds(0)}) {
    Backend a("a"), b("b");
    auto o = options();
    o.drain_timeout = timeout;
    UserspaceProxier proxier(o);
    const uint16_t vport = free_port();
    proxier.update({service("127.0.0.10", vport, {a.port()})});
    std::string id;
    const int fd = hold("127.0.0.10", vport, &id);
    ASSERT_EQ(id, "a");
    proxier.update({service("127.0.0.10", vport, {b.port()})});
    if (timeout.count()) proxier.update({service("127.0.0.10", vport, {a.port(), b.port()})});
    EXPECT_FALSE(ends_within(fd, std::chrono::milliseconds(800))) << "drain timeout " << timeout.count() << " ms";
    ASSERT_EQ(::send(fd, "ping", 4, 0), 4);
    char buf[4];
    ASSERT_EQ(::recv(fd, buf, 4, MSG_WAITALL), 4);
    EXPECT_EQ(proxier.stats().drained, 0u);
    ::close(fd);
  }
}

}  // namespace
}  // namespace svcproxy::userspace

namespace svcproxy::userspace {
namespace {

// One datagram to vip:port from a connected UDP socket: the answer, or
// "refused" when ICMP port unreachable came back (ECONNREFUSED), or
// "timeout".
std::string udp_ask(const char* vip, uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const sockaddr_in to = ipv4_address(vip, port);
  std::string out = "error";
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0 && ::send(fd, "hi", 2, 0) == 2) {
    char buf[64];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    out = n > 0 ? std::string(buf, static_cast<size_t>(n)) : errno == ECONNREFUSED ? "refused" : "timeout";
  }
  ::close(fd);
  return out;
}

// A UDP port without endpoints has no socket, so the kernel answers with
// ICMP port unreachable (kube-proxy's REJECT); it gets one when an endpoint
// appears and loses it again when the last one goes.
TEST(UserspaceProxier, UdpWithoutEndpointsIsRefusedWithIcmp) {
  Backend a("a", true);
  UserspaceProxier proxier(options());
  const uint16_t vport = free_port(SOCK_DGRAM);
  proxier.update({service("127.0.0.10", vport, {}, model::Protocol::UDP)});
  EXPECT_EQ(udp_ask("127.0.0.10", vport), "refused");
  EXPECT_EQ(proxier.stats().listeners, 0u);
  proxier.update({service("127.0.0.10", vport, {a.port()}, model::Protocol::UDP)});
  EXPECT_EQ(udp_ask("127.0.0.10", vport), "a:hi");
  proxier.update({service("127.0.0.10", vport, {}, model::Protocol::UDP)});
  EXPECT_EQ(udp_ask("127.0.0.10", vport), "refused");
  EXPECT_EQ(proxier.stats().udp_dropped, 0u);
}

}  // namespace
}  // namespace svcproxy::userspace

namespace svcproxy::userspace {
namespace {

// An endpoint that resets or closes while the proxy splices into it:
// splice(2) has no MSG_NOSIGNAL, so the worker must not die of SIGPIPE
// (EPIPE); the client is reset.
TEST(UserspaceProxier, EndpointResetDuringSpliceDoesNotKillTheProcess) {
  uint16_t endpoint_port = 0;
  const int lfd = listen_loopback(&endpoint_port);
  ASSERT_GE(lfd, 0);
  UserspaceProxier proxier(options());
  const uint16_t vport = free_port();
  proxier.update({service("127.0.0.10", vport, {endpoint_port})});
  for (int round = 0; round < 6; ++round) {
    const int fd = connect_to("127.0.0.10", vport);
    ASSERT_GE(fd, 0);
    const int server_side = ::accept(lfd, nullptr, nullptr);
    ASSERT_GE(server_side, 0);
    // The client streams; the endpoint reads 1 MiB (the proxy is splicing
    // by then), then resets.
    std::thread client([fd] {
      std::string chunk(64 * 1024, 'x');
      while (::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL) > 0) {
      }
    });
    std::vector<char> buf(64 * 1024);
    size_t got = 0;
    for (ssize_t n; got < (1u << 20) && (n = ::recv(server_side, buf.data(), buf.size(), 0)) > 0;) got += n;
    if (round % 2 == 0) {  // reset at once
      linger hard{1, 0};
      setsockopt(server_side, SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
    } else {  // or a plain close: the proxy's next writes meet a reset
      while (::recv(server_side, buf.data(), buf.size(), MSG_DONTWAIT) > 0) {
      }
    }
    ::close(server_side);
    client.join();  // ends once the proxy resets the client
    ::close(fd);
  }
  EXPECT_GE(proxier.stats().spliced_connections, 1u);
  wait_until([&] { return proxier.stats().active == 0; });
  EXPECT_EQ(proxier.stats().active, 0u);
  ::close(lfd);
}

}  // namespace
}  // namespace svcproxy::userspace
