// A kubeconfig's exec credential plugin, run as kubectl (client-go's
// plugin/pkg/client/auth/exec) runs it: the ExecCredential request in
// $KUBERNETES_EXEC_INFO, the plugin's env entries added to ours, its
// ExecCredential on stdout (a token, or a client certificate and key),
// cached until its expirationTimestamp, and run again after a 401. Every
// failure is one line: the command, what went wrong, the plugin's stderr
// (trimmed) or installHint. The token itself is never in a message.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "watch/kubeconfig.h"
#include "watch/process.h"

namespace svcproxy::watch {

struct ExecError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What a request authenticates with.
struct Credential {
  std::string token;
  std::string client_cert_pem;
  std::string client_key_pem;
  bool operator==(const Credential&) const = default;
};

// The plugin's answer.
struct ExecResponse {
  Credential credential;
  std::optional<std::chrono::system_clock::time_point> expires;
};

// The cluster as the plugin sees it (spec.cluster, with provideClusterInfo).
struct ExecCluster {
  std::string server;
  std::string tls_server_name;
  bool insecure_skip_tls_verify = false;
  std::string ca_pem;
};

// KUBERNETES_EXEC_INFO: the ExecCredential request, in the plugin's apiVersion.
std::string exec_info_json(const ExecConfig& config, bool interactive, const ExecCluster& cluster);

// Parses the plugin's stdout; throws ExecError (without the command's name).
ExecResponse parse_exec_response(std::string_view json, const std::string& api_version);

// RFC 3339 ("2026-12-06T01:20:00Z", fractions, "+01:00"); nullopt if not one.
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text);

// The credential, cached until it expires (or a 401 rejects it). Thread-safe;
// one plugin run at a time.
class ExecCredentialSource {
 public:
  using Now = std::function<std::chrono::system_clock::time_point()>;
  ExecCredentialSource(ExecConfig config, ExecCluster cluster,
                       std::shared_ptr<ProcessRunner> runner = system_process_runner(),
                       Now now = [] { return std::chrono::system_clock::now(); });

  // The cached credential, or the plugin's new one. Throws ExecError.
  Credential current();
  // A request with `used` got a 401: the next current() runs the plugin,
  // unless the credential changed meanwhile.
  void rejected(const Credential& used);
  uint64_t runs() const;
  const ExecConfig& config() const { return config_; }

 private:
  ExecResponse run_plugin();
  std::string what_failed(const ProcessResult& result) const;

  ExecConfig config_;
  ExecCluster cluster_;
  std::shared_ptr<ProcessRunner> runner_;
  Now now_;
  mutable std::mutex mutex_;
  std::optional<ExecResponse> cached_;
  uint64_t runs_ = 0;
};

}  // namespace svcproxy::watch
