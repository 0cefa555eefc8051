#include "proxy/conntrack_sysctls.h"

#include <gtest/gtest.h>

#include <map>
#include <set>
#include <sstream>
#include <utility>

namespace svcproxy::proxy {
namespace {

using namespace std::chrono_literals;

constexpr const char* kEstablished = "net/netfilter/nf_conntrack_tcp_timeout_established";
constexpr const char* kCloseWait = "net/netfilter/nf_conntrack_tcp_timeout_close_wait";
constexpr const char* kBeLiberal = "net/netfilter/nf_conntrack_tcp_be_liberal";
constexpr const char* kUdp = "net/netfilter/nf_conntrack_udp_timeout";
constexpr const char* kUdpStream = "net/netfilter/nf_conntrack_udp_timeout_stream";

// The kernel's sysctls in memory; a name missing from `values` cannot be
// read, one in `read_only` cannot be written (as nf_conntrack_max outside
// the initial network namespace).
class FakeSysctls : public SysctlAccess {
 public:
  base::Result<int64_t> read(const std::string& name) override {
    reads.push_back(name);
    const auto it = values.find(name);
    if (it == values.end()) return base::Error{"read /proc/sys/" + name + ": No such file or directory"};
    return it->second;
  }
  base::Result<void> write(const std::string& name, int64_t value) override {
    if (read_only.contains(name)) return base::Error{"open /proc/sys/" + name + ": Permission denied"};
    writes.emplace_back(name, value);
    values[name] = value;
    return {};
  }

