#include "proxy/echo.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace svcproxy::proxy {
namespace {

using Clock = std::chrono::steady_clock;

// A request line longer than this closes the connection: the echo server is
// for tests and must not grow without bound on garbage input.
constexpr size_t kMaxPendingInput = 64 * 1024;
// After answering an HTTP request we half-close and wait this long for the
// client to close its side (closing with unread input would send a reset that
// can destroy the response in flight).
constexpr auto kDrainTimeout = std::chrono::seconds(5);

using base::UniqueFd;

std::string errno_text(int err) { return std::strerror(err); }

// "[v6]:port", "v4:port" or ":port" (meaning "[::]:port", dual stack).
base::Result<sockaddr_storage> parse_listen(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return base::Error{"expected ADDR:PORT or [ADDR]:PORT"};
  std::string host(text.substr(0, colon));
  std::string_view port_text = text.substr(colon + 1);
  unsigned long port = 0;
  if (port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != std::string_view::npos ||
      (port = std::stoul(std::string(port_text))) > 65535) {
    return base::Error{"invalid port \"" + std::string(port_text) + "\""};
  }
  bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "::";

  sockaddr_storage storage{};
  if (!bracketed) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
      v4->sin_family = AF_INET;
      v4->sin_port = htons(static_cast<uint16_t>(port));
      return storage;
    }
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (host.find(':') != std::string::npos && inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1 &&
      (bracketed || host == "::")) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    return storage;
  }
  return base::Error{"invalid address \"" + host + "\" (IPv6 needs brackets: [ADDR]:PORT)"};
}

// "1.2.3.4:5" or "[2001:db8::1]:5"; IPv4-mapped IPv6 is written as IPv4.
std::string format_address(const sockaddr_storage& storage) {
  char text[INET6_ADDRSTRLEN] = {};
  if (storage.ss_family == AF_INET) {
    const auto& v4 = reinterpret_cast<const sockaddr_in&>(storage);
    inet_ntop(AF_INET, &v4.sin_addr, text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(v4.sin_port));
  }
  const auto& v6 = reinterpret_cast<const sockaddr_in6&>(storage);
  if (IN6_IS_ADDR_V4MAPPED(&v6.sin6_addr)) {
    inet_ntop(AF_INET, &v6.sin6_addr.s6_addr[12], text, sizeof text);
    return std::string(text) + ":" + std::to_string(ntohs(v6.sin6_port));
  }
  inet_ntop(AF_INET6, &v6.sin6_addr, text, sizeof text);
  return "[" + std::string(text) + "]:" + std::to_string(ntohs(v6.sin6_port));
}

bool set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

void set_option(int fd, int level, int name, int value) {
  // Best effort: every option set here is an improvement, none is essential.
  (void)setsockopt(fd, level, name, &value, sizeof value);
}

std::string hostname() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "echo";
  return name;
}

std::string_view trim_cr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

struct Connection {
  UniqueFd fd;
  std::string reply;    // "<id> <client>\n"
  std::string input;    // received, not yet a complete line
  std::string output;   // to send
  bool line_seen = false;
  bool http = false;
  bool finish = false;  // half-close once output is sent
  bool draining = false;  // half-closed, discarding input until EOF
  Clock::time_point drain_deadline{};
  bool dead = false;
};

void answer_http(Connection& c) {
  // X-Endpoint names the server (the reply up to the client address), as
  // `svcproxy loadtest --mode http` reads it.
  const std::string id = c.reply.substr(0, c.reply.rfind(' '));
  c.output += "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nX-Endpoint: " + id +
              "\r\nContent-Length: " + std::to_string(c.reply.size()) + "\r\nConnection: close\r\n\r\n" + c.reply;
  c.finish = true;
}

// Consumes complete lines from c.input.
void process_input(Connection& c, bool eof) {
  size_t start = 0;
  while (!c.finish) {
    size_t newline = c.input.find('\n', start);
    if (newline == std::string::npos) break;
    std::string_view line = trim_cr(std::string_view(c.input).substr(start, newline - start));
    start = newline + 1;
    if (!c.line_seen) {
      c.line_seen = true;
      c.http = line.starts_with("GET ");
      if (c.http) continue;
    }
    if (c.http) {
      if (line.empty()) answer_http(c);
    } else {
      c.output += c.reply;
    }
  }
  c.input.erase(0, start);
  if (eof && !c.finish) {
    // A last line without its newline still gets an answer; an HTTP request
    // cut short still gets its response.
    if (c.http) {
      answer_http(c);
    } else {
      if (!c.input.empty()) c.output += c.reply;
      c.finish = true;
    }
  }
  if (c.finish) c.input.clear();
  if (c.input.size() > kMaxPendingInput) c.dead = true;
}

