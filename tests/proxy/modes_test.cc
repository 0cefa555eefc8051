// The mode enums and their flags: every spelling reads back as its enum,
// anything else is refused with the message the string flags gave.
#include "proxy/modes.h"

#include <gtest/gtest.h>

#include <CLI/CLI.hpp>

#include "proxy/node_flags.h"

namespace svcproxy::proxy {
namespace {

template <Mode M>
void expect_round_trip() {
  for (const auto& [mode, name] : ModeNames<M>::all) {
    EXPECT_EQ(to_string(mode), name);
    EXPECT_EQ(parse_mode<M>(name), mode) << name;
  }
}

TEST(Modes, EverySpellingReadsBackAsItsMode) {
  expect_round_trip<ProxyMode>();
  expect_round_trip<DetectLocalMode>();
  expect_round_trip<LogFormat>();
  EXPECT_EQ(mode_names<ProxyMode>(), (std::vector<std::string>{"nftables", "userspace", "auto"}));
  EXPECT_EQ(mode_names<DetectLocalMode>(),
            (std::vector<std::string>{"ClusterCIDR", "NodeCIDR", "BridgeInterface", "InterfaceNamePrefix"}));
  EXPECT_EQ(mode_names<LogFormat>(), (std::vector<std::string>{"text", "json"}));
}

TEST(Modes, SpellingsAreExactAsKubeProxys) {
  EXPECT_FALSE(parse_mode<ProxyMode>("NFTABLES"));
  EXPECT_FALSE(parse_mode<ProxyMode>("iptables"));
  EXPECT_FALSE(parse_mode<ProxyMode>(""));
  EXPECT_FALSE(parse_mode<DetectLocalMode>("clustercidr"));
  EXPECT_FALSE(parse_mode<LogFormat>("json "));
}

// What a command line leaves in the flag, or CLI11's error text.
template <Mode M>
std::string parse_flag(std::vector<std::string> args, M& mode) {
  CLI::App app;
  add_mode_option(app, "--mode", mode, "help");
  args.insert(args.begin(), "svcproxy");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return e.what();
  }
  return std::string(to_string(mode));
}

TEST(Modes, FlagsParseIntoTheEnumAndKeepTheirDefault) {
  ProxyMode proxy = ProxyMode::Nftables;
  EXPECT_EQ(parse_flag({}, proxy), "nftables");
  EXPECT_EQ(parse_flag({"--mode", "auto"}, proxy), "auto");
  EXPECT_EQ(proxy, ProxyMode::Auto);
  LogFormat format = LogFormat::Text;
  EXPECT_EQ(parse_flag({"--mode=json"}, format), "json");
  EXPECT_EQ(format, LogFormat::Json);
}

TEST(Modes, BadFlagValuesGiveTheMessageOfTheStringFlags) {
  ProxyMode proxy = ProxyMode::Nftables;
  EXPECT_EQ(parse_flag({"--mode", "bogus"}, proxy), "--mode: bogus not in {nftables,userspace,auto}");
  EXPECT_EQ(proxy, ProxyMode::Nftables);
  DetectLocalMode detect = DetectLocalMode::ClusterCIDR;
  EXPECT_EQ(parse_flag({"--mode", "Bogus"}, detect),
            "--mode: Bogus not in {ClusterCIDR,NodeCIDR,BridgeInterface,InterfaceNamePrefix}");
}

}  // namespace
}  // namespace svcproxy::proxy
