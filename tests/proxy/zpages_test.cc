#include "proxy/zpages.h"

#include <gtest/gtest.h>

#include <CLI/CLI.hpp>
#include <set>

namespace svcproxy::proxy {
namespace {

using namespace std::chrono_literals;

const auto kStart =
    std::chrono::system_clock::time_point(std::chrono::seconds(1796555771));  // Sun Dec  6 11:16:11 UTC 2026

StatuszInfo info() { return {kStart, "0.9.0", "1.37", {"/configz", "/flagz", "/healthz", "/metrics", "/proxyMode"}}; }

// What the real kube-proxy v1.37.2 negotiated for these Accept headers
// (scraped in the lab, tests/e2e/test_cluster_metrics_port.py).
TEST(Zpages, NegotiatesAsKubeProxy) {
  const std::string json_beta = "application/json;as=Statusz;v=v1beta1;g=config.k8s.io";
  const ZpageFormat text{ZpageFormat::Text, ""};
  const ZpageFormat refused{ZpageFormat::NotAcceptable, ""};
  EXPECT_EQ(negotiate_zpage("", "Statusz"), text);
  EXPECT_EQ(negotiate_zpage("  ", "Statusz"), text);
  EXPECT_EQ(negotiate_zpage("*/*", "Statusz"), text);
  EXPECT_EQ(negotiate_zpage("text/*", "Statusz"), text);
  EXPECT_EQ(negotiate_zpage("text/plain;charset=utf-8", "Statusz"), text);
  EXPECT_EQ(negotiate_zpage("text/html, */*;q=0.1", "Statusz"), text);
  EXPECT_EQ(negotiate_zpage(json_beta, "Statusz"), (ZpageFormat{ZpageFormat::Json, "v1beta1"}));
  EXPECT_EQ(negotiate_zpage("application/json;as=Statusz;v=v1alpha1;g=config.k8s.io", "Statusz"),
            (ZpageFormat{ZpageFormat::Json, "v1alpha1"}));
  EXPECT_EQ(negotiate_zpage("application/yaml;as=Flagz;v=v1beta1;g=config.k8s.io", "Flagz"),
            (ZpageFormat{ZpageFormat::Yaml, "v1beta1"}));
  EXPECT_EQ(negotiate_zpage("application/*;as=Statusz;v=v1beta1;g=config.k8s.io", "Statusz"),
            (ZpageFormat{ZpageFormat::Json, "v1beta1"}));
  // By q-value, then in order.
  EXPECT_EQ(negotiate_zpage("text/plain;q=0.5, " + json_beta, "Statusz").kind, ZpageFormat::Json);
  EXPECT_EQ(negotiate_zpage(json_beta + ", text/plain", "Statusz").kind, ZpageFormat::Json);
  EXPECT_EQ(negotiate_zpage("text/plain, " + json_beta, "Statusz").kind, ZpageFormat::Text);
  // A structured type must name a kind, version and group it has.
  EXPECT_EQ(negotiate_zpage("application/json", "Statusz"), refused);
  EXPECT_EQ(negotiate_zpage("text/html", "Statusz"), refused);
  EXPECT_EQ(negotiate_zpage("application/json;as=Statusz;v=v9;g=config.k8s.io", "Statusz"), refused);
  EXPECT_EQ(negotiate_zpage("application/json;as=Flagz;v=v1beta1;g=config.k8s.io", "Statusz"), refused);
  EXPECT_EQ(negotiate_zpage("*/*;q=0", "Statusz"), refused);
}

TEST(Zpages, StatuszTextIsKubeProxysWithoutTheGoLine) {
  for (const std::string_view d : {":", ": ", "=", " "}) {
    const auto a = statusz_page(info(), "", kStart + 3725s, d);
    EXPECT_EQ(a.status, 200);
    EXPECT_EQ(a.content_type, "text/plain; charset=utf-8");
    const std::string s(d);
    EXPECT_EQ(a.body,
              "\nsvcproxy statusz\nWarning: This endpoint is not meant to be machine parseable, has no "
              "formatting compatibility guarantees and is for debugging purposes only.\n\nStarted" +
                  s + " Sun Dec  6 11:16:11 UTC 2026\nUp" + s + " 1 hr 02 min 05 sec\nBinary version" + s +
                  " 0.9.0\nEmulation version" + s + " 1.37\nPaths" + s +
                  " /configz /flagz /healthz /metrics /proxyMode\n");
  }
}

TEST(Zpages, StatuszStructured) {
  const auto json = statusz_page(info(), "application/json;as=Statusz;v=v1beta1;g=config.k8s.io", kStart + 7s, ":");
  EXPECT_EQ(json.content_type, "application/json;g=config.k8s.io;v=v1beta1;as=Statusz");
  EXPECT_EQ(json.warning, "");
  EXPECT_EQ(json.body,
            "{\"kind\":\"Statusz\",\"apiVersion\":\"config.k8s.io/v1beta1\",\"metadata\":{\"name\":\"svcproxy\"},"
            "\"startTime\":\"2026-12-06T11:16:11Z\",\"uptimeSeconds\":7,\"goVersion\":\"\",\"binaryVersion\":\"0.9.0\","
            "\"emulationVersion\":\"1.37\",\"paths\":[\"/configz\",\"/flagz\",\"/healthz\",\"/metrics\","
            "\"/proxyMode\"]}\n");
  const auto old = statusz_page(info(), "application/json;as=Statusz;v=v1alpha1;g=config.k8s.io", kStart, ":");
  EXPECT_EQ(old.warning, "299 - \"This version of the statusz endpoint is deprecated. Please use a newer version.\"");
  EXPECT_NE(old.body.find("\"apiVersion\":\"config.k8s.io/v1alpha1\""), std::string::npos);
  const auto yaml = statusz_page(info(), "application/yaml;as=Statusz;v=v1beta1;g=config.k8s.io", kStart + 6s, ":");
  EXPECT_EQ(yaml.content_type, "application/yaml;g=config.k8s.io;v=v1beta1;as=Statusz");
  EXPECT_EQ(
      yaml.body,
      "apiVersion: \"config.k8s.io/v1beta1\"\nbinaryVersion: \"0.9.0\"\nemulationVersion: \"1.37\"\n"
      "goVersion: \"\"\nkind: \"Statusz\"\nmetadata:\n  name: \"svcproxy\"\npaths:\n- \"/configz\"\n- \"/flagz\"\n"
      "- \"/healthz\"\n- \"/metrics\"\n- \"/proxyMode\"\nstartTime: \"2026-12-06T11:16:11Z\"\nuptimeSeconds: 6\n");
  const auto refused = statusz_page(info(), "application/json", kStart, ":");
  EXPECT_EQ(refused.status, 406);
  EXPECT_EQ(refused.content_type, "application/json");
  EXPECT_NE(refused.body.find("\"message\": \"only the following media types are accepted: application/json, "
                              "application/yaml, text/plain\""),
            std::string::npos);
}

TEST(Zpages, FlagzTextAndJson) {
  const FlagValues flags = {{"v", "2"}, {"cluster-cidr", "10.244.0.0/16,fd00:10:244::/56"}, {"config", ""}};
  const auto text = flagz_page(flags, "text/plain", "=");
  EXPECT_EQ(text.body,
            "\nsvcproxy flagz\nWarning: This endpoint is not meant to be machine parseable, has no "
            "formatting compatibility guarantees and is for debugging purposes only.\n"
            "cluster-cidr=10.244.0.0/16,fd00:10:244::/56\nconfig=\nv=2\n");
  const auto json = flagz_page(flags, "application/json;as=Flagz;v=v1alpha1;g=config.k8s.io", ":");
  EXPECT_EQ(json.warning, "299 - \"This version of the flagz endpoint is deprecated. Please use a newer version.\"");
  EXPECT_EQ(json.body,
            "{\"kind\":\"Flagz\",\"apiVersion\":\"config.k8s.io/v1alpha1\",\"metadata\":{\"name\":"
            "\"svcproxy\"},\"flags\":{\"cluster-cidr\":\"10.244.0.0/16,fd00:10:244::/56\",\"config\":\"\","
            "\"v\":\"2\"}}\n");
  EXPECT_EQ(flagz_page(flags, "text/html", ":").status, 406);
}

TEST(Zpages, RandomDelimiterIsOneOfKubeProxys) {
  std::set<std::string_view> seen;
  for (int i = 0; i < 200; ++i) seen.insert(random_zpage_delimiter());
  EXPECT_EQ(seen, (std::set<std::string_view>{":", ": ", "=", " "}));
}

TEST(Zpages, FlagValuesAreTheEffectiveOnes) {
  CLI::App app;
  std::string kubeconfig, sync_period = "30s";
  std::vector<std::string> cidrs;
  bool masquerade_all = false, cleanup = false;
  app.add_option("--kubeconfig", kubeconfig);
  app.add_option("--sync-period", sync_period);
  app.add_option("--cluster-cidr", cidrs)->delimiter(',');
  app.add_flag("--masquerade-all", masquerade_all);
  app.add_flag("--cleanup", cleanup);
  app.add_option("--zone")->capture_default_str();
  const char* argv[] = {"run", "--cluster-cidr", "10.0.0.0/8,fd00::/48", "--cleanup"};
  app.parse(4, const_cast<char**>(argv));
  DaemonSettings effective;
  effective.kubeconfig = "/from/config/file";  // set by --config, not the command line
  effective.sync_period = 45s;
  effective.node.cluster_cidrs = cidrs;
  const auto values = flag_values(app, effective);
  const FlagValues want = {{"cleanup", "true"},
                           {"cluster-cidr", "10.0.0.0/8,fd00::/48"},
                           {"help", "false"},
                           {"kubeconfig", "/from/config/file"},
                           {"masquerade-all", "false"},
                           {"sync-period", "45s"},
                           {"zone", ""}};
  EXPECT_EQ(values, want);
}

TEST(Zpages, ConfigzIsAKubeProxyConfiguration) {
  DaemonSettings s;
  s.kubeconfig = "/etc/kube/proxy.kubeconfig";
  s.node.hostname_override = "node-a";
  s.node.cluster_cidrs = {"10.244.0.0/16", "fd00:10:244::/56"};
  s.node.masquerade_bit = 15;
  s.sync_period = 45s;
  s.min_sync_period = 1500ms;
  s.verbosity = 2;
  s.oom_score_adj = -999;
  const auto c = configz_json(s);
  EXPECT_TRUE(
      c.starts_with("{\"kubeproxy.config.k8s.io\":{\"kind\":\"KubeProxyConfiguration\",\"apiVersion\":"
                    "\"kubeproxy.config.k8s.io/v1alpha1\",\"clientConnection\":{\"kubeconfig\":"
                    "\"/etc/kube/proxy.kubeconfig\","))
      << c;
  for (const char* part :
       {"\"hostnameOverride\":\"node-a\",\"bindAddress\":\"0.0.0.0\",\"healthzBindAddress\":\"0.0.0.0:10256\","
        "\"metricsBindAddress\":\"127.0.0.1:10249\"",
        "\"mode\":\"nftables\"", "\"verbosity\":2",
        "\"nftables\":{\"masqueradeBit\":15,\"masqueradeAll\":false,\"syncPeriod\":\"45s\",\"minSyncPeriod\":\"1.5s\"}",
        "\"detectLocalMode\":\"ClusterCIDR\"", "\"clusterCIDR\":\"10.244.0.0/16,fd00:10:244::/56\"",
        "\"nodePortAddresses\":[\"primary\"]", "\"oomScoreAdj\":-999",
        "\"conntrack\":{\"maxPerCore\":32768,\"min\":131072,\"tcpEstablishedTimeout\":\"24h0m0s\","
        "\"tcpCloseWaitTimeout\":\"1h0m0s\",\"tcpBeLiberal\":false,\"udpTimeout\":\"0s\",\"udpStreamTimeout\":\"0s\"}"})
    EXPECT_NE(c.find(part), std::string::npos) << part << "\n" << c;
  EXPECT_TRUE(c.ends_with("\"configSyncPeriod\":\"0s\",\"portRange\":\"\"}}")) << c;
}

}  // namespace
}  // namespace svcproxy::proxy
