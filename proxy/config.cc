#include "proxy/config.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "model/ip.h"
#include "proxy/http_server.h"

namespace svcproxy::proxy {

using namespace std::chrono_literals;

// ---- Go durations -----------------------------------------------------------

std::chrono::nanoseconds parse_go_duration(std::string_view text) {
  const std::string original(text);
  auto fail = [&](const std::string& why) -> std::chrono::nanoseconds {
    throw std::invalid_argument("invalid duration \"" + original + "\": " + why +
                                " (want e.g. 500ms, 30s, 1m0s, 2h45m)");
  };
  bool negative = false;
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
    negative = text[0] == '-';
    text.remove_prefix(1);
  }
  if (text == "0") return 0ns;
  if (text.empty()) return fail("empty");
  long double total = 0;
  while (!text.empty()) {
    size_t i = 0;
    long double value = 0;
    bool digits = false;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, digits = true) value = value * 10 + (text[i] - '0');
    if (i < text.size() && text[i] == '.') {
      long double scale = 0.1L;
      for (++i; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i, digits = true, scale /= 10)
        value += (text[i] - '0') * scale;
    }
    if (!digits) return fail("expected a number");
    size_t u = i;
    while (u < text.size() && !(text[u] >= '0' && text[u] <= '9') && text[u] != '.') ++u;
    const std::string_view unit = text.substr(i, u - i);
    long double ns_per_unit = 0;
    if (unit == "ns") ns_per_unit = 1;
    else if (unit == "us" || unit == "\xC2\xB5s" || unit == "\xCE\xBCs") ns_per_unit = 1e3L;
    else if (unit == "ms") ns_per_unit = 1e6L;
    else if (unit == "s") ns_per_unit = 1e9L;
    else if (unit == "m") ns_per_unit = 60e9L;
    else if (unit == "h") ns_per_unit = 3600e9L;
    else if (unit.empty()) return fail("missing unit");
    else return fail("unknown unit \"" + std::string(unit) + "\"");
    total += value * ns_per_unit;
    text.remove_prefix(u);
  }
  if (total > 9.2e18L) return fail("out of range");
  const auto ns = std::chrono::nanoseconds(static_cast<int64_t>(std::llround(total)));
  return negative ? -ns : ns;
}

std::string format_go_duration(std::chrono::nanoseconds d) {
  int64_t ns = d.count();
  if (ns == 0) return "0s";
  std::string sign = ns < 0 ? "-" : "";
  uint64_t u = ns < 0 ? static_cast<uint64_t>(-(ns + 1)) + 1 : static_cast<uint64_t>(ns);
  // Below a second: one unit with a fraction ("1.5ms").
  auto with_fraction = [](uint64_t value, uint64_t per, const char* unit) {
    std::string s = std::to_string(value / per);
    if (value % per) {
      std::string frac = std::to_string(value % per);
      frac.insert(0, std::to_string(per).size() - 1 - frac.size(), '0');
      while (frac.back() == '0') frac.pop_back();
      s += "." + frac;
    }
    return s + unit;
  };
  if (u < 1000) return sign + std::to_string(u) + "ns";
  if (u < 1000000) return sign + with_fraction(u, 1000, "us");
  if (u < 1000000000) return sign + with_fraction(u, 1000000, "ms");
  const uint64_t hours = u / 3600000000000ULL;
  u %= 3600000000000ULL;
  const uint64_t minutes = u / 60000000000ULL;
  u %= 60000000000ULL;
  std::string out = sign;
  if (hours) out += std::to_string(hours) + "h";
  if (hours || minutes) out += std::to_string(minutes) + "m";
  return out + with_fraction(u, 1000000000, "s");
}

// ---- the file ----------------------------------------------------------------

namespace {

constexpr const char* kApiVersion = "kubeproxy.config.k8s.io/v1alpha1";

class Reader {
 public:
  Reader(const std::string& name, ProxyConfigFile& out) : name_(name), out_(out) {}

  [[noreturn]] void fail(const std::string& field, const std::string& why) const {
    throw ConfigError(name_ + ": " + field + ": " + why);
  }

