// VipInterface against the kernel, inside a private network namespace (a
// thread that unshare()s its own; root only, skipped otherwise). Never
// touches the host's namespace.
#include "userspace/vip_interface.h"

#include <net/if.h>
#include <sched.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <thread>

#include "tests/support/ip.h"

namespace svcproxy::userspace {
namespace {

using model::IPAddress;
using test_support::ip;

// Runs body on a thread of its own in a fresh network namespace, which dies
// with the thread.
template <typename F>
void in_fresh_netns(F body) {
  std::thread t([&] {
    if (unshare(CLONE_NEWNET) != 0) {
      ADD_FAILURE() << "unshare(CLONE_NEWNET) failed";
      return;
    }
    body();
  });
  t.join();
}

class VipInterfaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces)";
  }
};

TEST_F(VipInterfaceTest, CreatesSetsAddressesByDifferenceAndRemoves) {
  in_fresh_netns([] {
    VipInterface vip("svcproxy0");
    vip.ensure();
    EXPECT_NE(if_nametoindex("svcproxy0"), 0u);
    EXPECT_TRUE(vip.kind() == "dummy" || vip.kind() == "bridge") << vip.kind();
    vip.ensure();  // idempotent

    EXPECT_EQ(vip.set_addresses({ip("10.96.0.10"), ip("10.96.0.11"), ip("fd00:10:96::a")}), 3u);
    EXPECT_EQ(vip.addresses(), (std::vector{ip("10.96.0.10"), ip("10.96.0.11"), ip("fd00:10:96::a")}));
    // Only the difference changes.
    EXPECT_EQ(vip.set_addresses({ip("10.96.0.10"), ip("10.96.0.12"), ip("fd00:10:96::a")}), 2u);
    EXPECT_EQ(vip.addresses(), (std::vector{ip("10.96.0.10"), ip("10.96.0.12"), ip("fd00:10:96::a")}));
    EXPECT_EQ(vip.set_addresses({ip("10.96.0.10"), ip("10.96.0.12"), ip("fd00:10:96::a")}), 0u);

    // A second owner (a restarted daemon) adopts the interface.
    VipInterface again("svcproxy0");
    EXPECT_EQ(again.set_addresses({}), 3u);
    EXPECT_TRUE(again.addresses().empty());

    EXPECT_TRUE(vip.remove());
    EXPECT_EQ(if_nametoindex("svcproxy0"), 0u);
    EXPECT_FALSE(vip.remove());
    EXPECT_FALSE(remove_vip_interface("svcproxy0"));
  });
}

}  // namespace
}  // namespace svcproxy::userspace