void on_readable(Connection& c) {
  char buffer[16 * 1024];
  for (;;) {
    ssize_t n = ::recv(c.fd.get(), buffer, sizeof buffer, 0);
    if (n > 0) {
      if (c.draining || c.finish) continue;  // the answer is already decided
      c.input.append(buffer, static_cast<size_t>(n));
      process_input(c, false);
      if (c.dead) return;
      continue;
    }
    if (n == 0) {
      if (c.draining) {
        c.dead = true;
      } else {
        process_input(c, true);
      }
      return;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) c.dead = true;
    return;
  }
}

void on_writable(Connection& c) {
  while (!c.output.empty()) {
    ssize_t n = ::send(c.fd.get(), c.output.data(), c.output.size(), MSG_NOSIGNAL);
    if (n > 0) {
      c.output.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    c.dead = true;
    return;
  }
  if (c.finish && !c.draining) {
    ::shutdown(c.fd.get(), SHUT_WR);
    c.draining = true;
    c.drain_deadline = Clock::now() + kDrainTimeout;
  }
}

class SignalFd {
 public:
  SignalFd() {
    sigemptyset(&mask_);
    sigaddset(&mask_, SIGTERM);
    sigaddset(&mask_, SIGINT);
    pthread_sigmask(SIG_BLOCK, &mask_, &previous_);
    fd_ = UniqueFd(signalfd(-1, &mask_, SFD_NONBLOCK | SFD_CLOEXEC));
  }
  ~SignalFd() {
    fd_.reset();
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
  }
  SignalFd(const SignalFd&) = delete;
  SignalFd& operator=(const SignalFd&) = delete;
  int get() const { return fd_.get(); }
  // Takes the pending signal, so restoring the mask does not deliver it
  // again (and kill us with the default action).
  void consume() const {
    signalfd_siginfo info{};
    while (::read(fd_.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
    }
  }

 private:
  sigset_t mask_{};
  sigset_t previous_{};
  UniqueFd fd_;
};

int serve_tcp(const UniqueFd& listener, const SignalFd& signals, const std::string& id) {
  std::list<Connection> connections;
  std::vector<pollfd> fds;
  std::vector<Connection*> polled;
  std::optional<Clock::time_point> accept_paused_until;

  for (;;) {
    auto now = Clock::now();
    if (accept_paused_until && now >= *accept_paused_until) accept_paused_until.reset();
    fds.clear();
    polled.clear();
    fds.push_back({signals.get(), POLLIN, 0});
    fds.push_back({accept_paused_until ? -1 : listener.get(), POLLIN, 0});
    std::optional<Clock::time_point> wake = accept_paused_until;
    for (auto& c : connections) {
      short events = POLLIN;
      if (!c.output.empty()) events |= POLLOUT;
      fds.push_back({c.fd.get(), events, 0});
      polled.push_back(&c);
      if (c.draining && (!wake || c.drain_deadline < *wake)) wake = c.drain_deadline;
    }
    int timeout_ms = -1;
    if (wake) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*wake - now).count();
      timeout_ms = static_cast<int>(std::max<long long>(0, left) + 1);
    }
    int ready = ::poll(fds.data(), fds.size(), timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      std::cerr << "echo: poll: " << errno_text(errno) << "\n";
      return 1;
    }
    if (fds[0].revents & POLLIN) {
      signals.consume();
      return 0;
    }

    if (fds[1].revents & POLLIN) {
      for (;;) {
        sockaddr_storage peer{};
        socklen_t length = sizeof peer;
        int fd = ::accept4(listener.get(), reinterpret_cast<sockaddr*>(&peer), &length,
                           SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
          if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            // Out of descriptors: stop accepting briefly instead of spinning.
            std::cerr << "echo: accept: " << errno_text(errno) << "\n";
            accept_paused_until = Clock::now() + std::chrono::milliseconds(100);
          }
          break;  // EAGAIN, or a connection that died before we got to it
        }
        Connection& c = connections.emplace_back();
        c.fd = UniqueFd(fd);
        c.reply = id + " " + format_address(peer) + "\n";
      }
    }

    now = Clock::now();
    for (size_t i = 0; i < polled.size(); ++i) {
      Connection& c = *polled[i];
      short revents = fds[i + 2].revents;
      if (revents & (POLLIN | POLLHUP | POLLERR)) on_readable(c);
      if (!c.dead && !c.output.empty()) on_writable(c);  // try at once, poll only when blocked
      if (!c.dead && c.draining && now >= c.drain_deadline) c.dead = true;
    }
    connections.remove_if([](const Connection& c) { return c.dead; });
  }
}

