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
