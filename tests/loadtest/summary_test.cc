#include "loadtest/summary.h"

#include <gtest/gtest.h>

#include "loadtest/progress_line.h"

namespace svcproxy::loadtest {
namespace {

Report sample() {
  Report r;
  r.target = "10.96.0.10:80";
  r.address = "10.96.0.10:80";
  r.concurrency = 16;
  r.threads = 2;
  r.duration_s = 2;
  r.requests = 1002;
  r.answers = 1000;
  r.errors.refused = 2;
  r.latency = {1000, 2000, 3000, 4000, 5000};
  r.latency_uncorrected = {900, 1000, 1100, 1200, 1300};
  for (const char* name : {"10.0.0.1:80", "10.0.0.2:80"}) {
    EndpointStats e;
    e.endpoint = name;
    e.count = 500;
    e.share = 0.5;
    e.latency.p99_us = 2500;
    r.endpoints.push_back(e);
  }
  r.fairness = {0.9, 1.0, 2, "answered"};
  return r;
}

TEST(Summary, ClosedLoop) {
  const std::string text = render_summary(sample());
  EXPECT_NE(text.find("request load on 10.96.0.10:80, 16 in flight over 2 threads, closed loop"), std::string::npos)
      << text;
  EXPECT_NE(text.find("1002 requests in 2.0s, 501.0/s; 1000 answered, 2 errors"), std::string::npos) << text;
  EXPECT_NE(text.find("errors: refused 2, timeout 0, reset 0, other 0"), std::string::npos) << text;
  EXPECT_NE(text.find("10.0.0.1:80 ###############                      500  50.0%  p99 2.5ms"), std::string::npos)
      << text;
  EXPECT_NE(text.find("chi-square p = 0.9, max/min = 1.00"), std::string::npos) << text;
  EXPECT_EQ(text.find("uncorrected"), std::string::npos) << text;
  EXPECT_EQ(text.find("FAILED"), std::string::npos);
}

TEST(Summary, OpenLoopViolationsChangesAndFailures) {
  Report r = sample();
  r.open_loop = true;
  r.rate = 250;
  r.violations.push_back({"10.0.0.9:80", 7, "unready"});
  EndpointChange c;
  c.at_us = 1'500'000;
  c.removed = {"10.0.0.9:80"};
  c.drain_us = 12'000;
  c.added = {"10.0.0.3:80"};
  r.changes.push_back(c);
  const std::string text = render_summary(r, {"p99>1ms (p99 was 3ms)", "errors>0 (errors was 2)"});
  EXPECT_NE(text.find("open loop at 250.0/s"), std::string::npos) << text;
  EXPECT_NE(text.find("uncorrected  p50 900us"), std::string::npos) << text;
  EXPECT_NE(text.find("10.0.0.9:80: 7 answers (unready)"), std::string::npos) << text;
  EXPECT_NE(text.find("at 1.5s  removed 10.0.0.9:80: last answer +12ms after  added 10.0.0.3:80: no answer yet"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("FAILED: p99>1ms (p99 was 3ms); errors>0 (errors was 2)\n"), std::string::npos) << text;
}

TEST(ProgressLine, NamesTheBusiestEndpoints) {
  Progress p;
  p.elapsed_s = 3.25;
  p.requests_per_s = 41230;
  p.errors = 4;
  p.p99_us = 1200;
  p.busiest = {{"10.0.0.1:80", 900}, {"10.0.0.2:80", 800}};
  EXPECT_EQ(render_progress(p), "   3.2s      41230 req/s  errors 4  p99 1.2ms  10.0.0.1:80 900, 10.0.0.2:80 800");
  p.p99_us = 0;
  p.busiest.clear();
  EXPECT_EQ(render_progress(p), "   3.2s      41230 req/s  errors 4  p99 -");
}

}  // namespace
}  // namespace svcproxy::loadtest
