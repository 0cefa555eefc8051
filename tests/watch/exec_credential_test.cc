// The exec credential plugin protocol: the ExecCredential request and
// response (v1 and v1beta1), the environment and arguments, interactiveMode,
// the cache until expirationTimestamp, the re-run after a 401, and the
// one-line errors. A fake runner for the protocol, real shell scripts for
// spawning, timeouts and stderr.
#include "watch/exec_credential.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace svcproxy::watch {
namespace {

namespace fs = std::filesystem;
using std::chrono::system_clock;

constexpr const char* kV1 = "client.authentication.k8s.io/v1";
constexpr const char* kV1beta1 = "client.authentication.k8s.io/v1beta1";

std::string token_response(const std::string& api_version, const std::string& token, const std::string& expiry = "") {
  std::string status = "\"token\":\"" + token + "\"";
  if (!expiry.empty()) status += ",\"expirationTimestamp\":\"" + expiry + "\"";
  return "{\"apiVersion\":\"" + api_version + "\",\"kind\":\"ExecCredential\",\"status\":{" + status + "}}";
}

// Hands out scripted results and keeps every request.
class FakeRunner final : public ProcessRunner {
 public:
  ProcessResult run(const ProcessRequest& request) override {
    requests.push_back(request);
    ProcessResult result = results.empty() ? ProcessResult{} : results.front();
    if (results.size() > 1) results.erase(results.begin());
    return result;
  }
  bool stdin_is_terminal() override { return terminal; }

  std::vector<ProcessResult> results;
  std::vector<ProcessRequest> requests;
  bool terminal = false;
};

ProcessResult exited(std::string out, int code = 0, std::string err = "") {
  ProcessResult r;
  r.exit_code = code;
  r.out = std::move(out);
  r.err = std::move(err);
  return r;
}

ExecConfig exec_config(const std::string& command, const std::string& api_version = kV1) {
  ExecConfig c;
  c.api_version = api_version;
  c.command = command;
  c.interactive_mode = "IfAvailable";
  c.user = "u1";
  return c;
}

std::string env_value(const ProcessRequest& request, const std::string& name) {
  for (const auto& entry : request.env) {
    if (entry.starts_with(name + "=")) return entry.substr(name.size() + 1);
  }
  return "<unset>";
}

size_t env_count(const ProcessRequest& request, const std::string& name) {
  size_t n = 0;
  for (const auto& entry : request.env) n += entry.starts_with(name + "=");
  return n;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

TEST(ExecResponse, TokenOrCertificateInV1AndV1beta1) {
  const auto a = parse_exec_response(token_response(kV1, "t1", "2026-12-06T01:20:00Z"), kV1);
  EXPECT_EQ(a.credential.token, "t1");
  ASSERT_TRUE(a.expires);
  EXPECT_EQ(system_clock::to_time_t(*a.expires), 1796520000);
  const auto b = parse_exec_response(token_response(kV1beta1, "t2"), kV1beta1);
  EXPECT_EQ(b.credential.token, "t2");
  EXPECT_FALSE(b.expires);
  const auto c = parse_exec_response(
      R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","spec":{"interactive":false},)"
      R"("status":{"clientCertificateData":"CERT\nPEM","clientKeyData":"KEY"}})",
      kV1);
  EXPECT_EQ(c.credential.token, "");
  EXPECT_EQ(c.credential.client_cert_pem, "CERT\nPEM");
  EXPECT_EQ(c.credential.client_key_pem, "KEY");
}

TEST(ExecResponse, ErrorsNameTheProblemAndNeverTheToken) {
  auto error = [](const std::string& json, const std::string& want = kV1) {
    return error_of([&] { parse_exec_response(json, want); });
  };
  const std::string mismatch = error(token_response(kV1beta1, "secret-token"));
  EXPECT_NE(mismatch.find("returned apiVersion \"client.authentication.k8s.io/v1beta1\", the kubeconfig asks for "
                          "\"client.authentication.k8s.io/v1\""),
            std::string::npos)
      << mismatch;
  EXPECT_EQ(mismatch.find("secret-token"), std::string::npos);
  EXPECT_NE(error("not json").find("stdout is not JSON"), std::string::npos);
  EXPECT_NE(error(R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential"})").find("no status"),
            std::string::npos);
  EXPECT_NE(error(R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"Other","status":{"token":"x"}})")
                .find("kind \"Other\""),
            std::string::npos);
  EXPECT_NE(error(R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{}})")
                .find("neither a token nor a client certificate"),
            std::string::npos);
  EXPECT_NE(error(R"({"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"clientKeyData":"K"}})")
                .find("only one of clientCertificateData and clientKeyData"),
            std::string::npos);
  EXPECT_NE(error(token_response(kV1, "secret-token", "tomorrow")).find("expirationTimestamp \"tomorrow\" is not RFC 3339"),
            std::string::npos);
}

