// The feature probe against an in-memory kernel (fake_nftables_kernel.h):
// which features it reports missing when the kernel refuses an expression,
// and what it says when nf_tables refuses this process altogether. The real
// kernel's answer is tested in partial_sync_test.cc (FeatureProbe).
#include <gtest/gtest.h>
#include <linux/netfilter/nf_tables.h>

#include <cerrno>
#include <cstring>
#include <set>

#include "dataplane/probe.h"
#include "tests/dataplane/fake_nftables_kernel.h"

namespace svcproxy::dataplane {
namespace {

using testing::FakeNftablesKernel;

std::vector<std::string> names(const std::vector<MissingFeature>& missing) {
  std::vector<std::string> out;
  for (const auto& m : missing) out.push_back(m.feature);
  return out;
}

TEST(FeatureProbeFake, EveryFeaturePassesAndEachTransactionDeletesWhatItCreated) {
  FakeNftablesKernel kernel;
  EXPECT_TRUE(probe_nftables_features(kernel).empty());
  ASSERT_EQ(kernel.transactions.size(), 10u);
  std::set<std::string> expressions;
  for (const auto& t : kernel.transactions) {
    ASSERT_FALSE(t.messages.empty());
    EXPECT_EQ(t.messages.front().type, NFT_MSG_NEWTABLE);
    EXPECT_EQ(t.messages.back().type, NFT_MSG_DELTABLE);  // nothing lasts
    for (const auto& m : t.messages) expressions.insert(m.expressions.begin(), m.expressions.end());
  }
  // Every expression the ruleset uses is tried.
  for (const char* name : {"nat", "masq", "ct", "fib", "reject", "meta", "lookup", "numgen", "dynset"})
    EXPECT_EQ(expressions.count(name), 1u) << name;
}

TEST(FeatureProbeFake, ARefusedExpressionNamesTheFeatureAndTheKernelsAnswer) {
  FakeNftablesKernel kernel;
  kernel.refused_expressions = {"fib"};
  const auto missing = probe_nftables_features(kernel);
  ASSERT_EQ(names(missing), std::vector<std::string>{"fib (fib saddr/daddr type local)"});
  EXPECT_NE(missing[0].error.find("rule 1 of chain ip svcproxy-probe probe (fib daddr type local accept)"),
            std::string::npos)
      << missing[0].error;
  EXPECT_NE(missing[0].error.find("No such file or directory"), std::string::npos) << missing[0].error;
  // The others were still tried.
  EXPECT_EQ(kernel.transactions.size(), 10u);
}

TEST(FeatureProbeFake, AnExpressionSeveralFeaturesUseMakesEachOfThemMissing) {
  FakeNftablesKernel kernel;
  kernel.refused_expressions = {"numgen"};
  EXPECT_EQ(names(probe_nftables_features(kernel)),
            (std::vector<std::string>{"numgen and concatenated data maps (dnat ... map)",
                                      "anonymous numgen verdict maps"}));
  kernel.refused_expressions = {"dynset"};
  EXPECT_EQ(names(probe_nftables_features(kernel)),
            std::vector<std::string>{"dynamic sets with timeouts (session affinity)"});
}

TEST(FeatureProbeFake, PermissionDeniedNamesCapNetAdminOnce) {
  FakeNftablesKernel kernel;
  kernel.refuse_all = EPERM;
  try {
    probe_nftables_features(kernel);
    FAIL() << "expected NetlinkError";
  } catch (const NetlinkError& e) {
    EXPECT_EQ(e.error(), EPERM);
    EXPECT_NE(std::string(e.what()).find("CAP_NET_ADMIN"), std::string::npos) << e.what();
  }
  EXPECT_EQ(kernel.transactions.size(), 1u);  // no point trying the other features
}

TEST(FeatureProbeFake, OtherWholeBatchRefusalsAreMissingFeaturesNotPermission) {
  FakeNftablesKernel kernel;
  kernel.refuse_all = EOPNOTSUPP;
  const auto missing = probe_nftables_features(kernel);
  EXPECT_EQ(missing.size(), 10u);
  EXPECT_NE(missing[0].error.find(std::strerror(EOPNOTSUPP)), std::string::npos) << missing[0].error;
}

}  // namespace
}  // namespace svcproxy::dataplane