  // The node at a dotted path, or an undefined node; marks it as read.
  YAML::Node at(const YAML::Node& root, const std::string& path) {
    read_.insert(path);
    YAML::Node node = root;
    size_t start = 0;
    while (start <= path.size()) {
      const size_t dot = path.find('.', start);
      const std::string key = path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
      if (!node.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
      const YAML::Node child = static_cast<const YAML::Node&>(node)[key];
      if (!child) return YAML::Node(YAML::NodeType::Undefined);
      node.reset(child);
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    return node;
  }

  // A scalar field; nullopt when absent or null.
  std::optional<std::string> string(const YAML::Node& root, const std::string& path) {
    const YAML::Node n = at(root, path);
    if (!n || n.IsNull()) return std::nullopt;
    if (!n.IsScalar()) fail(path, "want a string");
    return n.Scalar();
  }

  std::optional<int64_t> integer(const YAML::Node& root, const std::string& path) {
    const YAML::Node n = at(root, path);
    if (!n || n.IsNull()) return std::nullopt;
    if (!n.IsScalar() || n.Tag() == "!") fail(path, "want an integer, got " + describe(n));
    const std::string& s = n.Scalar();
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(s, &used, 10);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != s.size()) fail(path, "want an integer, got " + describe(n));
    return v;
  }

  std::optional<bool> boolean(const YAML::Node& root, const std::string& path) {
    const YAML::Node n = at(root, path);
    if (!n || n.IsNull()) return std::nullopt;
    bool v = false;
    if (!n.IsScalar() || n.Tag() == "!" || !YAML::convert<bool>::decode(n, v))
      fail(path, "want true or false, got " + describe(n));
    return v;
  }

  std::optional<std::chrono::nanoseconds> duration(const YAML::Node& root, const std::string& path) {
    const YAML::Node n = at(root, path);
    if (!n || n.IsNull()) return std::nullopt;
    if (!n.IsScalar()) fail(path, "want a duration such as \"30s\"");
    try {
      return parse_go_duration(n.Scalar());
    } catch (const std::invalid_argument& e) {
      fail(path, e.what());
    }
  }

  std::optional<std::vector<std::string>> strings(const YAML::Node& root, const std::string& path) {
    const YAML::Node n = at(root, path);
    if (!n || n.IsNull()) return std::nullopt;
    if (!n.IsSequence()) fail(path, "want a list of strings");
    std::vector<std::string> out;
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar()) fail(path + "[" + std::to_string(i) + "]", "want a string");
      out.push_back(n[i].Scalar());
    }
    return out;
  }

  static std::string describe(const YAML::Node& n) {
    if (n.IsScalar()) return "\"" + n.Scalar() + "\"";
    if (n.IsSequence()) return "a list";
    if (n.IsMap()) return "a mapping";
    return "null";
  }

  // Warns about every field not read that asks for something.
  void warn_unread(const YAML::Node& node, const std::string& path) {
    if (read_.count(path)) return;
    if (node.IsMap()) {
      for (const auto& kv : node) {
        const std::string key = kv.first.Scalar();
        warn_unread(kv.second, path.empty() ? key : path + "." + key);
      }
      return;
    }
    if (!sets_something(node) || is_kube_proxy_default(path, node)) return;
    out_.warnings.push_back(name_ + ": " + path + ": ignored (" + why_ignored(path) + ")");
  }

 private:
  static bool sets_something(const YAML::Node& n) {
    if (!n || n.IsNull()) return false;
    if (n.IsSequence()) return n.size() > 0;
    if (n.IsMap()) return n.size() > 0;
    const std::string& s = n.Scalar();
    if (s.empty() || s == "false" || s == "0" || s == "0s") return false;
    return true;
  }

  // kube-proxy's own default for a field svcproxy does not read (its v1alpha1
  // defaulting): kubeadm and EKS write every default into the file, and
  // asking for the default asks for nothing.
  static bool is_kube_proxy_default(const std::string& path, const YAML::Node& n) {
    static const std::map<std::string, std::string> defaults = {
        {"clientConnection.burst", "10"},
        {"clientConnection.qps", "5"},
        {"clientConnection.contentType", "application/vnd.kubernetes.protobuf"},
        {"configSyncPeriod", "15m"},
        {"iptables.masqueradeBit", "14"},
        {"iptables.syncPeriod", "30s"},
        {"iptables.minSyncPeriod", "1s"},
        {"iptables.localhostNodePorts", "true"},
        {"ipvs.syncPeriod", "30s"},
        {"logging.flushFrequency", "5s"},
        {"oomScoreAdj", "-999"},
    };
    const auto it = defaults.find(path);
    if (it == defaults.end() || !n.IsScalar()) return false;
    if (n.Scalar() == it->second) return true;
    try {  // durations written another way ("15m0s"), numbers as "5.0"
      if (it->second.back() == 's' || it->second.back() == 'm')
        return parse_go_duration(n.Scalar()) == parse_go_duration(it->second);
      return std::stod(n.Scalar()) == std::stod(it->second);
    } catch (const std::exception&) {
      return false;
    }
  }