TEST(Rfc3339, UtcFractionsAndOffsets) {
  const auto base = parse_rfc3339("2026-12-06T01:20:00Z");
  ASSERT_TRUE(base);
  EXPECT_EQ(parse_rfc3339("2026-12-06T02:20:00+01:00"), base);
  EXPECT_EQ(parse_rfc3339("2026-12-05T23:50:00-01:30"), base);
  EXPECT_EQ(*parse_rfc3339("2026-12-06T01:20:00.250Z") - *base, std::chrono::milliseconds(250));
  // Past the clock's range (2262): never, not an overflow into the past.
  EXPECT_EQ(parse_rfc3339("2999-01-01T00:00:00Z"), system_clock::time_point::max());
  EXPECT_EQ(parse_rfc3339("1000-01-01T00:00:00Z"), system_clock::time_point::min());
  for (const char* bad : {"", "2026-12-06", "2026-12-06T01:20:00", "2026-13-06T01:20:00Z", "2026-12-06T01:20:00Zjunk",
                          "2026-12-06 01:20:00Z", "2026-12-06T01:20:00.Z"}) {
    EXPECT_FALSE(parse_rfc3339(bad)) << bad;
  }
}

TEST(ExecInfo, TheRequestInThePluginsVersionWithTheClusterOnlyWhenAsked) {
  ExecConfig config = exec_config("p", kV1beta1);
  const ExecCluster cluster{.server = "https://10.0.0.1:6443", .tls_server_name = "kubernetes",
                            .insecure_skip_tls_verify = false, .ca_pem = "CA"};
  EXPECT_EQ(exec_info_json(config, false, cluster),
            R"({"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}})");
  config.provide_cluster_info = true;
  config.api_version = kV1;
  EXPECT_EQ(exec_info_json(config, true, cluster),
            R"({"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":true,)"
            R"("cluster":{"server":"https://10.0.0.1:6443","tls-server-name":"kubernetes","certificate-authority-data":"Q0E="}}})");
}

TEST(ExecCredentialSource, ArgsEnvAndExecInfoReachThePlugin) {
  ::setenv("SVCPROXY_EXEC_TEST_KEEP", "kept", 1);
  ::setenv("SVCPROXY_EXEC_TEST_OVERRIDE", "ours", 1);
  auto runner = std::make_shared<FakeRunner>();
  runner->results = {exited(token_response(kV1, "t"))};
  ExecConfig config = exec_config("aws");
  config.args = {"eks", "get-token", "--cluster-name", "c1"};
  config.env = {{"SVCPROXY_EXEC_TEST_OVERRIDE", "plugin's"}, {"AWS_PROFILE", "p1"}};
  ExecCredentialSource source(config, {.server = "https://s", .tls_server_name = "", .insecure_skip_tls_verify = false,
                                       .ca_pem = ""},
                              runner);
  EXPECT_EQ(source.current().token, "t");
  ASSERT_EQ(runner->requests.size(), 1u);
  const ProcessRequest& r = runner->requests[0];
  EXPECT_EQ(r.command, "aws");
  EXPECT_EQ(r.args, config.args);
  EXPECT_FALSE(r.interactive);
  EXPECT_EQ(env_value(r, "SVCPROXY_EXEC_TEST_KEEP"), "kept");
  EXPECT_EQ(env_value(r, "SVCPROXY_EXEC_TEST_OVERRIDE"), "plugin's");
  EXPECT_EQ(env_count(r, "SVCPROXY_EXEC_TEST_OVERRIDE"), 1u);
  EXPECT_EQ(env_value(r, "AWS_PROFILE"), "p1");
  EXPECT_EQ(env_value(r, "KUBERNETES_EXEC_INFO"),
            R"({"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}})");
  ::unsetenv("SVCPROXY_EXEC_TEST_KEEP");
  ::unsetenv("SVCPROXY_EXEC_TEST_OVERRIDE");
}

