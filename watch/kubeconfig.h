// Where the API server is and how to authenticate to it: a kubeconfig file
// (kubectl's format, current-context), the in-cluster service account, and
// --master. Every problem is a ConfigError naming the file and field.
#pragma once

#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace svcproxy::watch {

struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A kubeconfig user's `exec` credential plugin (client-go's ExecConfig).
struct ExecConfig {
  std::string api_version;  // client.authentication.k8s.io/v1 or /v1beta1
  // As kubectl resolves it: a relative path with a '/' is relative to the
  // kubeconfig's directory; a bare name is looked up in $PATH.
  std::string command;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;  // added to svcproxy's environment
  std::string install_hint;                              // shown when the command is missing
  bool provide_cluster_info = false;                     // spec.cluster in KUBERNETES_EXEC_INFO
  std::string interactive_mode;                          // Never, IfAvailable or Always
  std::string user;                                      // the kubeconfig user, for messages
  std::chrono::milliseconds timeout{60000};              // a plugin still running then is killed
};

struct ClientConfig {
  std::string scheme = "https";  // "https" or "http"
  std::string host;              // without brackets
  std::string port;              // "443" by default for https
  std::string path_prefix;       // a server URL's path ("" or "/prefix", no trailing slash)
  std::string ca_pem;            // empty: the system's trust store
  bool insecure_skip_tls_verify = false;
  std::string tls_server_name;   // SNI and the name verified; default: host
  std::string client_cert_pem;
  std::string client_key_pem;
  std::string token;             // static token (wins over token_file)
  std::string token_file;        // re-read every minute and after a 401
  std::optional<ExecConfig> exec;  // credentials from a plugin (no token or certificate set)
  std::vector<std::string> warnings;  // e.g. insecure-skip-tls-verify in use

  // "host:port" for the Host header, IPv6 bracketed.
  std::string authority() const;
  std::string url() const;  // scheme://authority + prefix
};

// Parses "https://host[:port][/prefix]" ("http" also accepted); IPv6 in
// brackets. Throws ConfigError.
void parse_server_url(const std::string& url, ClientConfig& out);

// A kubeconfig file: its current-context's cluster and user. Relative file
// paths are relative to the kubeconfig's directory, as kubectl has it. An
// `exec` plugin is used when the user has no token, tokenFile or client
// certificate (kubectl's precedence); an `auth-provider` is refused naming
// the exec plugin that replaces it.
ClientConfig load_kubeconfig(const std::string& path);

// In-cluster: https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT with
// the service account's token file and CA in `account_dir`.
ClientConfig in_cluster_config(const std::function<const char*(const char*)>& getenv,
                               const std::string& account_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

// --kubeconfig FILE, else $KUBECONFIG (its first path), else in-cluster;
// then --master (if set) overrides the server. Throws ConfigError.
ClientConfig resolve_client_config(const std::string& kubeconfig, const std::string& master,
                                   const std::function<const char*(const char*)>& getenv);

// The bearer token to send: the static one, or the token file's content
// re-read when a minute has passed or after invalidate() (a 401). A file
// that cannot be read keeps the previous token. Thread-safe.
class TokenSource {
 public:
  using Clock = std::chrono::steady_clock;
  TokenSource(std::string token, std::string token_file, std::chrono::seconds refresh = std::chrono::minutes(1));

  std::string current();
  void invalidate();  // the next current() re-reads the file
  // Why the last re-read failed ("" if it did not).
  std::string last_error();

 private:
  std::mutex mutex_;
  std::string token_;
  std::string file_;
  std::chrono::seconds refresh_;
  Clock::time_point read_at_{};
  bool stale_ = true;
  std::string error_;
};

}  // namespace svcproxy::watch
