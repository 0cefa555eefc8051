// The engine against real sockets on loopback: a small line server in a
// thread answers as `svcproxy echo` does ("<id> <client>\n").
#include "loadtest/engine.h"

#include <arpa/inet.h>
#include <poll.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace svcproxy::loadtest {
namespace {

sockaddr_storage loopback(uint16_t port) {
  sockaddr_storage s{};
  auto& v4 = reinterpret_cast<sockaddr_in&>(s);
  v4.sin_family = AF_INET;
  v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  v4.sin_port = htons(port);
  return s;
}

// Answers each connection's first line with "<id> x\n", then closes.
class LineServer {
 public:
  explicit LineServer(std::string id) : id_(std::move(id)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    auto addr = loopback(0);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(sockaddr_in));
    ::listen(fd_, 512);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(reinterpret_cast<sockaddr_in&>(addr).sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~LineServer() {
    done_ = true;
    thread_.join();
    ::close(fd_);
  }
  uint16_t port() const { return port_; }

 private:
  void serve() {
    while (!done_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      char buffer[64];
      ssize_t got = 0;
      while (got < 2) {
        ssize_t n = ::recv(c, buffer + got, sizeof buffer - static_cast<size_t>(got), 0);
        if (n <= 0) break;
        got += n;
      }
      const std::string reply = id_ + " 127.0.0.1:1\n";
      (void)!::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      ::close(c);
    }
  }
  std::string id_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> done_{false};
  std::thread thread_;
};

Plan plan_for(uint16_t port, uint64_t requests) {
  Plan plan;
  plan.target = "test";
  plan.address = loopback(port);
  plan.concurrency = 4;
  plan.threads = 2;
  plan.requests = requests;
  return plan;
}

TEST(Engine, RequestModeCountsEveryAnswerByEndpoint) {
  LineServer server("p1:8080");
  Engine engine(plan_for(server.port(), 300));
  Report r = engine.run({});
  EXPECT_EQ(r.requests, 300u);
  EXPECT_EQ(r.answers, 300u);
  EXPECT_EQ(r.errors.total(), 0u);
  ASSERT_EQ(r.endpoints.size(), 1u);
  EXPECT_EQ(r.endpoints[0].endpoint, "p1:8080");
  EXPECT_EQ(r.endpoints[0].count, 300u);
  EXPECT_DOUBLE_EQ(r.endpoints[0].share, 1.0);
  EXPECT_FALSE(r.open_loop);
  EXPECT_GT(r.latency.max_us, 0u);
  EXPECT_LE(r.latency.p50_us, r.latency.p99_us);
  EXPECT_FALSE(r.timeline.empty());
}

TEST(Engine, ClosedPortIsRefused) {
  uint16_t port;
  {
    LineServer gone("x");
    port = gone.port();
  }
  Engine engine(plan_for(port, 50));
  Report r = engine.run({});
  EXPECT_EQ(r.errors.refused, 50u);
  EXPECT_EQ(r.answers, 0u);
}

TEST(Engine, AnswersOutsideTheExpectedSetAreViolations) {
  LineServer server("p2:8080");
  Plan plan = plan_for(server.port(), 100);
  plan.expected.known = true;
  plan.expected.serving = {"p1:8080"};
  plan.expected.excluded = {{"p2:8080", "unready"}};
  Engine engine(std::move(plan));
  Report r = engine.run({});
  ASSERT_EQ(r.violations.size(), 1u);
  EXPECT_EQ(r.violations[0].endpoint, "p2:8080");
  EXPECT_EQ(r.violations[0].count, 100u);
  EXPECT_EQ(r.violations[0].reason, "unready");
  EXPECT_EQ(r.fairness.basis, "expected");
  // The expected endpoint that never answered is listed with 0.
  ASSERT_EQ(r.endpoints.size(), 2u);
  EXPECT_EQ(r.endpoints[1].endpoint, "p1:8080");
  EXPECT_EQ(r.endpoints[1].count, 0u);
}

TEST(Engine, OpenLoopKeepsTheRateAndStopEndsTheRun) {
  LineServer server("p1:8080");
  Plan plan = plan_for(server.port(), 0);
  plan.requests.reset();
  plan.duration = std::chrono::seconds(30);
  plan.rate = 200;
  Engine engine(std::move(plan));
  int calls = 0;
  Report r = engine.run([&](const Progress& p) {
    if (++calls == 4) engine.stop();
    EXPECT_GE(p.elapsed_s, 0);
  });
  EXPECT_TRUE(r.open_loop);
  EXPECT_LT(r.duration_s, 10);
  // ~1 s at 200/s; generous for a loaded machine.
  EXPECT_GT(r.requests, 50u);
  EXPECT_LT(r.requests, 600u);
}

TEST(Engine, ChangesAreTimed) {
  LineServer server("p1:8080");
  Plan plan = plan_for(server.port(), 0);
  plan.requests.reset();
  plan.duration = std::chrono::milliseconds(800);
  Engine engine(std::move(plan));
  bool noted = false;
  Report r = engine.run([&](const Progress&) {
    if (!noted) engine.note_change({"p1:8080"}, {"p9:8080"});
    noted = true;
  });
  ASSERT_EQ(r.changes.size(), 1u);
  // p1 keeps answering after the change: a positive drain, no first answer.
  ASSERT_TRUE(r.changes[0].drain_us.has_value());
  EXPECT_GT(*r.changes[0].drain_us, 0);
  EXPECT_FALSE(r.changes[0].first_answer_us.has_value());
}

}  // namespace
}  // namespace svcproxy::loadtest
