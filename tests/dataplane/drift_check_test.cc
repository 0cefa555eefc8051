// DriftCheck, the thread that runs drift checks, with a fake readback (no
// kernel, no root): results arrive on its fd, one check at a time, failures
// are told apart, and a raced readback never adds a chain twice.
#include <gtest/gtest.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>

#include "dataplane/drift_check.h"
#include "dataplane/netlink_decode.h"
#include "tests/dataplane/random_ports.h"

namespace svcproxy::dataplane {
namespace {

using model::IPAddress;
using model::IPFamily;
using model::ServicePortState;
using testing::node;

using testing::port;

ir::Table& table(ir::Ruleset& r) { return r.tables.at(0); }
ir::Set& set(ir::Ruleset& r, const std::string& name) {
  auto& sets = table(r).sets;
  return *std::find_if(sets.begin(), sets.end(), [&](const ir::Set& s) { return s.name == name; });
}

// The worker: a fake readback, a result announced on the fd.
TEST(DriftCheck, ReportsTheRepairOnItsFdAndIsBusyUntilTaken) {
  const std::vector<ServicePortState> ports{port("a", 10, {1, 2}), port("b", 11, {3})};
  ir::Ruleset kernel = compile(ports, node()).ruleset;
  set(kernel, "cluster-ip").elements.pop_back();
  int reads = 0;
  DriftCheck check([&] {
    ++reads;
    return DriftCheck::Readback{kernel, false};
  });
  EXPECT_FALSE(check.take_result());
  ASSERT_TRUE(check.start({{std::make_shared<const std::vector<ServicePortState>>(ports)}, node()}));
  EXPECT_TRUE(check.busy());
  EXPECT_FALSE(check.start({{std::make_shared<const std::vector<ServicePortState>>(ports)}, node()}));
  pollfd fd{check.fd(), POLLIN, 0};
  ASSERT_EQ(poll(&fd, 1, 10000), 1);
  auto result = check.take_result();
  ASSERT_TRUE(result);
  EXPECT_EQ(result->error, "");
  EXPECT_EQ(result->repair.operations(), 1u);
  EXPECT_EQ(result->kernel_elements + 1, [&] {
    size_t n = 0;
    for (const auto& t : compile(ports, node()).ruleset.tables)
      for (const auto& s : t.sets) n += s.elements.size();
    return n;
  }());
  EXPECT_FALSE(check.busy());
  EXPECT_EQ(poll(&fd, 1, 0), 0) << "the fd stays readable after the result was taken";
  EXPECT_EQ(reads, 1);
}

TEST(DriftCheck, ReadbackFailuresAreReportedForeignObjectsAskForAFullSync) {
  const auto ports = std::make_shared<const std::vector<ServicePortState>>();
  bool foreign = false;
  DriftCheck check([&]() -> DriftCheck::Readback {
    if (foreign) throw DecodeError("rule 1 of chain ip svcproxy services: expression 1 (counter)");
    throw NetlinkError("netlink: the ruleset kept changing", EAGAIN);
  });
  auto run = [&] {
    EXPECT_TRUE(check.start({{ports}, node()}));
    pollfd fd{check.fd(), POLLIN, 0};
    EXPECT_EQ(poll(&fd, 1, 10000), 1);
    return *check.take_result();
  };
  auto busy = run();
  EXPECT_NE(busy.error.find("kept changing"), std::string::npos);
  EXPECT_FALSE(busy.repair.needs_full_sync);
  foreign = true;
  auto alien = run();
  EXPECT_NE(alien.error.find("counter"), std::string::npos);
  EXPECT_TRUE(alien.repair.needs_full_sync);
}

TEST(DriftCheck, ARacedReadbackRewritesChainsItMissedInsteadOfAddingThem) {
  const std::vector<ServicePortState> ports{port("a", 10, {1, 2})};
  ir::Ruleset kernel = compile(ports, node()).ruleset;
  auto& chains = table(kernel).chains;
  chains.erase(std::find_if(chains.begin(), chains.end(), [](auto& c) { return c.name == "no-endpoints"; }));
  DriftCheck check([&] { return DriftCheck::Readback{kernel, true}; });
  ASSERT_TRUE(check.start({{std::make_shared<const std::vector<ServicePortState>>(ports)}, node()}));
  pollfd fd{check.fd(), POLLIN, 0};
  ASSERT_EQ(poll(&fd, 1, 10000), 1);
  const auto result = check.take_result();
  ASSERT_TRUE(result);
  EXPECT_TRUE(result->raced);
  ASSERT_EQ(result->repair.tables[0].replaced_chains.size(), 1u);
  EXPECT_EQ(result->repair.tables[0].replaced_chains[0].name, "no-endpoints");
  EXPECT_TRUE(result->repair.tables[0].added_chains.empty());
}

}  // namespace
}  // namespace svcproxy::dataplane