  static std::string why_ignored(const std::string& path) {
    auto under = [&](const char* prefix) { return path.rfind(prefix, 0) == 0; };
    if (under("iptables.")) return "applies to kube-proxy's iptables mode; svcproxy reads nftables.*";
    if (under("ipvs.")) return "applies to kube-proxy's ipvs mode; svcproxy reads nftables.*";
    if (under("winkernel.") || path == "windowsRunAsService") return "applies to Windows only";
    if (under("conntrack.")) return "not a conntrack setting svcproxy knows";
    if (under("featureGates.")) return "svcproxy has no feature gates";
    if (under("clientConnection."))
      return "svcproxy's API client reads only clientConnection.kubeconfig (it speaks JSON and does not rate-limit "
             "its one list and watch per resource)";
    if (under("logging.")) return "svcproxy reads only logging.format and logging.verbosity";
    if (under("detectLocal.")) return "not a detectLocal setting svcproxy knows";
    static const std::map<std::string, std::string> unsupported = {
        {"bindAddressHardFail", "svcproxy always exits when it cannot listen"},
        {"enableProfiling", "svcproxy serves no /debug/pprof"},
        {"showHiddenMetricsForVersion", "svcproxy hides no metrics"},
        {"configSyncPeriod", "svcproxy's watches never replay their cache; --sync-period re-applies the rules"},
        {"portRange", "unused since kube-proxy's userspace mode was removed"}};
    if (const auto it = unsupported.find(path); it != unsupported.end()) return it->second;
    return "unknown field";
  }

  const std::string& name_;
  ProxyConfigFile& out_;
  std::set<std::string> read_;
};

std::optional<model::IPAddress> parse_ip(const std::string& text) { return model::IPAddress::parse(text); }

// A CIDR with its prefix ("10.0.0.0/8"; a bare address is not one).
bool valid_cidr(const std::string& text) {
  return text.find('/') != std::string::npos && model::CIDR::parse(text).has_value();
}

// conntrack.*: counts >= 0 (int32), timeouts in whole seconds >= 0.
void read_conntrack(Reader& r, const YAML::Node& root, ProxyConfigFile& out) {
  auto count = [&](const char* path, std::optional<int32_t>& target) {
    if (auto v = r.integer(root, path)) {
      if (*v < 0 || *v > INT32_MAX) r.fail(path, "must be 0..2147483647, got " + std::to_string(*v));
      target = static_cast<int32_t>(*v);
    }
  };
  count("conntrack.maxPerCore", out.conntrack_max_per_core);
  count("conntrack.min", out.conntrack_min);
  auto timeout = [&](const char* path, std::optional<std::chrono::seconds>& target) {
    if (auto d = r.duration(root, path)) {
      try {
        target = conntrack_timeout(*d);
      } catch (const std::invalid_argument& e) {
        r.fail(path, e.what());
      }
    }
  };
  timeout("conntrack.tcpEstablishedTimeout", out.conntrack_tcp_established);
  timeout("conntrack.tcpCloseWaitTimeout", out.conntrack_tcp_close_wait);
  timeout("conntrack.udpTimeout", out.conntrack_udp_timeout);
  timeout("conntrack.udpStreamTimeout", out.conntrack_udp_stream_timeout);
  out.conntrack_tcp_be_liberal = r.boolean(root, "conntrack.tcpBeLiberal");
}

}  // namespace

