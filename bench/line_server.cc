// The short-connection backend of bench/userspace_bench.sh:
//
//   line_server ADDR PORT [THREADS]
//       THREADS threads (default 32) accept on one listener; each connection
//       gets one reply line ("ok") per request line, and is closed when the
//       client closes (as an HTTP/1.0 server would). Prints "listening".
//
// A blocking thread per connection answers faster on 2 cores than
// `svcproxy echo` (single-threaded: 6-10k vs 17k connections/s with
// `loadtest --mode request` in one namespace), so the proxies, not the
// backend, are what the bench measures. The load side was `conn_rate load`
// until `svcproxy loadtest --mode request` matched its rate (bench/RESULTS.md).
//
// Self-contained (no project code) so the script can compile it with g++.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

sockaddr_in address(const char* ip, int port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1) {
    std::fprintf(stderr, "line_server: bad IPv4 address %s\n", ip);
    std::exit(2);
  }
  return sin;
}

void serve_one(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  char buf[4096];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    if (std::memchr(buf, '\n', static_cast<size_t>(n)) && send(fd, "ok\n", 3, MSG_NOSIGNAL) != 3) break;
  }
  close(fd);
}

int serve(const char* ip, int port, int threads) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto sin = address(ip, port);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) < 0 || listen(fd, 4096) < 0) {
    std::perror("line_server: bind/listen");
    return 1;
  }
  std::printf("listening\n");
  std::fflush(stdout);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i)
    pool.emplace_back([fd] {
      for (;;) {
        const int c = accept(fd, nullptr, nullptr);
        if (c >= 0) serve_one(c);
      }
    });
  for (auto& t : pool) t.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 || argc == 4) return serve(argv[1], std::atoi(argv[2]), argc > 3 ? std::atoi(argv[3]) : 32);
  std::fprintf(stderr, "usage: line_server ADDR PORT [THREADS]\n");
  return 2;
}