// Replies from the address the datagram was sent to, so that conntrack (and
// a client's connected socket) match the reply on multi-address hosts.
int serve_udp(const UniqueFd& socket, const SignalFd& signals, const std::string& id) {
  pollfd fds[2] = {{signals.get(), POLLIN, 0}, {socket.get(), POLLIN, 0}};
  for (;;) {
    int ready = ::poll(fds, 2, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      std::cerr << "echo: poll: " << errno_text(errno) << "\n";
      return 1;
    }
    if (fds[0].revents & POLLIN) {
      signals.consume();
      return 0;
    }
    if (!(fds[1].revents & POLLIN)) continue;
    for (;;) {
      char payload[64 * 1024];
      alignas(cmsghdr) char control[256];
      sockaddr_storage peer{};
      iovec iov{payload, sizeof payload};
      msghdr msg{};
      msg.msg_name = &peer;
      msg.msg_namelen = sizeof peer;
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      ssize_t n = ::recvmsg(socket.get(), &msg, 0);
      if (n < 0) {
        if (errno == EINTR) continue;
        break;  // EAGAIN; ICMP errors queued from earlier replies are not ours to handle
      }

      std::string reply = id + " " + format_address(peer) + "\n";
      alignas(cmsghdr) char reply_control[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
      msghdr out{};
      iovec out_iov{reply.data(), reply.size()};
      out.msg_name = &peer;
      out.msg_namelen = msg.msg_namelen;
      out.msg_iov = &out_iov;
      out.msg_iovlen = 1;
      for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
          in_pktinfo received{};
          std::memcpy(&received, CMSG_DATA(cm), sizeof received);
          in_pktinfo source{};
          source.ipi_spec_dst = received.ipi_addr;
          out.msg_control = reply_control;
          out.msg_controllen = CMSG_SPACE(sizeof source);
          cmsghdr* oc = CMSG_FIRSTHDR(&out);
          oc->cmsg_level = IPPROTO_IP;
          oc->cmsg_type = IP_PKTINFO;
          oc->cmsg_len = CMSG_LEN(sizeof source);
          std::memcpy(CMSG_DATA(oc), &source, sizeof source);
          break;
        }
        if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
          in6_pktinfo source{};
          std::memcpy(&source, CMSG_DATA(cm), sizeof source);
          source.ipi6_ifindex = 0;
          out.msg_control = reply_control;
          out.msg_controllen = CMSG_SPACE(sizeof source);
          cmsghdr* oc = CMSG_FIRSTHDR(&out);
          oc->cmsg_level = IPPROTO_IPV6;
          oc->cmsg_type = IPV6_PKTINFO;
          oc->cmsg_len = CMSG_LEN(sizeof source);
          std::memcpy(CMSG_DATA(oc), &source, sizeof source);
          break;
        }
      }
      if (::sendmsg(socket.get(), &out, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && out.msg_control) {
        // The destination address may be gone (or not usable as a source);
        // let the kernel pick one rather than not answering at all.
        out.msg_control = nullptr;
        out.msg_controllen = 0;
        (void)::sendmsg(socket.get(), &out, MSG_NOSIGNAL | MSG_DONTWAIT);
      }
    }
  }
}

}  // namespace

int run_echo(const EchoOptions& options) {
  const auto address = parse_listen(options.listen);
  if (!address) {
    std::cerr << "echo: --listen " << options.listen << ": " << address.error() << "\n";
    return 1;
  }
  const std::string id = options.id.empty() ? hostname() : options.id;
  const int family = address->ss_family;
  const socklen_t length = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);

  SignalFd signals;
  if (signals.get() < 0) {
    std::cerr << "echo: signalfd: " << errno_text(errno) << "\n";
    return 1;
  }
  UniqueFd socket(::socket(family, (options.udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0));
  if (!socket) {
    std::cerr << "echo: socket: " << errno_text(errno) << "\n";
    return 1;
  }
  set_option(socket.get(), SOL_SOCKET, SO_REUSEADDR, 1);
  if (family == AF_INET6) {
    const auto& v6 = reinterpret_cast<const sockaddr_in6&>(*address);
    // "[::]" serves both families; a specific IPv6 address only its own.
    set_option(socket.get(), IPPROTO_IPV6, IPV6_V6ONLY, IN6_IS_ADDR_UNSPECIFIED(&v6.sin6_addr) ? 0 : 1);
  }
  if (options.udp) {
    set_option(socket.get(), IPPROTO_IP, IP_PKTINFO, 1);  // also IPv4 on a dual-stack socket
    if (family == AF_INET6) set_option(socket.get(), IPPROTO_IPV6, IPV6_RECVPKTINFO, 1);
  }
  if (::bind(socket.get(), reinterpret_cast<const sockaddr*>(&*address), length) != 0) {
    std::cerr << "echo: bind " << options.listen << ": " << errno_text(errno) << "\n";
    return 1;
  }
  if (!options.udp && ::listen(socket.get(), SOMAXCONN) != 0) {
    std::cerr << "echo: listen " << options.listen << ": " << errno_text(errno) << "\n";
    return 1;
  }
  if (!set_nonblocking(socket.get())) {
    std::cerr << "echo: fcntl: " << errno_text(errno) << "\n";
    return 1;
  }
  sockaddr_storage bound{};
  socklen_t bound_length = sizeof bound;
  ::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&bound), &bound_length);
  std::cout << "listening on " << format_address(bound) << std::endl;

  return options.udp ? serve_udp(socket, signals, id) : serve_tcp(socket, signals, id);
}

}  // namespace svcproxy::proxy
