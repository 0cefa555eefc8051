#include "watch/kubeconfig.h"

#include <yaml-cpp/yaml.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/result.h"

namespace svcproxy::watch {
namespace {

base::Result<std::string> read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return base::Error{std::strerror(errno)};
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return std::move(buffer).str();
}

std::string base64_decode(const std::string& text, const std::string& what) {
  static constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t bits = 0;
  int count = 0;
  for (char c : text) {
    if (c == '=' || c == '\n' || c == '\r' || c == ' ' || c == '\t') continue;
    const size_t value = kAlphabet.find(c);
    if (value == std::string_view::npos) throw ConfigError(what + ": not base64");
    bits = (bits << 6) | static_cast<uint32_t>(value);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xFF);
    }
  }
  return out;
}

std::string trim_token(std::string token) {
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' ')) token.pop_back();
  return token;
}

// map[key], or a null node: yaml-cpp's missing-key nodes throw on every use
// but IsDefined().
YAML::Node child(const YAML::Node& map, const char* key) {
  if (!map.IsDefined() || !map.IsMap()) return YAML::Node();
  const YAML::Node& const_map = map;
  YAML::Node value = const_map[key];
  return value.IsDefined() ? value : YAML::Node();
}

std::string scalar(const YAML::Node& map, const char* key) {
  const YAML::Node value = child(map, key);
  return value.IsScalar() ? value.Scalar() : "";
}

// The `name`d entry of clusters/users/contexts: its inner mapping.
YAML::Node named(const YAML::Node& root, const char* list, const char* inner, const std::string& name,
                 const std::string& path) {
  const YAML::Node entries = child(root, list);
  if (entries.IsSequence()) {
    for (const YAML::Node& entry : entries) {
      if (scalar(entry, "name") == name) return child(entry, inner);
    }
  }
  throw ConfigError(path + ": " + list + ": no entry named \"" + name + "\"");
}

// A PEM from `key-data` (base64) or the file `key` (relative to `dir`).
std::string pem(const YAML::Node& map, const char* key, const std::string& dir, const std::string& path) {
  const std::string data = scalar(map, (std::string(key) + "-data").c_str());
  if (!data.empty()) return base64_decode(data, path + ": " + key + "-data");
  std::string file = scalar(map, key);
  if (file.empty()) return "";
  if (std::filesystem::path(file).is_relative()) file = (std::filesystem::path(dir) / file).string();
  auto text = read_text(file);
  if (!text) throw ConfigError(path + ": " + key + " " + file + ": " + text.error());
  return std::move(text).value();
}

std::vector<std::string> string_list(const YAML::Node& node, const std::string& what) {
  std::vector<std::string> out;
  if (node.IsNull()) return out;
  if (!node.IsSequence()) throw ConfigError(what + ": expected a list of strings");
  for (const YAML::Node& item : node) {
    if (!item.IsScalar()) throw ConfigError(what + ": expected a list of strings");
    out.push_back(item.Scalar());
  }
  return out;
}

// users[].user.exec, checked as kubectl's loader does.
ExecConfig exec_config(const YAML::Node& exec, const std::string& dir, const std::string& about) {
  const std::string where = about + ": exec";
  if (!exec.IsMap()) throw ConfigError(where + ": expected a mapping");
  ExecConfig out;
  out.api_version = scalar(exec, "apiVersion");
  if (out.api_version != "client.authentication.k8s.io/v1" && out.api_version != "client.authentication.k8s.io/v1beta1") {
    throw ConfigError(where + ": apiVersion \"" + out.api_version +
                      "\" is not supported (client.authentication.k8s.io/v1 or /v1beta1)");
  }
  out.command = scalar(exec, "command");
  if (out.command.empty()) throw ConfigError(where + ": command is not set");
  if (out.command.find('/') != std::string::npos && std::filesystem::path(out.command).is_relative()) {
    out.command = (std::filesystem::path(dir) / out.command).lexically_normal().string();
  }
  out.args = string_list(child(exec, "args"), where + ": args");
  const YAML::Node env = child(exec, "env");
  if (!env.IsNull() && !env.IsSequence()) throw ConfigError(where + ": env: expected a list of {name, value}");
  if (env.IsSequence()) {
    for (const YAML::Node& entry : env) {
      const std::string name = scalar(entry, "name");
      if (name.empty() || name.find('=') != std::string::npos) throw ConfigError(where + ": env: an entry without a valid name");
      out.env.emplace_back(name, scalar(entry, "value"));
    }
  }
  out.install_hint = scalar(exec, "installHint");
  out.provide_cluster_info = scalar(exec, "provideClusterInfo") == "true";
  out.interactive_mode = scalar(exec, "interactiveMode");
  // client-go's defaulting: v1beta1 means IfAvailable; v1 must say.
  if (out.interactive_mode.empty() && out.api_version.ends_with("/v1beta1")) out.interactive_mode = "IfAvailable";
  if (out.interactive_mode != "Never" && out.interactive_mode != "IfAvailable" && out.interactive_mode != "Always") {
    throw ConfigError(where + ": interactiveMode " +
                      (out.interactive_mode.empty() ? "is not set (required with client.authentication.k8s.io/v1)"
                                                    : "\"" + out.interactive_mode + "\" is not Never, IfAvailable or Always"));
  }
  return out;
}