TEST(ExecCredentialSource, InteractiveModeFollowsTheTerminal) {
  auto runner = std::make_shared<FakeRunner>();
  runner->results = {exited(token_response(kV1, "t"))};
  auto interactive_run = [&](const std::string& mode, bool terminal) {
    runner->terminal = terminal;
    runner->requests.clear();
    ExecConfig config = exec_config("p");
    config.interactive_mode = mode;
    ExecCredentialSource source(config, {}, runner);
    source.current();
    return runner->requests.at(0).interactive && env_value(runner->requests[0], "KUBERNETES_EXEC_INFO").find(
                                                      "\"interactive\":true") != std::string::npos;
  };
  EXPECT_FALSE(interactive_run("Never", true));
  EXPECT_FALSE(interactive_run("IfAvailable", false));
  EXPECT_TRUE(interactive_run("IfAvailable", true));
  EXPECT_TRUE(interactive_run("Always", true));
  runner->terminal = false;
  ExecConfig always = exec_config("p");
  always.interactive_mode = "Always";
  ExecCredentialSource source(always, {}, runner);
  const std::string error = error_of([&] { source.current(); });
  EXPECT_NE(error.find("exec plugin \"p\" (user \"u1\"): interactiveMode Always needs a terminal"), std::string::npos)
      << error;
  EXPECT_EQ(source.runs(), 0u);
}

TEST(ExecCredentialSource, CachedUntilExpiryThenRunAgain) {
  auto runner = std::make_shared<FakeRunner>();
  runner->results = {exited(token_response(kV1, "first", "2026-12-06T01:20:00Z")),
                     exited(token_response(kV1, "second", "2026-12-06T02:20:00Z"))};
  system_clock::time_point now = *parse_rfc3339("2026-12-06T01:00:00Z");
  ExecCredentialSource source(exec_config("p"), {}, runner, [&] { return now; });
  EXPECT_EQ(source.current().token, "first");
  now += std::chrono::minutes(20);  // exactly at the expiry: still good (client-go: "after")
  EXPECT_EQ(source.current().token, "first");
  EXPECT_EQ(source.runs(), 1u);
  now += std::chrono::seconds(1);
  EXPECT_EQ(source.current().token, "second");
  EXPECT_EQ(source.current().token, "second");
  EXPECT_EQ(source.runs(), 2u);
}

TEST(ExecCredentialSource, A401RunsThePluginAgainOnceForTheSameCredential) {
  auto runner = std::make_shared<FakeRunner>();
  runner->results = {exited(token_response(kV1, "old")), exited(token_response(kV1, "new"))};
  ExecCredentialSource source(exec_config("p"), {}, runner);
  const Credential old = source.current();
  EXPECT_EQ(source.current().token, "old");  // no expiry: kept
  EXPECT_EQ(source.runs(), 1u);
  source.rejected(old);
  EXPECT_EQ(source.current().token, "new");
  source.rejected(old);  // a late 401 for the old credential: the new one stays
  EXPECT_EQ(source.current().token, "new");
  EXPECT_EQ(source.runs(), 2u);
}

TEST(ExecCredentialSource, FailuresAreOneLineWithStderrOrTheInstallHint) {
  auto runner = std::make_shared<FakeRunner>();
  ProcessResult missing;
  missing.outcome = ProcessResult::Outcome::NotFound;
  runner->results = {missing};
  ExecConfig config = exec_config("gke-gcloud-auth-plugin");
  config.install_hint = "Install gke-gcloud-auth-plugin for use with kubectl by following\n  https://example/install\n";
  ExecCredentialSource absent(config, {}, runner);
  EXPECT_EQ(error_of([&] { absent.current(); }),
            "exec plugin \"gke-gcloud-auth-plugin\" (user \"u1\"): not found in $PATH; Install gke-gcloud-auth-plugin for "
            "use with kubectl by following https://example/install");

  runner->results = {exited("{\"status\":{\"token\":\"secret-token\"}}", 2,
                            "\n  error: no credentials\n\n  run `aws configure`  \n")};
  ExecCredentialSource failing(exec_config("aws"), {}, runner);
  const std::string error = error_of([&] { failing.current(); });
  EXPECT_EQ(error, "exec plugin \"aws\" (user \"u1\"): failed with exit code 2: \"error: no credentials run `aws configure`\"");
  EXPECT_EQ(error.find("secret-token"), std::string::npos);
  EXPECT_EQ(error.find('\n'), std::string::npos);
  // Every call runs a failed plugin again (nothing is cached).
  EXPECT_THROW(failing.current(), ExecError);
  EXPECT_EQ(failing.runs(), 2u);
}