  std::map<std::string, int64_t> values;
  std::set<std::string> read_only;
  std::vector<std::string> reads;
  std::vector<std::pair<std::string, int64_t>> writes;
};

// A fresh kernel namespace's values (6.18): nothing as kube-proxy wants it.
FakeSysctls kernel_defaults() {
  FakeSysctls k;
  k.values = {{kConntrackMax, 65536}, {kConntrackHashsize, 16384},
              {kEstablished, 432000}, {kCloseWait, 60},
              {kBeLiberal, 0},        {kUdp, 30},
              {kUdpStream, 120}};
  return k;
}

using Writes = std::vector<std::pair<std::string, int64_t>>;

TEST(ConntrackMax, IsPerCoreTimesCpusWithTheMinimumAsFloor) {
  ConntrackSettings s;  // kube-proxy's defaults: 32768 per core, at least 131072
  EXPECT_EQ(conntrack_max(s, 2), 131072);
  EXPECT_EQ(conntrack_max(s, 4), 131072);
  EXPECT_EQ(conntrack_max(s, 8), 262144);
  s.min = 0;
  EXPECT_EQ(conntrack_max(s, 2), 65536);
  s.max_per_core = 0;  // leave it alone, whatever the minimum
  s.min = 131072;
  EXPECT_EQ(conntrack_max(s, 8), 0);
}

TEST(ConntrackSysctls, DefaultsWriteWhatKubeProxyWrites) {
  auto k = kernel_defaults();
  const auto outcomes = apply_conntrack_sysctls(ConntrackSettings{}, 2, k);
  // The hash table is raised to max/4 after the limit; UDP timeouts and
  // tcp_be_liberal are not asked for by default.
  EXPECT_EQ(k.writes,
            (Writes{{kConntrackMax, 131072}, {kConntrackHashsize, 32768}, {kEstablished, 86400}, {kCloseWait, 3600}}));
  ASSERT_EQ(outcomes.size(), 4u);
  for (const auto& o : outcomes) {
    EXPECT_TRUE(o.written) << o.name;
    EXPECT_TRUE(o.problem.empty()) << o.problem;
  }
  EXPECT_EQ(outcomes[0].was, 65536);
  EXPECT_EQ(outcomes[3].was, 60);
}

TEST(ConntrackSysctls, WritesOnlyWhatDiffers) {
  auto k = kernel_defaults();
  k.values[kConntrackMax] = 131072;
  k.values[kEstablished] = 86400;
  const auto outcomes = apply_conntrack_sysctls(ConntrackSettings{}, 2, k);
  EXPECT_EQ(k.writes, (Writes{{kConntrackHashsize, 32768}, {kCloseWait, 3600}}));
  EXPECT_FALSE(outcomes[0].written);
  EXPECT_TRUE(outcomes[0].problem.empty());

  // Applied twice: the second time writes nothing.
  k.writes.clear();
  (void)apply_conntrack_sysctls(ConntrackSettings{}, 2, k);
  EXPECT_TRUE(k.writes.empty());
}

TEST(ConntrackSysctls, HashsizeIsOnlyEverRaised) {
  auto k = kernel_defaults();
  k.values[kConntrackHashsize] = 65536;  // above max/4: left alone, never lowered
  (void)apply_conntrack_sysctls(ConntrackSettings{}, 2, k);
  EXPECT_EQ(k.values[kConntrackHashsize], 65536);
  k.values[kConntrackHashsize] = 32767;  // one below max/4
  (void)apply_conntrack_sysctls(ConntrackSettings{}, 2, k);
  EXPECT_EQ(k.values[kConntrackHashsize], 32768);
}

TEST(ConntrackSysctls, ZeroLeavesASysctlAlone) {
  auto k = kernel_defaults();
  ConntrackSettings s;
  s.max_per_core = 0;
  s.tcp_established_timeout = 0s;
  s.tcp_close_wait_timeout = 0s;
  EXPECT_TRUE(apply_conntrack_sysctls(s, 2, k).empty());
  EXPECT_TRUE(k.reads.empty());  // not even read
  EXPECT_TRUE(k.writes.empty());
}

TEST(ConntrackSysctls, EveryTimeoutAndBeLiberal) {
  auto k = kernel_defaults();
  ConntrackSettings s;
  s.max_per_core = 0;
  s.tcp_established_timeout = 2h;
  s.tcp_close_wait_timeout = 30min;
  s.tcp_be_liberal = true;
  s.udp_timeout = 45s;
  s.udp_stream_timeout = 3min;
  (void)apply_conntrack_sysctls(s, 2, k);
  EXPECT_EQ(k.writes,
            (Writes{{kEstablished, 7200}, {kCloseWait, 1800}, {kBeLiberal, 1}, {kUdp, 45}, {kUdpStream, 180}}));
}

// Outside the initial network namespace nf_conntrack_max is read-only: it is
// reported, the hash table is left alone (as kube-proxy, it follows the
// limit), and the per-namespace timeouts are still set.
TEST(ConntrackSysctls, AReadOnlyLimitIsReportedAndTheRestApplied) {
  auto k = kernel_defaults();
  k.read_only = {kConntrackMax};
  const auto outcomes = apply_conntrack_sysctls(ConntrackSettings{}, 2, k);
  EXPECT_EQ(k.writes, (Writes{{kEstablished, 86400}, {kCloseWait, 3600}}));
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[0].name, kConntrackMax);
  EXPECT_FALSE(outcomes[0].written);
  EXPECT_EQ(outcomes[0].problem, "open /proc/sys/net/netfilter/nf_conntrack_max: Permission denied");
  EXPECT_EQ(outcomes[0].was, 65536);
}

TEST(ConntrackSysctls, MissingSysctlsAreReportedNotFatal) {
  FakeSysctls nothing;  // nf_conntrack not loaded
  nothing.read_only = {kConntrackMax, kEstablished, kCloseWait};
  const auto outcomes = apply_conntrack_sysctls(ConntrackSettings{}, 2, nothing);
  ASSERT_EQ(outcomes.size(), 3u);
  for (const auto& o : outcomes) {
    EXPECT_FALSE(o.written);
    EXPECT_EQ(o.was, -1);
    EXPECT_FALSE(o.problem.empty());
  }
}

TEST(ConntrackSysctls, LogsOneLinePerSysctlWrittenOrRefused) {
  auto k = kernel_defaults();
  k.read_only = {kConntrackMax};
  k.values[kEstablished] = 86400;  // already so: no line
  std::ostringstream out;
  Log log(out);
  log_conntrack_sysctls(apply_conntrack_sysctls(ConntrackSettings{}, 2, k), log);
  std::vector<std::string> lines;
  std::istringstream in(out.str());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 2u) << out.str();
  EXPECT_EQ(lines[0][0], 'W');
  EXPECT_NE(lines[0].find("conntrack sysctl left as it is sysctl=\"net/netfilter/nf_conntrack_max\" value=131072 "
                          "current=65536"),
            std::string::npos)
      << lines[0];
  EXPECT_NE(lines[0].find("only the initial network namespace"), std::string::npos) << lines[0];
  EXPECT_EQ(lines[1][0], 'I');
  EXPECT_NE(lines[1].find("conntrack sysctl set sysctl=\"net/netfilter/nf_conntrack_tcp_timeout_close_wait\" "
                          "value=3600 was=60"),
            std::string::npos)
      << lines[1];
}

TEST(ConntrackTimeout, WholeSecondsOrZero) {
  EXPECT_EQ(conntrack_timeout(0ns), 0s);
  EXPECT_EQ(conntrack_timeout(90s), 90s);
  EXPECT_EQ(conntrack_timeout(1500ms), 1s);  // rounded down, as kube-proxy
  EXPECT_THROW(conntrack_timeout(500ms), std::invalid_argument);
  EXPECT_THROW(conntrack_timeout(-1s), std::invalid_argument);
}

}  // namespace
}  // namespace svcproxy::proxy