// The in-tree auth providers are gone from kubectl (gcp and azure in 1.26;
// oidc is deprecated): each has an exec plugin that replaces it.
void refuse_auth_provider(const YAML::Node& provider, const std::string& about) {
  if (provider.IsNull()) return;
  const std::string name = scalar(provider, "name");
  std::string replacement = "an exec plugin such as kubelogin (oidc, azure) or gke-gcloud-auth-plugin (gcp)";
  if (name == "gcp") replacement = "the exec plugin gke-gcloud-auth-plugin (gcloud components install gke-gcloud-auth-plugin)";
  if (name == "azure") replacement = "the exec plugin kubelogin (github.com/Azure/kubelogin: kubelogin convert-kubeconfig)";
  if (name == "oidc") replacement = "the exec plugin kubelogin (github.com/int128/kubelogin: kubectl oidc-login)";
  throw ConfigError(about + ": auth-provider \"" + name + "\" was removed from kubectl and is not supported; use " +
                    replacement);
}

}  // namespace

std::string ClientConfig::authority() const {
  const std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + port;
}

std::string ClientConfig::url() const { return scheme + "://" + authority() + path_prefix; }

void parse_server_url(const std::string& url, ClientConfig& out) {
  const size_t colon = url.find("://");
  if (colon == std::string::npos) throw ConfigError("server \"" + url + "\": expected https://host[:port]");
  const std::string scheme = url.substr(0, colon);
  if (scheme != "https" && scheme != "http") throw ConfigError("server \"" + url + "\": scheme must be https or http");
  std::string rest = url.substr(colon + 3);
  const size_t slash = rest.find('/');
  std::string prefix = slash == std::string::npos ? "" : rest.substr(slash);
  rest = rest.substr(0, slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  std::string host, port;
  if (rest.starts_with("[")) {
    const size_t close = rest.find(']');
    if (close == std::string::npos) throw ConfigError("server \"" + url + "\": unclosed [");
    host = rest.substr(1, close - 1);
    const std::string after = rest.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') throw ConfigError("server \"" + url + "\": junk after ]");
      port = after.substr(1);
    }
  } else {
    const size_t c = rest.rfind(':');
    if (c != std::string::npos && rest.find(':') == c) {
      host = rest.substr(0, c);
      port = rest.substr(c + 1);
    } else {
      host = rest;  // a bare IPv6 address has several colons: no port
    }
  }
  if (host.empty()) throw ConfigError("server \"" + url + "\": no host");
  if (port.empty()) port = scheme == "https" ? "443" : "80";
  if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 || std::stoi(port) > 65535 ||
      std::stoi(port) == 0) {
    throw ConfigError("server \"" + url + "\": bad port \"" + port + "\"");
  }
  out.scheme = scheme;
  out.host = host;
  out.port = port;
  out.path_prefix = prefix;
}