// Real plugins: small shell scripts run through posix_spawn.
class ExecScript : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("svcproxy-exec-" + std::to_string(getpid()) + "-" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string script(const std::string& name, const std::string& body) {
    const fs::path path = dir_ / name;
    std::ofstream(path) << "#!/bin/sh\n" << body;
    ::chmod(path.c_str(), 0755);
    return path.string();
  }
  fs::path dir_;
};

TEST_F(ExecScript, ARealPluginGetsArgsEnvAndExecInfo) {
  const std::string plugin = script("plugin", R"(printf '%s' "$KUBERNETES_EXEC_INFO" > ")" + (dir_ / "info").string() + R"("
printf '{"apiVersion":"client.authentication.k8s.io/v1beta1","kind":"ExecCredential","status":{"token":"%s-%s"}}' "$2" "$PLUGIN_ENV"
)");
  ExecConfig config = exec_config(plugin, kV1beta1);
  config.args = {"get-token", "arg2"};
  config.env = {{"PLUGIN_ENV", "from-env"}};
  ExecCredentialSource source(config, {});
  EXPECT_EQ(source.current().token, "arg2-from-env");
  std::ifstream info(dir_ / "info");
  std::string text((std::istreambuf_iterator<char>(info)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, R"({"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","spec":{"interactive":false}})");
}

TEST_F(ExecScript, APluginStartsWithNoSignalBlocked) {
  // The daemon blocks SIGTERM for its signalfd; a plugin must not inherit it.
  sigset_t term, previous;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &term, &previous);
  const std::string plugin = script("mask", R"x(printf '{"apiVersion":"client.authentication.k8s.io/v1","kind":"ExecCredential","status":{"token":"%s"}}' "$(awk '/^SigBlk/ {print $2}' /proc/$$/status)"
)x");
  const std::string blocked = ExecCredentialSource(exec_config(plugin), {}).current().token;
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  EXPECT_EQ(blocked, "0000000000000000");
}

TEST_F(ExecScript, MissingFailingAndHangingPlugins) {
  ExecConfig absent = exec_config("svcproxy-no-such-plugin");
  absent.install_hint = "install it from example.org";
  EXPECT_EQ(error_of([&] { ExecCredentialSource(absent, {}).current(); }),
            "exec plugin \"svcproxy-no-such-plugin\" (user \"u1\"): not found in $PATH; install it from example.org");
  const std::string missing_path = (dir_ / "nope").string();
  EXPECT_NE(error_of([&] { ExecCredentialSource(exec_config(missing_path), {}).current(); }).find(missing_path + "\" (user \"u1\"): not found"),
            std::string::npos);

  const std::string failing = script("failing", "echo 'partial output'\necho 'boom: the token has expired' >&2\necho '  run login  ' >&2\nexit 3\n");
  EXPECT_EQ(error_of([&] { ExecCredentialSource(exec_config(failing), {}).current(); }),
            "exec plugin \"" + failing + "\" (user \"u1\"): failed with exit code 3: \"boom: the token has expired run login\"");

  const std::string hanging = script("hanging", "echo waiting >&2\nexec sleep 30\n");
  ExecConfig slow = exec_config(hanging);
  slow.timeout = std::chrono::milliseconds(300);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(error_of([&] { ExecCredentialSource(slow, {}).current(); }),
            "exec plugin \"" + hanging + "\" (user \"u1\"): still running after 300 ms, killed: \"waiting\"");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));

  const std::string chatty = script("chatty", "head -c 3000000 /dev/zero\n");
  EXPECT_NE(error_of([&] { ExecCredentialSource(exec_config(chatty), {}).current(); }).find("more output than svcproxy reads"),
            std::string::npos);
}

}  // namespace
}  // namespace svcproxy::watch
