// The modes a flag or config field chooses, as enums. Their text is read
// once, where the command line and the config file are read (commands.cc,
// node_flags.cc, config.cc); everything after that switches on the enum and
// names it again only in messages, logs, metrics and /proxyMode.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace svcproxy::proxy {

// --proxy-mode / mode. After the startup probe (proxy_mode.h) the daemon
// runs Nftables or Userspace; Auto is only ever asked for.
enum class ProxyMode : uint8_t { Nftables, Userspace, Auto };

// --detect-local-mode / detectLocalMode (kube-proxy's names).
enum class DetectLocalMode : uint8_t { ClusterCIDR, NodeCIDR, BridgeInterface, InterfaceNamePrefix };

// --log-format / logging.format.
enum class LogFormat : uint8_t { Text, Json };

// Each mode's text, in the order help and error messages list them.
template <typename Mode>
struct ModeNames;
template <>
struct ModeNames<ProxyMode> {
  static constexpr std::array<std::pair<ProxyMode, std::string_view>, 3> all{
      {{ProxyMode::Nftables, "nftables"}, {ProxyMode::Userspace, "userspace"}, {ProxyMode::Auto, "auto"}}};
};
template <>
struct ModeNames<DetectLocalMode> {
  static constexpr std::array<std::pair<DetectLocalMode, std::string_view>, 4> all{
      {{DetectLocalMode::ClusterCIDR, "ClusterCIDR"},
       {DetectLocalMode::NodeCIDR, "NodeCIDR"},
       {DetectLocalMode::BridgeInterface, "BridgeInterface"},
       {DetectLocalMode::InterfaceNamePrefix, "InterfaceNamePrefix"}}};
};
template <>
struct ModeNames<LogFormat> {
  static constexpr std::array<std::pair<LogFormat, std::string_view>, 2> all{
      {{LogFormat::Text, "text"}, {LogFormat::Json, "json"}}};
};

// A mode enum: one with a ModeNames table.
template <typename T>
concept Mode = requires {
  ModeNames<T>::all;
};

template <Mode M>
constexpr std::string_view to_string(M mode) {
  for (const auto& [m, name] : ModeNames<M>::all)
    if (m == mode) return name;
  return "?";
}

// The mode spelled exactly `text` (case matters, as in kube-proxy); nullopt
// for anything else.
template <Mode M>
constexpr std::optional<M> parse_mode(std::string_view text) {
  for (const auto& [m, name] : ModeNames<M>::all)
    if (name == text) return m;
  return std::nullopt;
}

// Every spelling, for CLI::IsMember.
template <Mode M>
std::vector<std::string> mode_names() {
  std::vector<std::string> out;
  for (const auto& [m, name] : ModeNames<M>::all) out.emplace_back(name);
  return out;
}

}  // namespace svcproxy::proxy