ProxyConfigFile parse_proxy_config(std::string_view yaml, const std::string& name) {
  ProxyConfigFile out;
  out.path = name;
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    throw ConfigError(name + ":" + std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) +
                      ": invalid YAML: " + e.msg);
  }
  if (!root.IsMap()) throw ConfigError(name + ": want a KubeProxyConfiguration object");
  Reader r(name, out);

  const auto api_version = r.string(root, "apiVersion");
  if (!api_version) r.fail("apiVersion", std::string("missing (want ") + kApiVersion + ")");
  if (*api_version != kApiVersion)
    r.fail("apiVersion", "\"" + *api_version + "\" is not supported (want " + kApiVersion + ")");
  const auto kind = r.string(root, "kind");
  if (!kind || *kind != "KubeProxyConfiguration")
    r.fail("kind", "want KubeProxyConfiguration, got " + (kind ? "\"" + *kind + "\"" : std::string("nothing")));

  out.hostname_override = r.string(root, "hostnameOverride");
  if (out.hostname_override && out.hostname_override->empty()) out.hostname_override.reset();

  out.bind_address = r.string(root, "bindAddress");
  if (out.bind_address && out.bind_address->empty()) out.bind_address.reset();
  if (out.bind_address && !parse_ip(*out.bind_address))
    r.fail("bindAddress", "\"" + *out.bind_address + "\" is not an IP address");

  for (auto [field, value] : {std::pair{"healthzBindAddress", &out.healthz_bind_address},
                              std::pair{"metricsBindAddress", &out.metrics_bind_address}}) {
    *value = r.string(root, field);
    // "" means the default, as kube-proxy's defaulting has it (kubeadm's
    // ConfigMap writes both as ""): it must not turn the server off.
    if (*value && (*value)->empty()) value->reset();
    if (*value) {
      if (const auto parsed = parse_host_port(**value); !parsed) r.fail(field, parsed.error());
    }
  }

  if (auto cidrs = r.string(root, "clusterCIDR"); cidrs && !cidrs->empty()) {
    std::vector<std::string> list;
    std::stringstream in(*cidrs);
    for (std::string item; std::getline(in, item, ',');) {
      while (!item.empty() && item.front() == ' ') item.erase(0, 1);
      while (!item.empty() && item.back() == ' ') item.pop_back();
      if (!valid_cidr(item)) r.fail("clusterCIDR", "\"" + item + "\" is not a CIDR (want e.g. 10.244.0.0/16)");
      list.push_back(item);
    }
    if (list.size() > 2) r.fail("clusterCIDR", "at most one CIDR per IP family");
    out.cluster_cidrs = list;
  }

  if (auto addresses = r.strings(root, "nodePortAddresses"); addresses && !addresses->empty()) {
    std::vector<std::string> list;
    for (size_t i = 0; i < addresses->size(); ++i) {
      const auto& a = (*addresses)[i];
      if (a == "primary") {
        list.push_back(a);
      } else if (a == "all") {
        list.push_back("0.0.0.0/0");
        list.push_back("::/0");
      } else if (a == "localhost") {
        // Expanded with the flag's keywords (proxy/node_flags.cc).
        list.push_back(a);
      } else if (valid_cidr(a)) {
        list.push_back(a);
      } else {
        r.fail("nodePortAddresses[" + std::to_string(i) + "]",
               "\"" + a + "\" is not a CIDR or one of primary, all, localhost");
      }
    }
    out.nodeport_addresses = list;
  }

  if (auto mode = r.string(root, "mode"); mode && !mode->empty()) {
    if (*mode == "iptables" || *mode == "ipvs") {
      // A kube-proxy ConfigMap must start svcproxy unchanged; the service
      // semantics are the same in every mode.
      out.warnings.push_back(name + ": mode: \"" + *mode +
                             "\": svcproxy runs its nftables dataplane in place of kube-proxy's " + *mode + " mode");
    } else {
      out.mode = parse_mode<ProxyMode>(*mode);
      if (!out.mode)
        r.fail("mode", "\"" + *mode +
                           "\" is not supported (svcproxy runs nftables, userspace or auto; iptables and "
                           "ipvs are taken as nftables)");
    }
  }

  out.kubeconfig = r.string(root, "clientConnection.kubeconfig");
  if (out.kubeconfig && out.kubeconfig->empty()) out.kubeconfig.reset();

  if (auto mode = r.string(root, "detectLocalMode"); mode && !mode->empty()) {
    out.detect_local_mode = parse_mode<DetectLocalMode>(*mode);
    if (!out.detect_local_mode)
      r.fail("detectLocalMode",
             "\"" + *mode + "\" is not one of ClusterCIDR, NodeCIDR, BridgeInterface, InterfaceNamePrefix");
  }
  out.bridge_interface = r.string(root, "detectLocal.bridgeInterface");
  if (out.bridge_interface && out.bridge_interface->empty()) out.bridge_interface.reset();
  if (out.bridge_interface)
    if (auto problem = interface_name_problem(*out.bridge_interface, false); !problem.empty())
      r.fail("detectLocal.bridgeInterface", problem);
  out.interface_name_prefix = r.string(root, "detectLocal.interfaceNamePrefix");
  if (out.interface_name_prefix && out.interface_name_prefix->empty()) out.interface_name_prefix.reset();
  if (out.interface_name_prefix)
    if (auto problem = interface_name_problem(*out.interface_name_prefix, true); !problem.empty())
      r.fail("detectLocal.interfaceNamePrefix", problem);
  // Whether the mode's interface is there is checked after the merge: the
  // command line may give it (merge_config).

  out.sync_period = r.duration(root, "nftables.syncPeriod");
  // kube-proxy's defaulting turns 0 into the default (kubeadm's file writes
  // "0s"); only a negative period is an error.
  if (out.sync_period && *out.sync_period == 0ns) out.sync_period.reset();
  if (out.sync_period && *out.sync_period < 0ns) r.fail("nftables.syncPeriod", "must be greater than 0");
  out.min_sync_period = r.duration(root, "nftables.minSyncPeriod");
  if (out.min_sync_period && *out.min_sync_period < 0ns)
    r.fail("nftables.minSyncPeriod", "must be greater than or equal to 0");
  if (out.sync_period && out.min_sync_period && *out.min_sync_period > *out.sync_period)
    r.fail("nftables.minSyncPeriod", "must not be greater than nftables.syncPeriod (" +
                                         format_go_duration(*out.min_sync_period) + " > " +
                                         format_go_duration(*out.sync_period) + ")");

  if (auto bit = r.integer(root, "nftables.masqueradeBit")) {
    if (*bit < 0 || *bit > 31) r.fail("nftables.masqueradeBit", "must be 0..31, got " + std::to_string(*bit));
    out.masquerade_bit = static_cast<int>(*bit);
  }

  // nftables.masqueradeAll; a top-level masqueradeAll is read too.
  const auto nft_all = r.boolean(root, "nftables.masqueradeAll");
  const auto top_all = r.boolean(root, "masqueradeAll");
  if (nft_all && top_all && *nft_all != *top_all)
    r.fail("masqueradeAll", "contradicts nftables.masqueradeAll");
  out.masquerade_all = nft_all ? nft_all : top_all;
  // svcproxy's own: per-service traffic counters (kube-proxy has none).
  out.counters = r.boolean(root, "nftables.counters");

  read_conntrack(r, root, out);
  if (auto v = r.integer(root, "oomScoreAdj")) {
    if (*v < -1000 || *v > 1000) r.fail("oomScoreAdj", "must be -1000..1000, got " + std::to_string(*v));
    out.oom_score_adj = static_cast<int>(*v);
  }

  if (auto v = r.integer(root, "logging.verbosity")) {
    if (*v < 0 || *v > 10) r.fail("logging.verbosity", "must be 0..10, got " + std::to_string(*v));
    out.verbosity = static_cast<int>(*v);
  }
  if (auto format = r.string(root, "logging.format"); format && !format->empty()) {
    out.log_format = parse_mode<LogFormat>(*format);
    if (!out.log_format) r.fail("logging.format", "want text or json, got \"" + *format + "\"");
  }

  r.warn_unread(root, "");
  return out;
}

