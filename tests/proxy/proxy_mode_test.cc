// --proxy-mode's decision with the feature probe run against an in-memory
// kernel (tests/dataplane/fake_nftables_kernel.h) that refuses an expression
// or refuses this process: the message, the exit code, and auto's fallback.
#include "proxy/proxy_mode.h"

#include <gtest/gtest.h>

#include <cerrno>
#include <sstream>

#include "tests/dataplane/fake_nftables_kernel.h"

namespace svcproxy::proxy {
namespace {

using dataplane::testing::FakeNftablesKernel;

struct Decision {
  std::optional<ProxyMode> chosen;  // nullopt: exit 1
  std::string log;
};

Decision decide(ProxyMode mode, FakeNftablesKernel& kernel) {
  std::ostringstream out;
  Log log(out);
  Decision d;
  d.chosen = choose_proxy_mode(
      mode, [&] { return nftables_unusable(kernel); }, log);
  d.log = out.str();
  return d;
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(ProxyMode, NftablesWithAPassingProbe) {
  FakeNftablesKernel kernel;
  const auto d = decide(ProxyMode::Nftables, kernel);
  EXPECT_EQ(d.chosen, ProxyMode::Nftables);
  EXPECT_TRUE(has(d.log, "proxy mode nftables (--proxy-mode nftables: the nftables probe passed)")) << d.log;
}

TEST(ProxyMode, NftablesWithAMissingFeatureExits1NamingIt) {
  FakeNftablesKernel kernel;
  kernel.refused_expressions = {"fib"};
  const auto d = decide(ProxyMode::Nftables, kernel);
  EXPECT_FALSE(d.chosen);
  EXPECT_EQ(d.log.rfind('E', 0), 0u) << d.log;  // one error line
  EXPECT_TRUE(has(d.log, "--proxy-mode nftables: this kernel's nftables lacks: [fib (fib saddr/daddr type local): "))
      << d.log;
  EXPECT_FALSE(has(d.log, "numgen")) << d.log;
}

TEST(ProxyMode, NftablesWithoutPermissionExits1NamingCapNetAdmin) {
  FakeNftablesKernel kernel;
  kernel.refuse_all = EPERM;
  const auto d = decide(ProxyMode::Nftables, kernel);
  EXPECT_FALSE(d.chosen);
  EXPECT_TRUE(has(d.log, "--proxy-mode nftables: cannot program nftables")) << d.log;
  EXPECT_TRUE(has(d.log, "svcproxy needs CAP_NET_ADMIN")) << d.log;
}

TEST(ProxyMode, AutoWithAPassingProbeChoosesNftables) {
  FakeNftablesKernel kernel;
  const auto d = decide(ProxyMode::Auto, kernel);
  EXPECT_EQ(d.chosen, ProxyMode::Nftables);
  EXPECT_TRUE(has(d.log, "proxy mode nftables (--proxy-mode auto: the nftables probe passed)")) << d.log;
}

TEST(ProxyMode, AutoWithAMissingFeatureFallsBackToUserspaceSayingWhy) {
  FakeNftablesKernel kernel;
  kernel.refused_expressions = {"numgen"};
  const auto d = decide(ProxyMode::Auto, kernel);
  EXPECT_EQ(d.chosen, ProxyMode::Userspace);
  EXPECT_EQ(d.log.rfind('W', 0), 0u) << d.log;
  EXPECT_TRUE(has(d.log, "proxy mode userspace (--proxy-mode auto: nftables unusable: this kernel's nftables lacks: "
                         "[numgen and concatenated data maps (dnat ... map): "))
      << d.log;
  EXPECT_TRUE(has(d.log, "mode=\"userspace\"")) << d.log;
}

TEST(ProxyMode, AutoWithoutPermissionFallsBackNamingCapNetAdmin) {
  FakeNftablesKernel kernel;
  kernel.refuse_all = EPERM;
  const auto d = decide(ProxyMode::Auto, kernel);
  EXPECT_EQ(d.chosen, ProxyMode::Userspace);
  EXPECT_TRUE(has(d.log, "proxy mode userspace (--proxy-mode auto: nftables unusable: ")) << d.log;
  EXPECT_TRUE(has(d.log, "CAP_NET_ADMIN")) << d.log;
}

TEST(ProxyMode, UserspaceNeverRunsTheProbe) {
  FakeNftablesKernel kernel;
  const auto d = decide(ProxyMode::Userspace, kernel);
  EXPECT_EQ(d.chosen, ProxyMode::Userspace);
  EXPECT_TRUE(kernel.transactions.empty());
}

}  // namespace
}  // namespace svcproxy::proxy
