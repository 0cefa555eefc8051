#include "proxy/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

namespace svcproxy::proxy {
namespace {

using namespace std::chrono_literals;

const char* kHeader = "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n";

ProxyConfigFile parse(const std::string& body) { return parse_proxy_config(kHeader + body, "config.yaml"); }

// The ConfigError message parsing `body` throws ("" if none).
std::string error_of(const std::string& body, bool with_header = true) {
  try {
    parse_proxy_config(with_header ? kHeader + body : body, "config.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(GoDuration, ParsesGoSyntax) {
  EXPECT_EQ(parse_go_duration("30s"), 30s);
  EXPECT_EQ(parse_go_duration("1m0s"), 60s);
  EXPECT_EQ(parse_go_duration("1h2m3.5s"), 3723500ms);
  EXPECT_EQ(parse_go_duration("250ms"), 250ms);
  EXPECT_EQ(parse_go_duration("1.5h"), 90min);
  EXPECT_EQ(parse_go_duration("10us"), 10us);
  EXPECT_EQ(parse_go_duration("10\xC2\xB5s"), 10us);
  EXPECT_EQ(parse_go_duration("7ns"), 7ns);
  EXPECT_EQ(parse_go_duration("0"), 0ns);
  EXPECT_EQ(parse_go_duration("-2s"), -2s);
  EXPECT_EQ(parse_go_duration(".5s"), 500ms);
  for (const char* bad : {"", "30", "s", "1x", "1m 2s", "-", "1..5s"})
    EXPECT_THROW(parse_go_duration(bad), std::invalid_argument) << bad;
}

TEST(GoDuration, FormatsAsGo) {
  EXPECT_EQ(format_go_duration(0ns), "0s");
  EXPECT_EQ(format_go_duration(30s), "30s");
  EXPECT_EQ(format_go_duration(60s), "1m0s");
  EXPECT_EQ(format_go_duration(3723500ms), "1h2m3.5s");
  EXPECT_EQ(format_go_duration(1500us), "1.5ms");
  EXPECT_EQ(format_go_duration(250ms), "250ms");
  EXPECT_EQ(format_go_duration(-2s), "-2s");
  EXPECT_EQ(format_go_duration(2h), "2h0m0s");
}

TEST(ProxyConfig, ReadsEveryFieldThatApplies) {
  const auto c = parse(R"(
bindAddress: 192.168.1.10
healthzBindAddress: 0.0.0.0:10266
metricsBindAddress: "[::1]:10249"
clientConnection:
  kubeconfig: /var/lib/kube-proxy/kubeconfig.conf
hostnameOverride: node-a
clusterCIDR: 10.244.0.0/16,fd00:10:244::/56
nodePortAddresses: [primary, 192.168.0.0/16]
mode: nftables
detectLocalMode: ClusterCIDR
nftables:
  syncPeriod: 1m0s
  minSyncPeriod: 1s
  masqueradeBit: 15
  masqueradeAll: true
logging:
  format: json
  verbosity: 4
)");
  EXPECT_EQ(c.bind_address, "192.168.1.10");
  EXPECT_EQ(c.healthz_bind_address, "0.0.0.0:10266");
  EXPECT_EQ(c.metrics_bind_address, "[::1]:10249");
  EXPECT_EQ(c.kubeconfig, "/var/lib/kube-proxy/kubeconfig.conf");
  EXPECT_EQ(c.hostname_override, "node-a");
  EXPECT_EQ(c.cluster_cidrs, (std::vector<std::string>{"10.244.0.0/16", "fd00:10:244::/56"}));
  EXPECT_EQ(c.nodeport_addresses, (std::vector<std::string>{"primary", "192.168.0.0/16"}));
  EXPECT_EQ(c.mode, ProxyMode::Nftables);
  EXPECT_EQ(c.detect_local_mode, DetectLocalMode::ClusterCIDR);
  EXPECT_EQ(c.sync_period, 60s);
  EXPECT_EQ(c.min_sync_period, 1s);
  EXPECT_EQ(c.masquerade_bit, 15);
  EXPECT_EQ(c.masquerade_all, true);
  EXPECT_EQ(c.log_format, LogFormat::Json);
  EXPECT_EQ(c.verbosity, 4);
  EXPECT_TRUE(c.warnings.empty()) << c.warnings.front();
}

TEST(ProxyConfig, AbsentFieldsStayUnset) {
  const auto c = parse("hostnameOverride: \"\"\nclusterCIDR: \"\"\nnodePortAddresses: null\nmode: \"\"\n");
  EXPECT_FALSE(c.hostname_override);
  EXPECT_FALSE(c.cluster_cidrs);
  EXPECT_FALSE(c.nodeport_addresses);
  EXPECT_FALSE(c.mode);
  EXPECT_FALSE(c.sync_period);
  EXPECT_FALSE(c.masquerade_all);
  EXPECT_FALSE(c.healthz_bind_address);
  EXPECT_TRUE(c.warnings.empty());
}

TEST(ProxyConfig, TopLevelMasqueradeAllAndKeywords) {
  auto c = parse("masqueradeAll: true\nnodePortAddresses: [all, localhost]\n");
  EXPECT_EQ(c.masquerade_all, true);
  // `localhost` is kept for the node flags (localhost NodePorts, KEP-6032).
  EXPECT_EQ(c.nodeport_addresses, (std::vector<std::string>{"0.0.0.0/0", "::/0", "localhost"}));
  EXPECT_TRUE(c.warnings.empty());
  EXPECT_NE(error_of("masqueradeAll: true\nnftables: {masqueradeAll: false}\n").find("masqueradeAll"),
            std::string::npos);
}

TEST(ProxyConfig, WarnsOncePerFieldThatDoesNotApply) {
  // A kubeadm-style file: sections for other modes, values and nulls.
  const auto c = parse(R"(
featureGates:
  SomeGate: true
clientConnection:
  kubeconfig: /k
  qps: 50
  burst: 100
  contentType: ""
iptables:
  masqueradeAll: false
  masqueradeBit: 13
  syncPeriod: 10s
  minSyncPeriod: 0s
ipvs:
  scheduler: ""
  excludeCIDRs: null
  strictARP: false
conntrack:
  maxPerCore: 32768
  min: null
  tcpEstablishedTimeout: 24h0m0s
  somethingNew: 1
enableProfiling: true
configSyncPeriod: 1m
winkernel:
  networkName: ""
someFutureField: 1
logging:
  flushFrequency: 1s
)");
  const std::string client =
      "ignored (svcproxy's API client reads only clientConnection.kubeconfig (it speaks JSON and does not rate-limit "
      "its one list and watch per resource))";
  const std::string config_sync =
      "ignored (svcproxy's watches never replay their cache; --sync-period re-applies the rules)";
  const std::vector<std::string> want = {
      "config.yaml: featureGates.SomeGate: ignored (svcproxy has no feature gates)",
      "config.yaml: clientConnection.qps: " + client,
      "config.yaml: clientConnection.burst: " + client,
      "config.yaml: iptables.masqueradeBit: ignored (applies to kube-proxy's iptables mode; svcproxy reads nftables.*)",
      "config.yaml: iptables.syncPeriod: ignored (applies to kube-proxy's iptables mode; svcproxy reads nftables.*)",
      "config.yaml: conntrack.somethingNew: ignored (not a conntrack setting svcproxy knows)",
      "config.yaml: enableProfiling: ignored (svcproxy serves no /debug/pprof)",
      "config.yaml: configSyncPeriod: " + config_sync,
      "config.yaml: someFutureField: ignored (unknown field)",
      "config.yaml: logging.flushFrequency: ignored (svcproxy reads only logging.format and logging.verbosity)",
  };
  EXPECT_EQ(c.warnings, want);
  EXPECT_EQ(c.kubeconfig, "/k");
}

// kubeadm and EKS write kube-proxy's defaults into the file: asking for the
// default asks for nothing, so it is not warned about.
TEST(ProxyConfig, KubeProxyDefaultsOfIgnoredFieldsAreQuiet) {
  const auto c = parse(R"(
clientConnection: {qps: 5, burst: 10, contentType: application/vnd.kubernetes.protobuf, acceptContentTypes: ""}
iptables: {masqueradeBit: 14, syncPeriod: 30s, minSyncPeriod: 1s, localhostNodePorts: true}
ipvs: {syncPeriod: 30s, minSyncPeriod: 0s}
configSyncPeriod: 15m0s
oomScoreAdj: -999
logging: {flushFrequency: 5s}
)");
  EXPECT_TRUE(c.warnings.empty()) << c.warnings.front();
  EXPECT_EQ(c.oom_score_adj, -999);
}

// kubeadm's file writes "0s": kube-proxy's defaulting makes it 30s.
TEST(ProxyConfig, ZeroSyncPeriodIsTheDefault) {
  EXPECT_FALSE(parse("nftables:\n  syncPeriod: 0s\n").sync_period.has_value());
}

// kube-proxy's modes other than nftables: svcproxy runs nftables, with a
// warning (an EKS ConfigMap says iptables).
TEST(ProxyConfig, IptablesAndIpvsModesRunNftablesWithAWarning) {
  for (const char* mode : {"iptables", "ipvs"}) {
    const auto c = parse(std::string("mode: ") + mode + "\n");
    EXPECT_FALSE(c.mode.has_value());
    ASSERT_EQ(c.warnings.size(), 1u);
    EXPECT_EQ(c.warnings[0], std::string("config.yaml: mode: \"") + mode +
                                 "\": svcproxy runs its nftables dataplane in place of kube-proxy's " + mode + " mode");
  }
}

TEST(ProxyConfig, ReadsTheConntrackSection) {
  const auto c = parse(R"(
conntrack:
  maxPerCore: 0
  min: 262144
  tcpEstablishedTimeout: 2h
  tcpCloseWaitTimeout: 30m0s
  tcpBeLiberal: true
  udpTimeout: 30s
  udpStreamTimeout: 2m
)");
  EXPECT_TRUE(c.warnings.empty()) << c.warnings.front();
  EXPECT_EQ(c.conntrack_max_per_core, 0);
  EXPECT_EQ(c.conntrack_min, 262144);
  EXPECT_EQ(c.conntrack_tcp_established, 2h);
  EXPECT_EQ(c.conntrack_tcp_close_wait, 30min);
  EXPECT_EQ(c.conntrack_tcp_be_liberal, true);
  EXPECT_EQ(c.conntrack_udp_timeout, 30s);
  EXPECT_EQ(c.conntrack_udp_stream_timeout, 2min);
  EXPECT_EQ(error_of("conntrack: {maxPerCore: -1}\n"),
            "config.yaml: conntrack.maxPerCore: must be 0..2147483647, got -1");
  EXPECT_EQ(error_of("conntrack: {tcpCloseWaitTimeout: -1s}\n"),
            "config.yaml: conntrack.tcpCloseWaitTimeout: must not be negative, got -1s");
  EXPECT_EQ(error_of("conntrack: {udpTimeout: 500ms}\n"),
            "config.yaml: conntrack.udpTimeout: must be 0 (leave as is) or at least 1s, got 500ms");
  EXPECT_EQ(error_of("oomScoreAdj: -1001\n"), "config.yaml: oomScoreAdj: must be -1000..1000, got -1001");
}

TEST(MergeConfig, ConntrackFromTheFileUnlessTheFlagIsGiven) {
  const auto file = parse("conntrack: {maxPerCore: 0, min: 5, tcpEstablishedTimeout: 1h, tcpBeLiberal: true}\n");
  DaemonSettings s;
  s.conntrack.min = 7;
  merge_config(
      file, [](std::string_view f) { return f == "--conntrack-min"; }, s);
  EXPECT_EQ(s.conntrack.max_per_core, 0);
  EXPECT_EQ(s.conntrack.min, 7);
  EXPECT_EQ(s.conntrack.tcp_established_timeout, 1h);
  EXPECT_EQ(s.conntrack.tcp_close_wait_timeout, 1h);  // kube-proxy's default
  EXPECT_TRUE(s.conntrack.tcp_be_liberal);
}

TEST(MergeConfig, BindAddressFlagNamesTheNodeIp) {
  DaemonSettings s;
  s.bind_address = "192.168.5.5";
  merge_config(
      parse("bindAddress: 10.0.0.9\n"), [](std::string_view f) { return f == "--bind-address"; }, s);
  EXPECT_EQ(s.node.node_ips, std::vector<std::string>{"192.168.5.5"});

  DaemonSettings v6;
  v6.bind_address = "fd00::5";
  merge_config(
      {}, [](std::string_view f) { return f == "--bind-address"; }, v6);
  EXPECT_EQ(v6.node.node_ips, std::vector<std::string>{"fd00::5"});
  EXPECT_EQ(v6.healthz_bind_address, "[::]:10256");
  EXPECT_EQ(v6.metrics_bind_address, "[::1]:10249");

  DaemonSettings wins;  // --node-ip wins
  wins.bind_address = "192.168.5.5";
  wins.node.node_ips = {"10.1.1.1"};
  merge_config(
      {}, [](std::string_view f) { return f == "--bind-address" || f == "--node-ip"; }, wins);
  EXPECT_EQ(wins.node.node_ips, std::vector<std::string>{"10.1.1.1"});

  DaemonSettings bad;
  bad.bind_address = "node-a";
  EXPECT_THROW(merge_config(
                   {}, [](std::string_view f) { return f == "--bind-address"; }, bad),
               ConfigError);
}

// --write-config-to writes what parse_proxy_config reads back: the same
// settings, no warnings.
TEST(RenderConfig, RoundTripsThroughTheParser) {
  DaemonSettings s;
  s.kubeconfig = "/etc/kube/proxy.conf";
  s.node.hostname_override = "node-a";
  s.node.node_ips = {"192.168.1.10"};
  s.node.cluster_cidrs = {"10.244.0.0/16", "fd00:10:244::/56"};
  s.node.nodeport_addresses = {"primary", "10.0.0.0/8"};
  s.node.masquerade_bit = 9;
  s.node.masquerade_all = true;
  s.node.detect_local_mode = DetectLocalMode::InterfaceNamePrefix;
  s.node.interface_name_prefix = "veth";
  s.healthz_bind_address = "0.0.0.0:10266";
  s.metrics_bind_address = "127.0.0.1:10259";
  s.sync_period = 45s;
  s.min_sync_period = 1s;
  s.verbosity = 3;
  s.log_format = LogFormat::Json;
  s.conntrack = {.max_per_core = 0,
                 .min = 5,
                 .tcp_established_timeout = 2h,
                 .tcp_close_wait_timeout = 0s,
                 .tcp_be_liberal = true,
                 .udp_timeout = 30s,
                 .udp_stream_timeout = 120s};
  s.oom_score_adj = -998;
  const auto file = parse_proxy_config(render_proxy_config(s), "written.yaml");
  EXPECT_TRUE(file.warnings.empty()) << file.warnings.front();
  DaemonSettings back;
  merge_config(
      file, [](std::string_view) { return false; }, back);
  EXPECT_EQ(back.kubeconfig, s.kubeconfig);
  EXPECT_EQ(back.node.hostname_override, "node-a");
  EXPECT_EQ(back.node.node_ips, s.node.node_ips);
  EXPECT_EQ(back.node.cluster_cidrs, s.node.cluster_cidrs);
  EXPECT_EQ(back.node.nodeport_addresses, s.node.nodeport_addresses);
  EXPECT_EQ(back.node.masquerade_bit, 9);
  EXPECT_TRUE(back.node.masquerade_all);
  EXPECT_EQ(back.node.detect_local_mode, DetectLocalMode::InterfaceNamePrefix);
  EXPECT_EQ(back.node.interface_name_prefix, "veth");
  EXPECT_EQ(back.healthz_bind_address, s.healthz_bind_address);
  EXPECT_EQ(back.metrics_bind_address, s.metrics_bind_address);
  EXPECT_EQ(back.sync_period, 45s);
  EXPECT_EQ(back.min_sync_period, 1s);
  EXPECT_EQ(back.verbosity, 3);
  EXPECT_EQ(back.log_format, LogFormat::Json);
  EXPECT_EQ(back.conntrack, s.conntrack);
  EXPECT_EQ(back.oom_score_adj, -998);
}

TEST(ProxyConfig, ErrorsNameTheFileAndField) {
  EXPECT_EQ(error_of("nftables:\n  masqueradeBit: 40\n"), "config.yaml: nftables.masqueradeBit: must be 0..31, got 40");
  EXPECT_EQ(error_of("nftables:\n  masqueradeBit: -1\n"), "config.yaml: nftables.masqueradeBit: must be 0..31, got -1");
  EXPECT_EQ(error_of("nftables:\n  masqueradeBit: \"14\"\n"),
            "config.yaml: nftables.masqueradeBit: want an integer, got \"14\"");
  EXPECT_EQ(error_of("nftables:\n  syncPeriod: 30\n"),
            "config.yaml: nftables.syncPeriod: invalid duration \"30\": missing unit (want e.g. 500ms, 30s, 1m0s, 2h45m)");
  EXPECT_EQ(error_of("nftables:\n  syncPeriod: -1s\n"), "config.yaml: nftables.syncPeriod: must be greater than 0");
  EXPECT_EQ(error_of("nftables:\n  minSyncPeriod: -1s\n"),
            "config.yaml: nftables.minSyncPeriod: must be greater than or equal to 0");
  EXPECT_EQ(error_of("nftables:\n  syncPeriod: 10s\n  minSyncPeriod: 1m\n"),
            "config.yaml: nftables.minSyncPeriod: must not be greater than nftables.syncPeriod (1m0s > 10s)");
  EXPECT_EQ(error_of("nftables:\n  masqueradeAll: maybe\n"),
            "config.yaml: nftables.masqueradeAll: want true or false, got \"maybe\"");
  EXPECT_EQ(error_of("mode: kernelspace\n"),
            "config.yaml: mode: \"kernelspace\" is not supported (svcproxy runs nftables, userspace or auto; iptables "
            "and ipvs are taken as nftables)");
  EXPECT_EQ(error_of("clusterCIDR: 10.244.0.0\n"),
            "config.yaml: clusterCIDR: \"10.244.0.0\" is not a CIDR (want e.g. 10.244.0.0/16)");
  EXPECT_EQ(error_of("nodePortAddresses: [primary, nodes]\n"),
            "config.yaml: nodePortAddresses[1]: \"nodes\" is not a CIDR or one of primary, all, localhost");
  EXPECT_EQ(error_of("nodePortAddresses: primary\n"), "config.yaml: nodePortAddresses: want a list of strings");
  EXPECT_EQ(error_of("bindAddress: node-a\n"), "config.yaml: bindAddress: \"node-a\" is not an IP address");
  EXPECT_EQ(error_of("healthzBindAddress: 0.0.0.0\n"),
            "config.yaml: healthzBindAddress: invalid address \"0.0.0.0\": missing port (want IP:PORT, e.g. "
            "0.0.0.0:10256)");
  EXPECT_EQ(error_of("detectLocalMode: Magic\n"),
            "config.yaml: detectLocalMode: \"Magic\" is not one of ClusterCIDR, NodeCIDR, BridgeInterface, "
            "InterfaceNamePrefix");
  EXPECT_EQ(error_of("detectLocal: {bridgeInterface: cbr0/1}\n"),
            "config.yaml: detectLocal.bridgeInterface: interface name \"cbr0/1\" contains '/'");
  EXPECT_EQ(error_of("detectLocal: {bridgeInterface: a-very-long-bridge}\n"),
            "config.yaml: detectLocal.bridgeInterface: interface name \"a-very-long-bridge\" is 18 bytes (at most 15)");
  EXPECT_EQ(error_of("detectLocal: {interfaceNamePrefix: \"veth*\"}\n"),
            "config.yaml: detectLocal.interfaceNamePrefix: interface name prefix \"veth*\" contains '*'");
  EXPECT_EQ(error_of("logging:\n  format: xml\n"), "config.yaml: logging.format: want text or json, got \"xml\"");
  EXPECT_EQ(error_of("nftables: [1]\nclientConnection: {kubeconfig: [a]}\n"),
            "config.yaml: clientConnection.kubeconfig: want a string");
}

TEST(ProxyConfig, RejectsOtherDocuments) {
  EXPECT_EQ(error_of("kind: KubeProxyConfiguration\n", false),
            "config.yaml: apiVersion: missing (want kubeproxy.config.k8s.io/v1alpha1)");
  EXPECT_EQ(error_of("apiVersion: kubeproxy.config.k8s.io/v1alpha2\nkind: KubeProxyConfiguration\n", false),
            "config.yaml: apiVersion: \"kubeproxy.config.k8s.io/v1alpha2\" is not supported (want "
            "kubeproxy.config.k8s.io/v1alpha1)");
  EXPECT_EQ(error_of("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeletConfiguration\n", false),
            "config.yaml: kind: want KubeProxyConfiguration, got \"KubeletConfiguration\"");
  EXPECT_EQ(error_of("- a\n- b\n", false), "config.yaml: want a KubeProxyConfiguration object");
  const auto syntax = error_of("mode: [nftables\n");
  EXPECT_EQ(syntax.rfind("config.yaml:", 0), 0u) << syntax;
  EXPECT_NE(syntax.find("invalid YAML"), std::string::npos) << syntax;
}

TEST(ProxyConfig, LoadsFromAFile) {
  const std::string path = ::testing::TempDir() + "/svcproxy-config-test.yaml";
  {
    std::ofstream out(path);
    out << kHeader << "hostnameOverride: from-file\n";
  }
  EXPECT_EQ(load_proxy_config(path).hostname_override, "from-file");
  std::remove(path.c_str());
  try {
    load_proxy_config(path);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), path + ": cannot read the config file");
  }
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// The shipped configurations read cleanly: no errors, nothing ignored.
TEST(ProxyConfig, ShippedExamplesParseWithoutWarnings) {
  const auto example = parse_proxy_config(read_file(SVCPROXY_SOURCE_DIR "/deploy/etc/config.yaml"), "config.yaml");
  EXPECT_TRUE(example.warnings.empty()) << example.warnings.front();
  EXPECT_EQ(example.mode, ProxyMode::Nftables);

  // The DaemonSet's ConfigMap: the block under "config.yaml: |", dedented.
  std::istringstream manifest(read_file(SVCPROXY_SOURCE_DIR "/deploy/daemonset.yaml"));
  std::string line, embedded;
  bool inside = false;
  size_t indent = 0;
  while (std::getline(manifest, line)) {
    if (!inside) {
      if (line.find("config.yaml: |") != std::string::npos) {
        inside = true;
        indent = line.find_first_not_of(' ') + 2;
      }
      continue;
    }
    if (!line.empty() && line.find_first_not_of(' ') < indent) break;
    embedded += (line.size() > indent ? line.substr(indent) : "") + "\n";
  }
  ASSERT_FALSE(embedded.empty());
  const auto configmap = parse_proxy_config(embedded, "daemonset.yaml ConfigMap");
  EXPECT_TRUE(configmap.warnings.empty()) << configmap.warnings.front();
  EXPECT_EQ(configmap.healthz_bind_address, "0.0.0.0:10256");
  // The API server's real address, in the ConfigMap's kubeconfig.conf.
  EXPECT_EQ(configmap.kubeconfig, "/etc/svcproxy/kubeconfig.conf");
}

FlagGiven flags_given(std::vector<std::string> names) {
  return [names](std::string_view f) { return std::find(names.begin(), names.end(), f) != names.end(); };
}

TEST(MergeConfig, FileFillsWhatFlagsDidNotGive) {
  const auto file = parse(R"(
bindAddress: 192.168.1.10
hostnameOverride: node-file
clusterCIDR: 10.244.0.0/16
nodePortAddresses: [192.168.0.0/16]
mode: userspace
clientConnection: {kubeconfig: /file/kubeconfig}
healthzBindAddress: 0.0.0.0:1111
metricsBindAddress: 127.0.0.1:2222
detectLocalMode: NodeCIDR
nftables: {syncPeriod: 1m, minSyncPeriod: 2s, masqueradeBit: 15, masqueradeAll: true}
logging: {format: json, verbosity: 3}
)");
  DaemonSettings s;
  merge_config(file, flags_given({}), s);
  EXPECT_EQ(s.node.node_ips, std::vector<std::string>{"192.168.1.10"});
  EXPECT_EQ(s.node.hostname_override, "node-file");
  EXPECT_EQ(s.node.cluster_cidrs, std::vector<std::string>{"10.244.0.0/16"});
  EXPECT_EQ(s.node.nodeport_addresses, std::vector<std::string>{"192.168.0.0/16"});
  EXPECT_EQ(s.node.masquerade_bit, 15);
  EXPECT_TRUE(s.node.masquerade_all);
  EXPECT_EQ(s.proxy_mode, ProxyMode::Userspace);
  EXPECT_EQ(s.kubeconfig, "/file/kubeconfig");
  EXPECT_EQ(s.healthz_bind_address, "0.0.0.0:1111");
  EXPECT_EQ(s.metrics_bind_address, "127.0.0.1:2222");
  EXPECT_EQ(s.node.detect_local_mode, DetectLocalMode::NodeCIDR);
  EXPECT_EQ(s.sync_period, 60s);
  EXPECT_EQ(s.min_sync_period, 2s);
  EXPECT_EQ(s.log_format, LogFormat::Json);
  EXPECT_EQ(s.verbosity, 3);
}

TEST(MergeConfig, CommandLineFlagsWin) {
  const auto file = parse(R"(
bindAddress: 192.168.1.10
hostnameOverride: node-file
nftables: {syncPeriod: 1m, masqueradeBit: 15, masqueradeAll: true}
healthzBindAddress: 0.0.0.0:1111
logging: {verbosity: 3}
)");
  DaemonSettings s;
  // What the command line parsed into the settings.
  s.node.hostname_override = "node-flag";
  s.node.node_ips = {"10.0.0.5"};
  s.node.masquerade_all = false;
  s.node.masquerade_bit = 14;
  s.sync_period = 10s;
  s.healthz_bind_address = "127.0.0.1:3333";
  s.verbosity = 5;
  merge_config(file,
               flags_given({"--hostname-override", "--node-ip", "--masquerade-all", "--sync-period",
                            "--healthz-bind-address", "-v"}),
               s);
  EXPECT_EQ(s.node.hostname_override, "node-flag");
  EXPECT_EQ(s.node.node_ips, std::vector<std::string>{"10.0.0.5"});
  EXPECT_FALSE(s.node.masquerade_all);
  EXPECT_EQ(s.node.masquerade_bit, 15);  // not given: from the file
  EXPECT_EQ(s.sync_period, 10s);
  EXPECT_EQ(s.healthz_bind_address, "127.0.0.1:3333");
  EXPECT_EQ(s.verbosity, 5);
}

TEST(MergeConfig, UnspecifiedAndIpv6BindAddress) {
  DaemonSettings s;
  merge_config(parse("bindAddress: 0.0.0.0\n"), flags_given({}), s);
  EXPECT_TRUE(s.node.node_ips.empty());
  EXPECT_EQ(s.healthz_bind_address, "0.0.0.0:10256");
  EXPECT_EQ(s.metrics_bind_address, "127.0.0.1:10249");

  DaemonSettings v6;
  merge_config(parse("bindAddress: \"::\"\n"), flags_given({}), v6);
  EXPECT_TRUE(v6.node.node_ips.empty());
  EXPECT_EQ(v6.healthz_bind_address, "[::]:10256");
  EXPECT_EQ(v6.metrics_bind_address, "[::1]:10249");
}

TEST(MergeConfig, ChecksTheCombinationNamingWhereEachValueCameFrom) {
  DaemonSettings s;
  s.min_sync_period = 2min;  // from --min-sync-period
  try {
    merge_config(parse("nftables: {syncPeriod: 1m}\n"), flags_given({"--min-sync-period"}), s);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()),
              "--min-sync-period (2m0s) must not be greater than config.yaml: nftables.syncPeriod (1m0s)");
  }
  DaemonSettings flags_only;
  flags_only.sync_period = 0s;
  EXPECT_THROW(merge_config(parse(""), flags_given({"--sync-period"}), flags_only), ConfigError);
}

// The wiring the daemon uses: CLI11 parses the flags into DaemonSettings,
// then the file fills in what the command line did not give.
TEST(MergeConfig, DetectLocalInterfacesFromTheFileAndFlagsWin) {
  const auto file = parse(R"(
detectLocalMode: BridgeInterface
detectLocal: {bridgeInterface: cbr0, interfaceNamePrefix: veth}
)");
  EXPECT_EQ(file.bridge_interface, "cbr0");
  EXPECT_EQ(file.interface_name_prefix, "veth");
  DaemonSettings s;
  merge_config(file, flags_given({}), s);
  EXPECT_EQ(s.node.detect_local_mode, DetectLocalMode::BridgeInterface);
  EXPECT_EQ(s.node.bridge_interface, "cbr0");
  EXPECT_EQ(s.node.interface_name_prefix, "veth");

  DaemonSettings flags;
  flags.node.detect_local_mode = DetectLocalMode::InterfaceNamePrefix;
  flags.node.interface_name_prefix = "cali";
  flags.node.bridge_interface = "br-pods";
  merge_config(file, flags_given({"--detect-local-mode", "--pod-interface-name-prefix", "--pod-bridge-interface"}),
               flags);
  EXPECT_EQ(flags.node.detect_local_mode, DetectLocalMode::InterfaceNamePrefix);
  EXPECT_EQ(flags.node.interface_name_prefix, "cali");
  EXPECT_EQ(flags.node.bridge_interface, "br-pods");
}

TEST(MergeConfig, DetectLocalModeFromTheFileNeedsItsInterfaceFromEitherPlace) {
  auto error_of_merge = [](const ProxyConfigFile& file, std::vector<std::string> given, DaemonSettings s) {
    try {
      merge_config(file, flags_given(std::move(given)), s);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error_of_merge(parse("detectLocalMode: BridgeInterface\n"), {}, {}),
            "config.yaml: detectLocal.bridgeInterface: required when detectLocalMode is BridgeInterface (or "
            "--pod-bridge-interface)");
  EXPECT_EQ(error_of_merge(parse("detectLocalMode: InterfaceNamePrefix\n"), {}, {}),
            "config.yaml: detectLocal.interfaceNamePrefix: required when detectLocalMode is InterfaceNamePrefix (or "
            "--pod-interface-name-prefix)");
  DaemonSettings with_flag;
  with_flag.node.bridge_interface = "cbr0";
  EXPECT_EQ(error_of_merge(parse("detectLocalMode: BridgeInterface\n"), {"--pod-bridge-interface"}, with_flag), "");
  // The command line's mode wins: the file's incomplete one does not matter.
  DaemonSettings cidr_flag;
  EXPECT_EQ(error_of_merge(parse("detectLocalMode: BridgeInterface\n"), {"--detect-local-mode"}, cidr_flag), "");
}

model::NodeConfig resolve(std::vector<std::string> args) {
  CLI::App app;
  NodeFlags flags;
  add_node_flags(app, flags);
  args.insert(args.begin(), "svcproxy");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  app.parse(static_cast<int>(argv.size()), argv.data());
  return resolve_node_config(flags, {}, FixedAddresses({}, "none"), nullptr);
}

std::string flag_error(std::vector<std::string> args) {
  try {
    resolve(std::move(args));
  } catch (const FlagError& e) {
    return e.what();
  }
  return "";
}

TEST(NodeFlags, DetectLocalInterfaceModes) {
  const auto bridge = resolve({"--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "cbr0",
                               "--cluster-cidr", "10.244.0.0/16"});
  EXPECT_EQ(bridge.local_detect, model::LocalDetect::BridgeInterface);
  EXPECT_EQ(bridge.local_interface, "cbr0");
  EXPECT_EQ(bridge.cluster_cidrs.size(), 1u) << "--cluster-cidr is still taken";
  const auto prefix = resolve({"--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "veth",
                               "--pod-bridge-interface", "cbr0"});
  EXPECT_EQ(prefix.local_detect, model::LocalDetect::InterfaceNamePrefix);
  EXPECT_EQ(prefix.local_interface, "veth");
  const auto cidr = resolve({"--pod-bridge-interface", "cbr0"});
  EXPECT_EQ(cidr.local_detect, model::LocalDetect::CIDRs) << "the interface flags alone change nothing";
  EXPECT_EQ(cidr.local_interface, "");
  EXPECT_EQ(resolve({"--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "abcdefghijklmno"})
                .local_interface,
            "abcdefghijklmno");
}

TEST(NodeFlags, DetectLocalInterfaceErrorsNameTheFlag) {
  EXPECT_EQ(flag_error({"--detect-local-mode", "BridgeInterface"}),
            "--detect-local-mode BridgeInterface: needs --pod-bridge-interface (the pods' bridge, e.g. cbr0)");
  EXPECT_EQ(flag_error({"--detect-local-mode", "InterfaceNamePrefix", "--pod-bridge-interface", "cbr0"}),
            "--detect-local-mode InterfaceNamePrefix: needs --pod-interface-name-prefix (the prefix of the pods' "
            "interface names, e.g. veth)");
  EXPECT_EQ(flag_error({"--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "abcdefghijklmnop"}),
            "--pod-bridge-interface: interface name \"abcdefghijklmnop\" is 16 bytes (at most 15)");
  EXPECT_EQ(flag_error({"--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix",
                        "abcdefghijklmno"}),
            "--pod-interface-name-prefix: interface name prefix \"abcdefghijklmno\" is 15 bytes (at most 14)");
  EXPECT_EQ(flag_error({"--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "cbr*"}),
            "--pod-bridge-interface: interface name \"cbr*\" contains '*'");
  EXPECT_EQ(flag_error({"--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", "cb r0"}),
            "--pod-bridge-interface: interface name \"cb r0\" contains ' '");
  EXPECT_EQ(flag_error({"--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", std::string("cb\x01")}),
            "--pod-bridge-interface: interface name \"cb\x01\" contains a control character");
  EXPECT_EQ(flag_error({"--detect-local-mode", "BridgeInterface", "--pod-bridge-interface", ".."}),
            "--pod-bridge-interface: \"..\" is not an interface name");
  EXPECT_EQ(flag_error({"--detect-local-mode", "InterfaceNamePrefix", "--pod-interface-name-prefix", "ve\"th"}),
            "--pod-interface-name-prefix: interface name prefix \"ve\"th\" contains '\"'");
}

TEST(MergeConfig, WithFlagsParsedByCli11) {
  CLI::App app;
  DaemonSettings s;
  add_node_flags(app, s.node);
  app.add_option("-v", s.verbosity);
  std::string sync_period = "30s";
  app.add_option("--sync-period", sync_period);
  const char* argv[] = {"svcproxy", "--masquerade-bit", "3", "-v", "2", "--cluster-cidr", "10.1.0.0/16"};
  app.parse(7, argv);
  s.sync_period = parse_go_duration(sync_period);

  const auto file = parse(R"(
hostnameOverride: from-file
clusterCIDR: 10.244.0.0/16
nftables: {syncPeriod: 1m, masqueradeBit: 15}
logging: {verbosity: 4}
)");
  merge_config(file,
               [&](std::string_view f) {
                 const auto* opt = app.get_option_no_throw(std::string(f));
                 return opt != nullptr && opt->count() > 0;
               },
               s);
  EXPECT_EQ(s.node.masquerade_bit, 3);
  EXPECT_EQ(s.verbosity, 2);
  EXPECT_EQ(s.node.cluster_cidrs, std::vector<std::string>{"10.1.0.0/16"});
  EXPECT_EQ(s.node.hostname_override, "from-file");
  EXPECT_EQ(s.sync_period, 60s);
}

}  // namespace
}  // namespace svcproxy::proxy

namespace svcproxy::proxy {
namespace {

// kubeadm's kube-proxy ConfigMap writes both bind addresses as "": kube-proxy
// defaults them, so they must not switch the servers off.
TEST(MergeConfig, EmptyBindAddressesInTheFileMeanTheDefaults) {
  const auto file = parse_proxy_config(
      "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
      "healthzBindAddress: \"\"\nmetricsBindAddress: \"\"\n",
      "config.yaml");
  EXPECT_FALSE(file.healthz_bind_address.has_value());
  EXPECT_FALSE(file.metrics_bind_address.has_value());
  DaemonSettings s;
  merge_config(file, [](std::string_view) { return false; }, s);
  EXPECT_EQ(s.healthz_bind_address, "0.0.0.0:10256");
  EXPECT_EQ(s.metrics_bind_address, "127.0.0.1:10249");
}

// Without a file the flags' combination is still checked.
TEST(MergeConfig, MinSyncPeriodAboveSyncPeriodIsRejectedWithoutAFile) {
  DaemonSettings s;
  s.sync_period = std::chrono::seconds(10);
  s.min_sync_period = std::chrono::minutes(1);
  try {
    merge_config(ProxyConfigFile{}, [](std::string_view) { return true; }, s);
    FAIL() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "--min-sync-period (1m0s) must not be greater than --sync-period (10s)");
  }
}

}  // namespace
}  // namespace svcproxy::proxy