ProxyConfigFile load_proxy_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot read the config file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  return parse_proxy_config(buffer.str(), path);
}

// ---- --write-config-to -------------------------------------------------------

std::string render_proxy_config(const DaemonSettings& s) {
  YAML::Emitter out;
  auto text = [](std::string_view v) { return std::string(v); };
  auto duration = [](std::chrono::nanoseconds d) { return format_go_duration(d); };
  out << YAML::BeginMap;
  out << YAML::Key << "apiVersion" << YAML::Value << kApiVersion;
  out << YAML::Key << "kind" << YAML::Value << "KubeProxyConfiguration";
  out << YAML::Key << "clientConnection" << YAML::Value << YAML::BeginMap << YAML::Key << "kubeconfig" << YAML::Value
      << s.kubeconfig << YAML::EndMap;
  out << YAML::Key << "hostnameOverride" << YAML::Value << s.node.hostname_override;
  // One primary IP fits bindAddress; two (dual stack) only fit --node-ip.
  out << YAML::Key << "bindAddress" << YAML::Value << (s.node.node_ips.size() == 1 ? s.node.node_ips[0] : "0.0.0.0");
  out << YAML::Key << "healthzBindAddress" << YAML::Value << s.healthz_bind_address;
  out << YAML::Key << "metricsBindAddress" << YAML::Value << s.metrics_bind_address;
  out << YAML::Key << "mode" << YAML::Value << text(to_string(s.proxy_mode));
  std::string cidrs;
  for (const auto& c : s.node.cluster_cidrs) cidrs += (cidrs.empty() ? "" : ",") + c;
  out << YAML::Key << "clusterCIDR" << YAML::Value << cidrs;
  out << YAML::Key << "detectLocalMode" << YAML::Value << text(to_string(s.node.detect_local_mode));
  out << YAML::Key << "detectLocal" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "bridgeInterface" << YAML::Value << s.node.bridge_interface;
  out << YAML::Key << "interfaceNamePrefix" << YAML::Value << s.node.interface_name_prefix << YAML::EndMap;
  out << YAML::Key << "nodePortAddresses" << YAML::Value << YAML::BeginSeq;
  for (const auto& a :
       s.node.nodeport_addresses.empty() ? std::vector<std::string>{"primary"} : s.node.nodeport_addresses)
    out << a;
  out << YAML::EndSeq;
  out << YAML::Key << "nftables" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "syncPeriod" << YAML::Value << duration(s.sync_period);
  out << YAML::Key << "minSyncPeriod" << YAML::Value << duration(s.min_sync_period);
  out << YAML::Key << "masqueradeBit" << YAML::Value << s.node.masquerade_bit;
  out << YAML::Key << "masqueradeAll" << YAML::Value << s.node.masquerade_all << YAML::EndMap;
  const auto& ct = s.conntrack;
  out << YAML::Key << "conntrack" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "maxPerCore" << YAML::Value << ct.max_per_core;
  out << YAML::Key << "min" << YAML::Value << ct.min;
  out << YAML::Key << "tcpEstablishedTimeout" << YAML::Value << duration(ct.tcp_established_timeout);
  out << YAML::Key << "tcpCloseWaitTimeout" << YAML::Value << duration(ct.tcp_close_wait_timeout);
  out << YAML::Key << "tcpBeLiberal" << YAML::Value << ct.tcp_be_liberal;
  out << YAML::Key << "udpTimeout" << YAML::Value << duration(ct.udp_timeout);
  out << YAML::Key << "udpStreamTimeout" << YAML::Value << duration(ct.udp_stream_timeout) << YAML::EndMap;
  if (s.oom_score_adj) out << YAML::Key << "oomScoreAdj" << YAML::Value << *s.oom_score_adj;
  out << YAML::Key << "logging" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "format" << YAML::Value << text(to_string(s.log_format));
  out << YAML::Key << "verbosity" << YAML::Value << s.verbosity << YAML::EndMap;
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

// ---- merge -------------------------------------------------------------------

void merge_config(const ProxyConfigFile& file, const FlagGiven& given, DaemonSettings& s) {
  auto take = [&](const char* flag, const auto& value, auto& target) {
    if (value && !given(flag)) target = *value;
  };
  take("--hostname-override", file.hostname_override, s.node.hostname_override);
  take("--cluster-cidr", file.cluster_cidrs, s.node.cluster_cidrs);
  take("--nodeport-addresses", file.nodeport_addresses, s.node.nodeport_addresses);
  take("--masquerade-all", file.masquerade_all, s.node.masquerade_all);
  take("--masquerade-bit", file.masquerade_bit, s.node.masquerade_bit);
  if (file.counters && !given("--no-counters")) s.node.no_counters = !*file.counters;
  take("--kubeconfig", file.kubeconfig, s.kubeconfig);
  take("--proxy-mode", file.mode, s.proxy_mode);
  take("--sync-period", file.sync_period, s.sync_period);
  take("--min-sync-period", file.min_sync_period, s.min_sync_period);
  take("--detect-local-mode", file.detect_local_mode, s.node.detect_local_mode);
  take("--pod-bridge-interface", file.bridge_interface, s.node.bridge_interface);
  take("--pod-interface-name-prefix", file.interface_name_prefix, s.node.interface_name_prefix);
  take("-v", file.verbosity, s.verbosity);
  take("--log-format", file.log_format, s.log_format);
  take("--healthz-bind-address", file.healthz_bind_address, s.healthz_bind_address);
  take("--metrics-bind-address", file.metrics_bind_address, s.metrics_bind_address);
  take("--conntrack-max-per-core", file.conntrack_max_per_core, s.conntrack.max_per_core);
  take("--conntrack-min", file.conntrack_min, s.conntrack.min);
  take("--conntrack-tcp-timeout-established", file.conntrack_tcp_established, s.conntrack.tcp_established_timeout);
  take("--conntrack-tcp-timeout-close-wait", file.conntrack_tcp_close_wait, s.conntrack.tcp_close_wait_timeout);
  take("--conntrack-tcp-be-liberal", file.conntrack_tcp_be_liberal, s.conntrack.tcp_be_liberal);
  take("--conntrack-udp-timeout", file.conntrack_udp_timeout, s.conntrack.udp_timeout);
  take("--conntrack-udp-timeout-stream", file.conntrack_udp_stream_timeout, s.conntrack.udp_stream_timeout);
  if (file.oom_score_adj && !given("--oom-score-adj")) s.oom_score_adj = file.oom_score_adj;

  const std::optional<std::string> bind_address =
      given("--bind-address") ? std::optional(s.bind_address) : file.bind_address;
  if (bind_address && !bind_address->empty()) {
    const auto ip = model::IPAddress::parse(*bind_address);
    if (!ip) throw ConfigError("--bind-address: \"" + *bind_address + "\" is not an IP address");
    // The bind address names the node's primary IP (the name is historical).
    if (!ip->is_unspecified() && !given("--node-ip")) s.node.node_ips = {*bind_address};
    // An IPv6 one moves the default servers to IPv6.
    if (ip->family == model::IPFamily::V6) {
      if (!file.healthz_bind_address && !given("--healthz-bind-address")) s.healthz_bind_address = "[::]:10256";
      if (!file.metrics_bind_address && !given("--metrics-bind-address")) s.metrics_bind_address = "[::1]:10249";
    }
  }

  auto source = [&](const char* flag, bool in_file, const char* field) {
    return given(flag) || !in_file ? std::string(flag) : file.path + ": " + field;
  };
  // The mode's interface, from either place (a mode given as a flag without
  // its flag is reported by resolve_node_config, naming the flag).
  if (file.detect_local_mode && !given("--detect-local-mode")) {
    if (s.node.detect_local_mode == DetectLocalMode::BridgeInterface && s.node.bridge_interface.empty())
      throw ConfigError(file.path +
                        ": detectLocal.bridgeInterface: required when detectLocalMode is BridgeInterface "
                        "(or --pod-bridge-interface)");
    if (s.node.detect_local_mode == DetectLocalMode::InterfaceNamePrefix && s.node.interface_name_prefix.empty())
      throw ConfigError(file.path +
                        ": detectLocal.interfaceNamePrefix: required when detectLocalMode is InterfaceNamePrefix "
                        "(or --pod-interface-name-prefix)");
  }
  if (s.sync_period <= 0ns)
    throw ConfigError(source("--sync-period", file.sync_period.has_value(), "nftables.syncPeriod") +
                      ": must be greater than 0");
  if (s.min_sync_period < 0ns)
    throw ConfigError(source("--min-sync-period", file.min_sync_period.has_value(), "nftables.minSyncPeriod") +
                      ": must be greater than or equal to 0");
  if (s.min_sync_period > s.sync_period)
    throw ConfigError(source("--min-sync-period", file.min_sync_period.has_value(), "nftables.minSyncPeriod") +
                      " (" + format_go_duration(s.min_sync_period) + ") must not be greater than " +
                      source("--sync-period", file.sync_period.has_value(), "nftables.syncPeriod") + " (" +
                      format_go_duration(s.sync_period) + ")");
}

}  // namespace svcproxy::proxy