ClientConfig load_kubeconfig(const std::string& path) {
  const auto text = read_text(path);
  if (!text) throw ConfigError("kubeconfig " + path + ": " + text.error());
  YAML::Node root;
  try {
    root = YAML::Load(*text);
  } catch (const YAML::Exception& e) {
    throw ConfigError("kubeconfig " + path + ": malformed YAML: " + e.what());
  }
  if (!root.IsMap()) throw ConfigError("kubeconfig " + path + ": not a kubeconfig (expected a mapping)");
  const std::string where = "kubeconfig " + path;
  const std::string dir = std::filesystem::path(path).parent_path().string();
  const std::string context_name = scalar(root, "current-context");
  if (context_name.empty()) throw ConfigError(where + ": current-context is not set");
  const YAML::Node context = named(root, "contexts", "context", context_name, where);
  const std::string cluster_name = scalar(context, "cluster");
  const std::string user_name = scalar(context, "user");
  if (cluster_name.empty()) throw ConfigError(where + ": context \"" + context_name + "\" names no cluster");
  const YAML::Node cluster = named(root, "clusters", "cluster", cluster_name, where);

  ClientConfig config;
  const std::string server = scalar(cluster, "server");
  if (server.empty()) throw ConfigError(where + ": cluster \"" + cluster_name + "\" has no server");
  try {
    parse_server_url(server, config);
  } catch (const ConfigError& e) {
    throw ConfigError(where + ": cluster \"" + cluster_name + "\": " + e.what());
  }
  config.ca_pem = pem(cluster, "certificate-authority", dir, where);
  config.tls_server_name = scalar(cluster, "tls-server-name");
  if (scalar(cluster, "insecure-skip-tls-verify") == "true") {
    config.insecure_skip_tls_verify = true;
    config.warnings.push_back(where + ": insecure-skip-tls-verify is set: the server's certificate is not verified");
  }
  if (!user_name.empty()) {
    const YAML::Node user = named(root, "users", "user", user_name, where);
    config.client_cert_pem = pem(user, "client-certificate", dir, where);
    config.client_key_pem = pem(user, "client-key", dir, where);
    if (config.client_cert_pem.empty() != config.client_key_pem.empty()) {
      throw ConfigError(where + ": user \"" + user_name + "\": client-certificate and client-key go together");
    }
    config.token = scalar(user, "token");
    std::string token_file = scalar(user, "tokenFile");
    if (!token_file.empty() && std::filesystem::path(token_file).is_relative()) {
      token_file = (std::filesystem::path(dir) / token_file).string();
    }
    if (config.token.empty()) config.token_file = token_file;  // token wins over tokenFile
    const std::string about = where + ": user \"" + user_name + "\"";
    refuse_auth_provider(child(user, "auth-provider"), about);
    const YAML::Node exec = child(user, "exec");
    const bool has_credentials = !config.token.empty() || !config.token_file.empty() || !config.client_cert_pem.empty();
    if (!exec.IsNull() && !has_credentials) {
      config.exec = exec_config(exec, dir, about);
      config.exec->user = user_name;
    }
  }
  return config;
}

ClientConfig in_cluster_config(const std::function<const char*(const char*)>& getenv, const std::string& account_dir) {
  const char* host = getenv("KUBERNETES_SERVICE_HOST");
  const char* port = getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr || *host == '\0' || *port == '\0') {
    throw ConfigError("no --kubeconfig, no $KUBECONFIG and not in a cluster (KUBERNETES_SERVICE_HOST/PORT unset)");
  }
  ClientConfig config;
  const std::string h = host;
  parse_server_url("https://" + (h.find(':') != std::string::npos ? "[" + h + "]" : h) + ":" + port, config);
  auto ca = read_text(account_dir + "/ca.crt");
  if (!ca) throw ConfigError("in-cluster: " + account_dir + "/ca.crt: " + ca.error());
  config.ca_pem = std::move(ca).value();
  config.token_file = account_dir + "/token";
  return config;
}

ClientConfig resolve_client_config(const std::string& kubeconfig, const std::string& master,
                                   const std::function<const char*(const char*)>& getenv) {
  ClientConfig config;
  std::string path = kubeconfig;
  if (path.empty()) {
    const char* env = getenv("KUBECONFIG");
    if (env != nullptr) {
      path = env;
      path = path.substr(0, path.find(':'));
    }
  }
  if (!path.empty()) {
    config = load_kubeconfig(path);
  } else if (!master.empty()) {
    config = ClientConfig();  // --master alone: no credentials
  } else {
    config = in_cluster_config(getenv);
  }
  if (!master.empty()) parse_server_url(master, config);
  return config;
}

TokenSource::TokenSource(std::string token, std::string token_file, std::chrono::seconds refresh)
    : token_(std::move(token)), file_(std::move(token_file)), refresh_(refresh) {
  if (!token_.empty()) file_.clear();
}

std::string TokenSource::current() {
  std::lock_guard lock(mutex_);
  if (file_.empty()) return token_;
  const auto now = Clock::now();
  if (stale_ || now - read_at_ >= refresh_) {
    const auto text = read_text(file_);
    if (text && !trim_token(*text).empty()) {
      token_ = trim_token(*text);
      error_.clear();
    } else {
      error_ = "token file " + file_ + ": " + (text ? "empty" : text.error()) + "; keeping the previous token";
    }
    read_at_ = now;
    stale_ = false;
  }
  return token_;
}

void TokenSource::invalidate() {
  std::lock_guard lock(mutex_);
  stale_ = true;
}

std::string TokenSource::last_error() {
  std::lock_guard lock(mutex_);
  return error_;
}

}  // namespace svcproxy::watch
