// Short-connection load generator and backend for bench/userspace_bench.sh.
//
//   conn_rate serve ADDR PORT [THREADS]
//       A backend: THREADS threads accept on one listener; each connection
//       gets one reply line per request line, and is closed when the client
//       closes (as an HTTP/1.0 server would).
//   conn_rate load ADDR PORT SECONDS THREADS
//       THREADS threads, each in a loop for SECONDS: connect, send "x\n",
//       read the reply line, close. Prints one line:
//       connections=N failures=F rate=R/s p50_us=.. p99_us=.. (latency of
//       connect+request+reply per connection).
//
// Self-contained (no project code) so the script can compile it with g++.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

sockaddr_in address(const char* ip, int port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1) {
    std::fprintf(stderr, "conn_rate: bad IPv4 address %s\n", ip);
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
    std::perror("conn_rate serve: bind/listen");
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

int load(const char* ip, int port, double seconds, int threads) {
  const auto sin = address(ip, port);
  std::atomic<bool> stop{false};
  std::atomic<long> failures{0};
  std::vector<std::vector<uint32_t>> latencies(static_cast<size_t>(threads));
  std::vector<std::thread> pool;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < threads; ++i)
    pool.emplace_back([&, i] {
      auto& lat = latencies[static_cast<size_t>(i)];
      lat.reserve(1 << 20);
      char buf[64];
      while (!stop.load(std::memory_order_relaxed)) {
        const auto t0 = std::chrono::steady_clock::now();
        const int fd = socket(AF_INET, SOCK_STREAM, 0);
        const int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        timeval tv{2, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        bool ok = connect(fd, reinterpret_cast<const sockaddr*>(&sin), sizeof sin) == 0 &&
                  send(fd, "x\n", 2, MSG_NOSIGNAL) == 2;
        size_t got = 0;
        while (ok) {
          const ssize_t n = recv(fd, buf + got, sizeof buf - got, 0);
          if (n <= 0) {
            ok = false;
            break;
          }
          got += static_cast<size_t>(n);
          if (std::memchr(buf, '\n', got)) break;
        }
        close(fd);
        if (!ok) {
          failures.fetch_add(1);
          continue;
        }
        lat.push_back(static_cast<uint32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count()));
      }
    });
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : pool) t.join();
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::vector<uint32_t> all;
  for (auto& l : latencies) all.insert(all.end(), l.begin(), l.end());
  std::sort(all.begin(), all.end());
  auto pct = [&](double p) { return all.empty() ? 0u : all[std::min(all.size() - 1, static_cast<size_t>(p * all.size()))]; };
  std::printf("connections=%zu failures=%ld rate=%.0f p50_us=%u p99_us=%u\n", all.size(), failures.load(),
              static_cast<double>(all.size()) / elapsed, pct(0.50), pct(0.99));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 4 && std::string(argv[1]) == "serve")
    return serve(argv[2], std::atoi(argv[3]), argc > 4 ? std::atoi(argv[4]) : 32);
  if (argc == 6 && std::string(argv[1]) == "load")
    return load(argv[2], std::atoi(argv[3]), std::atof(argv[4]), std::atoi(argv[5]));
  std::fprintf(stderr, "usage: conn_rate serve ADDR PORT [THREADS] | conn_rate load ADDR PORT SECONDS THREADS\n");
  return 2;
}
