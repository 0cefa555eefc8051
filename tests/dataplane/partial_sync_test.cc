// Partial syncs against the real kernel, each test in a fresh network
// namespace of its own: after every update programmed as a partial sync, the
// kernel holds exactly what a full compile of the current model gives.
#include <gtest/gtest.h>
#include <unistd.h>

#include <random>
#include <sstream>

#include "dataplane/compile.h"
#include "dataplane/kernel.h"
#include "dataplane/probe.h"
#include "dataplane/render.h"
#include "tests/dataplane/netlink_test_kernel.h"
#include "tests/dataplane/random_ports.h"

namespace svcproxy::dataplane {
namespace {

using testing::flatten;
using testing::node;
using testing::random_port;
using testing::run_in_fresh_netns;

#define REQUIRE_ROOT() \
  if (geteuid() != 0) GTEST_SKIP() << "needs root (network namespaces, nf_tables)"

// "" if equal, else the first differing line of the two renderings.
std::string first_difference(const ir::Ruleset& want, const ir::Ruleset& got) {
  if (want == got) return {};
  std::istringstream a(render_nft(want, {false})), b(render_nft(got, {false}));
  std::string la, lb;
  for (int line = 1;; ++line) {
    const bool more_a = static_cast<bool>(std::getline(a, la));
    const bool more_b = static_cast<bool>(std::getline(b, lb));
    if (!more_a && !more_b) return "rulesets differ outside their text";
    if (la != lb || more_a != more_b)
      return "line " + std::to_string(line) + ": want \"" + la + "\", kernel has \"" + lb + "\"";
  }
}

TEST(PartialSync, TwoHundredFiftyRandomUpdatesKeepTheKernelEqualToAFullCompile) {
  REQUIRE_ROOT();
  auto result = run_in_fresh_netns([] {
    std::mt19937 rng(77);
    std::map<int, std::vector<model::ServicePortState>> services;
    for (int id = 0; id < 30; ++id) services[id] = {random_port(rng, id, 0)};
    RulesetCompiler compiler(node());
    compiler.reset(flatten(services));
    NetlinkBackend backend;
    backend.apply_full(compiler.ruleset());
    int partial = 0;
    for (int step = 0; step < 250; ++step) {
      std::vector<model::ObjectRef> touched;
      std::vector<model::ServicePortState> ports;
      for (int c = 0, n = 1 + static_cast<int>(rng() % 3); c < n; ++c) {
        const int id = static_cast<int>(rng() % 40);
        touched.push_back({"ns", "svc" + std::to_string(id)});
        if (rng() % 4 == 0) {
          services.erase(id);
        } else {
          services[id] = {random_port(rng, id, 0)};
          if (rng() % 3 == 0) services[id].push_back(random_port(rng, id, 1));
        }
      }
      for (const auto& ref : touched) {
        auto it = services.find(std::stoi(ref.name.substr(3)));
        if (it != services.end()) ports.insert(ports.end(), it->second.begin(), it->second.end());
      }
      const RulesetDiff diff = compiler.update(touched, ports);
      if (diff.needs_full_sync) {
        backend.apply_full(compiler);
      } else {
        backend.apply_partial(diff, compiler);
        ++partial;
      }
      const ir::Ruleset want = compile(flatten(services), node()).ruleset;
      const std::string diff_text = first_difference(want, backend.read_back());
      if (!diff_text.empty()) throw std::runtime_error("step " + std::to_string(step) + ": " + diff_text);
    }
    if (partial < 200) throw std::runtime_error("only " + std::to_string(partial) + " partial syncs");
    return std::string();
  });
  EXPECT_TRUE(result.ok) << result.output;
}

TEST(PartialSync, FullSyncByReferenceProgramsExactlyTheCompiledRuleset) {
  REQUIRE_ROOT();
  auto result = run_in_fresh_netns([] {
    std::mt19937 rng(11);
    std::map<int, std::vector<model::ServicePortState>> services;
    for (int id = 0; id < 60; ++id) {
      services[id] = {random_port(rng, id, 0)};
      if (rng() % 3 == 0) services[id].push_back(random_port(rng, id, 1));
    }
    RulesetCompiler compiler(node());
    compiler.reset(flatten(services));
    NetlinkBackend backend;
    for (int round = 0; round < 3; ++round) {
      backend.apply_full(compiler);  // encoded from the compiler's state, no copy
      const std::string diff = first_difference(compiler.ruleset(), backend.read_back());
      if (!diff.empty()) throw std::runtime_error("round " + std::to_string(round) + ": " + diff);
      // Change a third of the services; the next full sync replaces all.
      std::vector<model::ObjectRef> touched;
      std::vector<model::ServicePortState> ports;
      for (int id = round; id < 60; id += 3) {
        touched.push_back({"ns", "svc" + std::to_string(id)});
        services[id] = {random_port(rng, id, 0)};
        ports.insert(ports.end(), services[id].begin(), services[id].end());
      }
      compiler.update(touched, ports);
    }
    return std::string();
  });
  EXPECT_TRUE(result.ok) << result.output;
}

TEST(PartialSync, ARejectedPartialSyncChangesNothingAndAFullSyncRecovers) {
  REQUIRE_ROOT();
  auto result = run_in_fresh_netns([] {
    std::mt19937 rng(5);
    std::vector<model::ServicePortState> ports;
    for (int id = 1; id < 20; ++id) ports.push_back(random_port(rng, id, 0));
    RulesetCompiler compiler(node());
    compiler.reset(ports);
    NetlinkBackend backend;
    backend.apply_full(compiler.ruleset());
    const ir::Ruleset before = backend.read_back();

    // A real change plus one element the kernel must refuse (a verdict to
    // a chain that does not exist): the whole transaction must fail.
    auto changed = ports[3];
    changed.cluster_endpoints.clear();
    RulesetDiff diff = compiler.update({changed.name.service}, {changed});
    if (diff.empty()) throw std::runtime_error("the change produced no diff");
    auto& td = diff.tables[changed.name.family == model::IPFamily::V4 ? 0 : 1];
    ir::Element bogus;
    bogus.key = {model::IPAddress::v4(10, 96, 9, 9), model::Protocol::TCP, uint16_t{80}};
    bogus.verdict = ir::Verdict{ir::VerdictKind::Goto, "no-such-chain"};
    td.added_elements.emplace_back(names::kServiceIPs, bogus);
    try {
      backend.apply_partial(diff, compiler);
      throw std::runtime_error("the kernel accepted a verdict to a missing chain");
    } catch (const NetlinkError& e) {
      if (std::string(e.what()).find("no-such-chain") == std::string::npos &&
          std::string(e.what()).find("service-ips") == std::string::npos)
        throw std::runtime_error(std::string("error does not name the object: ") + e.what());
    }
    if (backend.in_sync()) throw std::runtime_error("in sync after a failed transaction");
    const std::string unchanged = first_difference(before, backend.read_back());
    if (!unchanged.empty()) throw std::runtime_error("failed transaction changed the kernel: " + unchanged);
    backend.apply_full(compiler.ruleset());
    const std::string recovered = first_difference(compiler.ruleset(), backend.read_back());
    if (!recovered.empty()) throw std::runtime_error("full sync did not recover: " + recovered);
    return std::string();
  });
  EXPECT_TRUE(result.ok) << result.output;
}

}  // namespace
}  // namespace svcproxy::dataplane

namespace svcproxy::dataplane {
namespace {

TEST(FeatureProbe, FindsEveryFeatureOnThisKernelAndLeavesNothingBehind) {
  REQUIRE_ROOT();
  auto result = testing::run_in_fresh_netns([] {
    NetlinkSocket socket;
    const auto missing = probe_nftables_features(socket);
    std::string out;
    for (const auto& m : missing) out += m.feature + ": " + m.error + "\n";
    if (!missing.empty()) throw std::runtime_error("missing features:\n" + out);
    if (!testing::shell("nft list tables").empty()) throw std::runtime_error("the probe left a table behind");
    return std::string();
  });
  EXPECT_TRUE(result.ok) << result.output;
}

}  // namespace
}  // namespace svcproxy::dataplane
