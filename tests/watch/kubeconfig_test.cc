#include "watch/kubeconfig.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace svcproxy::watch {
namespace {

namespace fs = std::filesystem;

class Kubeconfig : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("svcproxy-kubeconfig-" + std::to_string(getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    return (dir_ / name).string();
  }
  std::string config(const std::string& cluster, const std::string& user) {
    return "apiVersion: v1\nkind: Config\ncurrent-context: ctx\ncontexts:\n- name: other\n  context: {cluster: nope, user: nope}\n"
           "- name: ctx\n  context:\n    cluster: c1\n    user: u1\n"
           "clusters:\n- name: c1\n  cluster:\n" + cluster + "users:\n- name: u1\n  user:\n" + user;
  }
  fs::path dir_;
};

TEST_F(Kubeconfig, FilesRelativeToTheKubeconfigAndTokenFile) {
  write("ca.crt", "CA PEM");
  write("client.crt", "CERT PEM");
  write("client.key", "KEY PEM");
  write("token", "file-token\n");
  const auto c = load_kubeconfig(write("kc", config(
      "    server: https://api.example:6443/prefix/\n    certificate-authority: ca.crt\n    tls-server-name: kubernetes\n",
      "    client-certificate: client.crt\n    client-key: client.key\n    tokenFile: token\n")));
  EXPECT_EQ(c.host, "api.example");
  EXPECT_EQ(c.port, "6443");
  EXPECT_EQ(c.path_prefix, "/prefix");
  EXPECT_EQ(c.ca_pem, "CA PEM");
  EXPECT_EQ(c.client_cert_pem, "CERT PEM");
  EXPECT_EQ(c.client_key_pem, "KEY PEM");
  EXPECT_EQ(c.tls_server_name, "kubernetes");
  EXPECT_EQ(c.token_file, (dir_ / "token").string());
  EXPECT_TRUE(c.warnings.empty());
  TokenSource tokens(c.token, c.token_file);
  EXPECT_EQ(tokens.current(), "file-token");
}

TEST_F(Kubeconfig, InlineDataTokenWinsInsecureWarnsIPv6) {
  const auto c = load_kubeconfig(write("kc", config(
      "    server: https://[fd00::1]\n    certificate-authority-data: Q0EgUEVN\n    insecure-skip-tls-verify: true\n",
      "    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n    token: static\n    tokenFile: /nonexistent\n")));
  EXPECT_EQ(c.host, "fd00::1");
  EXPECT_EQ(c.port, "443");
  EXPECT_EQ(c.authority(), "[fd00::1]:443");
  EXPECT_EQ(c.ca_pem, "CA PEM");
  EXPECT_EQ(c.client_cert_pem, "CERT");
  EXPECT_EQ(c.client_key_pem, "KEY");
  EXPECT_EQ(c.token, "static");
  EXPECT_EQ(c.token_file, "");  // token wins over tokenFile
  EXPECT_TRUE(c.insecure_skip_tls_verify);
  ASSERT_EQ(c.warnings.size(), 1u);
  EXPECT_NE(c.warnings[0].find("insecure-skip-tls-verify"), std::string::npos);
}

TEST_F(Kubeconfig, ErrorsNameTheProblem) {
  auto error = [&](const std::string& text) {
    try {
      load_kubeconfig(write("kc", text));
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error("current-context: x\n").find("contexts: no entry named \"x\""), std::string::npos);
  EXPECT_NE(error("a: [\n").find("malformed YAML"), std::string::npos);
  EXPECT_NE(error("clusters: []\n").find("current-context is not set"), std::string::npos);
  EXPECT_NE(error(config("    server: ftp://x\n", "    token: t\n")).find("scheme must be https or http"), std::string::npos);
  EXPECT_NE(error(config("    server: https://x\n    certificate-authority: missing.crt\n", "    token: t\n")).find("missing.crt"),
            std::string::npos);
  EXPECT_NE(error(config("    server: https://x\n", "    client-certificate-data: QQ==\n")).find("go together"), std::string::npos);
  try {
    load_kubeconfig((dir_ / "absent").string());
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("absent"), std::string::npos);
  }
}

TEST_F(Kubeconfig, InClusterBracketsIPv6AndReadsTheServiceAccount) {
  write("ca.crt", "CLUSTER CA");
  write("token", "sa-token");
  std::map<std::string, std::string> env = {{"KUBERNETES_SERVICE_HOST", "fd00:10:96::1"}, {"KUBERNETES_SERVICE_PORT", "443"}};
  auto getenv = [&](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  const auto c = in_cluster_config(getenv, dir_.string());
  EXPECT_EQ(c.url(), "https://[fd00:10:96::1]:443");
  EXPECT_EQ(c.ca_pem, "CLUSTER CA");
  EXPECT_EQ(c.token_file, (dir_ / "token").string());
  // resolve: no flag, no $KUBECONFIG: in-cluster is the fallback.
  EXPECT_THROW(in_cluster_config([](const char*) -> const char* { return nullptr; }, dir_.string()), ConfigError);
  // --master overrides the server of a kubeconfig.
  env["KUBECONFIG"] = write("kc", config("    server: https://a:1\n", "    token: t\n"));
  const auto m = resolve_client_config("", "https://10.0.0.1:8443", getenv);
  EXPECT_EQ(m.url(), "https://10.0.0.1:8443");
  EXPECT_EQ(m.token, "t");
}

TEST_F(Kubeconfig, ExecPluginAsKubectlReadsIt) {
  const auto c = load_kubeconfig(write("kc", config("    server: https://x\n",
      "    exec:\n      apiVersion: client.authentication.k8s.io/v1beta1\n      command: bin/get-token\n"
      "      args: [eks, get-token, --cluster-name, c1]\n      env:\n      - {name: AWS_PROFILE, value: p1}\n"
      "      - {name: EMPTY, value: ''}\n      installHint: install it\n      provideClusterInfo: true\n")));
  ASSERT_TRUE(c.exec);
  EXPECT_EQ(c.exec->api_version, "client.authentication.k8s.io/v1beta1");
  EXPECT_EQ(c.exec->command, (dir_ / "bin/get-token").string());  // has a '/': relative to the kubeconfig
  EXPECT_EQ(c.exec->args, (std::vector<std::string>{"eks", "get-token", "--cluster-name", "c1"}));
  ASSERT_EQ(c.exec->env.size(), 2u);
  EXPECT_EQ(c.exec->env[0], (std::pair<std::string, std::string>{"AWS_PROFILE", "p1"}));
  EXPECT_EQ(c.exec->env[1].second, "");
  EXPECT_EQ(c.exec->install_hint, "install it");
  EXPECT_TRUE(c.exec->provide_cluster_info);
  EXPECT_EQ(c.exec->interactive_mode, "IfAvailable");  // v1beta1's default
  EXPECT_EQ(c.exec->user, "u1");
  EXPECT_TRUE(c.warnings.empty());

  const auto bare = load_kubeconfig(write("kc", config("    server: https://x\n",
      "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: kubelogin\n      interactiveMode: Never\n")));
  ASSERT_TRUE(bare.exec);
  EXPECT_EQ(bare.exec->command, "kubelogin");  // a bare name: $PATH
  EXPECT_EQ(bare.exec->interactive_mode, "Never");

  // A token (or certificate) in the kubeconfig wins over the plugin, as in kubectl.
  const auto token = load_kubeconfig(write("kc", config("    server: https://x\n",
      "    token: t\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: p\n")));
  EXPECT_FALSE(token.exec);
}

TEST_F(Kubeconfig, ExecAndAuthProviderErrors) {
  auto error = [&](const std::string& user) {
    try {
      load_kubeconfig(write("kc", config("    server: https://x\n", user)));
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string exec = "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n";
  EXPECT_NE(error(exec + "      command: p\n").find("user \"u1\": exec: interactiveMode is not set (required with "
                                                   "client.authentication.k8s.io/v1)"),
            std::string::npos);
  EXPECT_NE(error(exec + "      command: p\n      interactiveMode: Sometimes\n").find("\"Sometimes\" is not Never"),
            std::string::npos);
  EXPECT_NE(error(exec + "      interactiveMode: Never\n").find("exec: command is not set"), std::string::npos);
  EXPECT_NE(error("    exec:\n      apiVersion: client.authentication.k8s.io/v1alpha1\n      command: p\n")
                .find("apiVersion \"client.authentication.k8s.io/v1alpha1\" is not supported"),
            std::string::npos);
  EXPECT_NE(error(exec + "      command: p\n      interactiveMode: Never\n      args: {a: b}\n").find("args: expected a list"),
            std::string::npos);
  EXPECT_NE(error(exec + "      command: p\n      interactiveMode: Never\n      env: [{value: v}]\n").find("env: an entry"),
            std::string::npos);
  const std::string gcp = error("    auth-provider:\n      name: gcp\n      config: {access-token: x}\n");
  EXPECT_NE(gcp.find("user \"u1\": auth-provider \"gcp\" was removed from kubectl"), std::string::npos) << gcp;
  EXPECT_NE(gcp.find("gke-gcloud-auth-plugin"), std::string::npos) << gcp;
  EXPECT_NE(error("    auth-provider:\n      name: oidc\n").find("kubelogin"), std::string::npos);
  EXPECT_NE(error("    auth-provider:\n      name: azure\n").find("kubelogin"), std::string::npos);
  const std::string other = error("    auth-provider:\n      name: custom\n");
  EXPECT_NE(other.find("use an exec plugin such as kubelogin (oidc, azure) or gke-gcloud-auth-plugin (gcp)"),
            std::string::npos)
      << other;
}

TEST(ServerUrl, Forms) {
  ClientConfig c;
  parse_server_url("https://10.0.0.1", c);
  EXPECT_EQ(c.authority(), "10.0.0.1:443");
  parse_server_url("http://localhost:8080", c);
  EXPECT_EQ(c.url(), "http://localhost:8080");
  parse_server_url("https://[::1]:6443", c);
  EXPECT_EQ(c.host, "::1");
  EXPECT_EQ(c.port, "6443");
  EXPECT_THROW(parse_server_url("https://host:99999", c), ConfigError);
  EXPECT_THROW(parse_server_url("https://[::1", c), ConfigError);
  EXPECT_THROW(parse_server_url("host:443", c), ConfigError);
}

TEST_F(Kubeconfig, TokenFileIsReReadAfterInvalidateAndAFailedReadKeepsTheOldToken) {
  const std::string file = write("token", "one\n");
  TokenSource tokens("", file, std::chrono::hours(1));
  EXPECT_EQ(tokens.current(), "one");
  write("token", "two\n");
  EXPECT_EQ(tokens.current(), "one");  // not yet a minute
  tokens.invalidate();                 // a 401
  EXPECT_EQ(tokens.current(), "two");
  fs::remove(file);
  tokens.invalidate();
  EXPECT_EQ(tokens.current(), "two");
  EXPECT_NE(tokens.last_error().find("keeping the previous token"), std::string::npos);
  // Every minute (here: every 0 s).
  TokenSource periodic("", write("t2", "a"), std::chrono::seconds(0));
  EXPECT_EQ(periodic.current(), "a");
  write("t2", "b");
  EXPECT_EQ(periodic.current(), "b");
}

}  // namespace
}  // namespace svcproxy::watch
