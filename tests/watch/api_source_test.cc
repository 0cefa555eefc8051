// The one-shot list (CLI) and the API client's TLS and authentication
// against the fixture: client certificates, token rotation, and the one-line
// errors for unreachable servers, rejected credentials and TLS failures.
#include "watch/api_source.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "tests/watch/reflector_harness.h"

namespace svcproxy::watch {
namespace {

using testing::FixtureProcess;
using testing::fixture_config;
using testing::pki_dir;
using testing::service_json;
using testing::slice_json;

std::string read(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string list_error(const ClientConfig& config, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  try {
    list_cluster(config, {.node_name = "node-1", .request_timeout = timeout, .watch_list = false}, [](const std::string&) {});
  } catch (const SourceError& e) {
    return e.what();
  }
  return "no error";
}

TEST(ApiSource, ListsTheWholeClusterWithAClientCertificate) {
  FixtureProcess fx(pki_dir());
  fx.apply("services", service_json("a", "web", "10.96.0.1", 80));
  fx.apply("endpointslices", slice_json("a", "web-1", "web", {"10.244.0.1"}));
  fx.apply("nodes", R"({"metadata":{"name":"node-1","labels":{"topology.kubernetes.io/zone":"z1"}},"spec":{"podCIDRs":["10.244.0.0/24"]}})");
  fx.apply("nodes", R"({"metadata":{"name":"node-2"}})");
  fx.apply("servicecidrs", R"({"metadata":{"name":"kubernetes"},"spec":{"cidrs":["10.96.0.0/16"]}})");
  ClientConfig config = fixture_config(fx);
  config.token.clear();
  config.client_cert_pem = read(pki_dir() + "/client.crt");
  config.client_key_pem = read(pki_dir() + "/client.key");
  const auto state = list_cluster(config, {.node_name = "node-1", .request_timeout = std::chrono::seconds(10), .watch_list = false},
                                  [](const std::string&) {});
  EXPECT_EQ(state.services.size(), 1u);
  EXPECT_EQ(state.endpoint_slices.size(), 1u);
  ASSERT_EQ(state.nodes.size(), 1u);  // only this node (fieldSelector)
  EXPECT_EQ(state.nodes[0].zone, "z1");
  ASSERT_EQ(state.service_cidrs.size(), 1u);
}

TEST(ApiSource, ServiceCIDRsNotServedMeansNone) {
  FixtureProcess fx(pki_dir());
  fx.command(R"({"op":"servicecidrs","served":false})");
  const auto state = list_cluster(fixture_config(fx), {.node_name = "n", .request_timeout = std::chrono::seconds(10), .watch_list = false},
                                  [](const std::string&) {});
  EXPECT_TRUE(state.service_cidrs.empty());
}

TEST(ApiSource, OneLineErrors) {
  FixtureProcess fx(pki_dir());
  ClientConfig bad_token = fixture_config(fx);
  bad_token.token = "wrong";
  EXPECT_NE(list_error(bad_token).find("rejected the credentials: list /api/v1/services: 401 Unauthorized"), std::string::npos)
      << list_error(bad_token);

  ClientConfig wrong_ca = fixture_config(fx);
  wrong_ca.ca_pem = read(pki_dir() + "/other-ca.crt");
  EXPECT_NE(list_error(wrong_ca).find("certificate verify failed"), std::string::npos) << list_error(wrong_ca);

  ClientConfig wrong_name = fixture_config(fx);
  wrong_name.tls_server_name = "not-the-server";
  EXPECT_NE(list_error(wrong_name).find("TLS handshake"), std::string::npos) << list_error(wrong_name);

  ClientConfig name_ok = fixture_config(fx);
  name_ok.tls_server_name = "kubernetes";  // in the certificate's SANs
  EXPECT_EQ(list_error(name_ok), "no error");

  ClientConfig insecure = fixture_config(fx);
  insecure.ca_pem = read(pki_dir() + "/other-ca.crt");
  insecure.insecure_skip_tls_verify = true;
  EXPECT_EQ(list_error(insecure), "no error");

  // Nothing listens: refused, retried with backoff, then one line.
  ClientConfig refused = fixture_config(fx);
  refused.port = "1";
  const auto start = std::chrono::steady_clock::now();
  const std::string error = list_error(refused, std::chrono::milliseconds(2500));
  EXPECT_NE(error.find("connection refused"), std::string::npos) << error;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(ApiSource, TransientFailuresAreRetriedWithinTheTimeout) {
  FixtureProcess fx(pki_dir());
  fx.apply("services", service_json("a", "web", "10.96.0.1", 80));
  fx.fault(R"("status":{"code":500,"count":2,"on":"list"})");
  fx.fault(R"("status":{"code":429,"retry_after":1,"count":1,"on":"list"})");
  const auto state = list_cluster(fixture_config(fx), {.node_name = "n", .request_timeout = std::chrono::seconds(20), .watch_list = false},
                                  [](const std::string&) {});
  EXPECT_EQ(state.services.size(), 1u);
  fx.fault(R"("status":{"code":503,"count":1000,"on":"list"})");
  // Long enough for a few attempts even when one TLS handshake with the
  // Python fixture takes over a second (ASan build, loaded machine): the
  // error must then name the server's answer, not the handshake.
  const std::string error = list_error(fixture_config(fx), std::chrono::seconds(4));
  EXPECT_NE(error.find("503"), std::string::npos) << error;
}

TEST(ApiSource, TokenRotationTheRequestAfterA401UsesTheNewToken) {
  FixtureProcess fx(pki_dir());
  const std::string token_file = pki_dir() + "/rotating-token";
  std::ofstream(token_file) << "old-token\n";
  fx.command(R"({"op":"tokens","valid":["old-token"]})");
  ClientConfig config = fixture_config(fx);
  config.token.clear();
  config.token_file = token_file;
  const ApiSourceOptions options{.node_name = "n", .request_timeout = std::chrono::seconds(10), .watch_list = false};
  EXPECT_NO_THROW(list_cluster(config, options, [](const std::string&) {}));

  // The server now only takes the new token and the file has it: one client
  // keeps working (401 -> re-read -> retry with the new token).
  testing::Harness h(config);
  h.add(testing::fast(services_options()));
  h.start();
  ASSERT_TRUE(h.wait_for([&] { return h.store().has_synced(Resource::Services); }));
  std::ofstream(token_file) << "new-token\n";
  fx.command(R"({"op":"tokens","valid":["new-token"]})");
  fx.apply("services", service_json("a", "after", "10.96.0.9", 80));
  fx.fault(R"("close_watches":true)");
  // The new service may arrive on the watch opened with the old token
  // before the server stopped taking it; the watch that replaces the closed
  // one is what meets the 401. Wait for both.
  ASSERT_TRUE(h.wait_for([&] {
    return h.store().size(Resource::Services) == 1 && h.log_contains("retrying with the re-read token");
  })) << ::testing::PrintToString(h.logs());
  const std::string requests = fx.command(R"({"op":"requests"})");
  EXPECT_NE(requests.find("Bearer new-token"), std::string::npos);
}

// A credential plugin script in the fixture's directory.
ExecConfig exec_plugin(const std::string& name, const std::string& body) {
  const std::string path = pki_dir() + "/" + name;
  std::ofstream(path) << "#!/bin/sh\n" << body;
  ::chmod(path.c_str(), 0755);
  ExecConfig exec;
  exec.api_version = "client.authentication.k8s.io/v1";
  exec.command = path;
  exec.interactive_mode = "Never";
  exec.user = "u1";
  return exec;
}

ClientConfig exec_config(const FixtureProcess& fx, ExecConfig exec) {
  ClientConfig config = fixture_config(fx);
  config.token.clear();
  config.exec = std::move(exec);
  return config;
}

size_t lines_in(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  for (std::string line; std::getline(in, line);) ++n;
  return n;
}

std::string token_plugin(const std::string& runs_file, const std::string& token, const std::string& expiry) {
  return "echo run >> " + runs_file + "\nprintf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
         "\"status\":{\"token\":\"" + token + "\",\"expirationTimestamp\":\"" + expiry + "\"}}'\n";
}

TEST(ApiSource, ExecPluginTokenCachedUntilItExpires) {
  FixtureProcess fx(pki_dir());
  fx.apply("services", service_json("a", "web", "10.96.0.1", 80));
  fx.command(R"({"op":"tokens","valid":["exec-token"]})");
  const ApiSourceOptions options{.node_name = "n", .request_timeout = std::chrono::seconds(10), .watch_list = false};
  const std::string lasting_runs = pki_dir() + "/lasting-runs";
  const auto state = list_cluster(exec_config(fx, exec_plugin("lasting", token_plugin(lasting_runs, "exec-token", "2999-01-01T00:00:00Z"))),
                                  options, [](const std::string&) {});
  EXPECT_EQ(state.services.size(), 1u);
  EXPECT_EQ(lines_in(lasting_runs), 1u);  // one run for every request of the list
  const std::string requests = fx.command(R"({"op":"requests"})");
  EXPECT_NE(requests.find("Bearer exec-token"), std::string::npos);

  // Expired as soon as it is returned: each request runs the plugin again.
  const std::string expired_runs = pki_dir() + "/expired-runs";
  EXPECT_NO_THROW(list_cluster(exec_config(fx, exec_plugin("expired", token_plugin(expired_runs, "exec-token", "2000-01-01T00:00:00Z"))),
                               options, [](const std::string&) {}));
  EXPECT_GE(lines_in(expired_runs), 4u);  // services, endpointslices, nodes, servicecidrs
}

TEST(ApiSource, ExecPluginClientCertificateIsUsedForTLS) {
  FixtureProcess fx(pki_dir());
  fx.apply("services", service_json("a", "web", "10.96.0.1", 80));
  // The PEMs with their newlines as JSON's \n.
  const ExecConfig exec = exec_plugin("cert", "D='" + pki_dir() + "'\n" + R"x(esc() { awk '{printf "%s\\n", $0}' "$1"; }
printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientCertificateData":"%s","clientKeyData":"%s"}}' \
  "$(esc "$D/client.crt")" "$(esc "$D/client.key")"
)x");
  const auto state = list_cluster(exec_config(fx, exec), {.node_name = "n", .request_timeout = std::chrono::seconds(10), .watch_list = false},
                                  [](const std::string&) {});
  EXPECT_EQ(state.services.size(), 1u);  // the fixture answers 401 without a token or a client certificate
  EXPECT_EQ(fx.command(R"({"op":"requests"})").find("Bearer"), std::string::npos);
}

TEST(ApiSource, ExecPluginRunsAgainAfterA401) {
  FixtureProcess fx(pki_dir());
  const std::string token_file = pki_dir() + "/exec-token-file";
  std::ofstream(token_file) << "old-token";
  fx.command(R"({"op":"tokens","valid":["old-token"]})");
  const ExecConfig exec = exec_plugin("from-file", "printf '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
                                                   "\"status\":{\"token\":\"%s\"}}' \"$(cat " + token_file + ")\"\n");
  testing::Harness h(exec_config(fx, exec));
  h.add(testing::fast(services_options()));
  h.start();
  ASSERT_TRUE(h.wait_for([&] { return h.store().has_synced(Resource::Services); }));
  std::ofstream(token_file) << "new-token";
  fx.command(R"({"op":"tokens","valid":["new-token"]})");
  fx.apply("services", service_json("a", "after", "10.96.0.9", 80));
  fx.fault(R"("close_watches":true)");
  // The new service may come on the old watch before it is cut, and the
  // retry is logged before its request is sent: wait for all three.
  EXPECT_TRUE(h.wait_for([&] {
    return h.store().size(Resource::Services) == 1 &&
           h.log_contains("retrying with a new credential from exec plugin") &&
           fx.command(R"({"op":"requests"})").find("Bearer new-token") != std::string::npos;
  })) << ::testing::PrintToString(h.logs());
}

TEST(ApiSource, AFailingExecPluginFailsAtOnceInOneLine) {
  FixtureProcess fx(pki_dir());
  const ExecConfig exec = exec_plugin("failing", "echo 'error: no credentials for profile p1' >&2\necho '  try: aws sso login' >&2\nexit 1\n");
  const auto start = std::chrono::steady_clock::now();
  const std::string error = list_error(exec_config(fx, exec), std::chrono::seconds(20));
  EXPECT_EQ(error, "exec plugin \"" + exec.command + "\" (user \"u1\"): failed with exit code 1: "
                   "\"error: no credentials for profile p1 try: aws sso login\"");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));  // not retried until the timeout
}

TEST(ApiSource, IPv6ServerAndInformer) {
  FixtureProcess fx(pki_dir(), 0.3, 1, "::1");
  fx.apply("services", service_json("a", "web", "10.96.0.1", 80));
  ClientConfig config = fixture_config(fx);
  EXPECT_EQ(config.host, "::1");
  ApiInformer informer(config, {.node_name = "n", .request_timeout = std::chrono::seconds(10), .watch_list = false},
                       [](const std::string&) {});
  informer.start();
  ASSERT_TRUE(informer.wait_for_sync(std::chrono::seconds(20)));
  EXPECT_EQ(informer.store().size(Resource::Services), 1u);
  informer.stop();
}

}  // namespace
}  // namespace svcproxy::watch
