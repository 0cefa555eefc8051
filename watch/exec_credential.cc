#include "watch/exec_credential.h"

#include <simdjson.h>

#include <cctype>
#include <ctime>

#include "base/json.h"

extern char** environ;  // POSIX: svcproxy's environment, which the plugin inherits

namespace svcproxy::watch {
namespace {

constexpr size_t kQuotedStderr = 300;  // characters of the plugin's stderr in a message

std::string base64_encode(std::string_view data) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < data.size(); i += 3) {
    const uint32_t v = (uint8_t(data[i]) << 16) | (uint8_t(data[i + 1]) << 8) | uint8_t(data[i + 2]);
    for (int shift = 18; shift >= 0; shift -= 6) out += kAlphabet[(v >> shift) & 63];
  }
  if (i < data.size()) {
    uint32_t v = uint8_t(data[i]) << 16;
    if (i + 1 < data.size()) v |= uint8_t(data[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < data.size() ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Whitespace runs (newlines included) become one space, then cut: a
// message stays one line.
std::string one_line(std::string_view text, size_t limit) {
  std::string out;
  for (const char c : text) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!out.empty() && out.back() != ' ') out += ' ';
    } else if (static_cast<unsigned char>(c) >= 0x20) {
      out += c;
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (out.size() > limit) out = out.substr(0, limit) + "...";
  return out;
}

template <class JsonObject>  // dom::element or dom::object
std::string string_field(JsonObject object, const char* key) {
  std::string_view value;
  if (object[key].get_string().get(value) != simdjson::SUCCESS) return "";
  return std::string(value);
}

// svcproxy's environment, the plugin's entries replacing any of the same
// name (getenv takes the first), and KUBERNETES_EXEC_INFO.
std::vector<std::string> plugin_environment(const ExecConfig& config, const std::string& exec_info) {
  std::vector<std::pair<std::string, std::string>> added = config.env;
  added.emplace_back("KUBERNETES_EXEC_INFO", exec_info);
  auto overridden = [&](std::string_view entry) {
    const std::string_view name = entry.substr(0, entry.find('='));
    for (const auto& [n, v] : added) {
      if (n == name) return true;
    }
    return false;
  };
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    if (!overridden(*e)) out.emplace_back(*e);
  }
  for (size_t i = 0; i < added.size(); ++i) {
    bool later = false;  // the last entry of a name wins, as in client-go
    for (size_t j = i + 1; j < added.size(); ++j) later = later || added[j].first == added[i].first;
    if (!later) out.push_back(added[i].first + "=" + added[i].second);
  }
  return out;
}

}  // namespace

std::string exec_info_json(const ExecConfig& config, bool interactive, const ExecCluster& cluster) {
  std::string spec = std::string("\"interactive\":") + (interactive ? "true" : "false");
  if (config.provide_cluster_info) {
    std::string c = "\"server\":" + base::json_string(cluster.server);
    if (!cluster.tls_server_name.empty()) c += ",\"tls-server-name\":" + base::json_string(cluster.tls_server_name);
    if (cluster.insecure_skip_tls_verify) c += ",\"insecure-skip-tls-verify\":true";
    if (!cluster.ca_pem.empty())
      c += ",\"certificate-authority-data\":" + base::json_string(base64_encode(cluster.ca_pem));
    spec += ",\"cluster\":{" + c + "}";
  }
  return "{\"kind\":\"ExecCredential\",\"apiVersion\":" + base::json_string(config.api_version) + ",\"spec\":{" + spec +
         "}}";
}

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text) {
  // YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)
  auto digits = [&](size_t at, size_t n, int& out) {
    if (at + n > text.size()) return false;
    out = 0;
    for (size_t i = at; i < at + n; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(text[i]))) return false;
      out = out * 10 + (text[i] - '0');
    }
    return true;
  };
  std::tm tm{};
  int year, month, day, hour, minute, second;
  if (!digits(0, 4, year) || text.size() < 20 || text[4] != '-' || !digits(5, 2, month) || text[7] != '-' ||
      !digits(8, 2, day) || (text[10] != 'T' && text[10] != 't') || !digits(11, 2, hour) || text[13] != ':' ||
      !digits(14, 2, minute) || text[16] != ':' || !digits(17, 2, second)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60) return std::nullopt;
  size_t at = 19;
  std::chrono::nanoseconds fraction{0};
  if (at < text.size() && text[at] == '.') {
    int64_t scale = 100000000;
    ++at;
    const size_t start = at;
    for (; at < text.size() && std::isdigit(static_cast<unsigned char>(text[at])); ++at, scale /= 10) {
      fraction += std::chrono::nanoseconds((text[at] - '0') * scale);
    }
    if (at == start) return std::nullopt;
  }
  int offset_minutes = 0;
  if (at < text.size() && (text[at] == 'Z' || text[at] == 'z') && at + 1 == text.size()) {
    // UTC
  } else if (at + 6 == text.size() && (text[at] == '+' || text[at] == '-') && text[at + 3] == ':') {
    int oh, om;
    if (!digits(at + 1, 2, oh) || !digits(at + 4, 2, om)) return std::nullopt;
    offset_minutes = (oh * 60 + om) * (text[at] == '-' ? -1 : 1);
  } else {
    return std::nullopt;
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const std::time_t utc = ::timegm(&tm);
  // system_clock counts nanoseconds: it ends in 2262. Later is "never".
  using Tp = std::chrono::system_clock::time_point;
  constexpr auto kDay = std::chrono::hours(24);
  if (utc > std::chrono::duration_cast<std::chrono::seconds>((Tp::max() - kDay).time_since_epoch()).count()) return Tp::max();
  if (utc < std::chrono::duration_cast<std::chrono::seconds>((Tp::min() + kDay).time_since_epoch()).count()) return Tp::min();
  return std::chrono::system_clock::from_time_t(utc) - std::chrono::minutes(offset_minutes) +
         std::chrono::duration_cast<std::chrono::system_clock::duration>(fraction);
}

ExecResponse parse_exec_response(std::string_view json, const std::string& api_version) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  if (const auto code = parser.parse(simdjson::padded_string(json)).get(root); code != simdjson::SUCCESS) {
    throw ExecError(std::string("stdout is not JSON: ") + simdjson::error_message(code));
  }
  if (!root.is_object()) throw ExecError("stdout is not an ExecCredential object");
  const std::string got_version = string_field(root, "apiVersion");
  if (got_version != api_version) {
    throw ExecError("returned apiVersion \"" + got_version + "\", the kubeconfig asks for \"" + api_version + "\"");
  }
  if (const std::string kind = string_field(root, "kind"); kind != "ExecCredential") {
    throw ExecError("returned kind \"" + kind + "\", not ExecCredential");
  }
  simdjson::dom::object status;
  if (root["status"].get_object().get(status) != simdjson::SUCCESS) throw ExecError("returned no status");
  ExecResponse out;
  out.credential.token = string_field(status, "token");
  out.credential.client_cert_pem = string_field(status, "clientCertificateData");
  out.credential.client_key_pem = string_field(status, "clientKeyData");
  const Credential& c = out.credential;
  if (c.token.empty() && c.client_cert_pem.empty() && c.client_key_pem.empty()) {
    throw ExecError("returned neither a token nor a client certificate and key");
  }
  if (c.client_cert_pem.empty() != c.client_key_pem.empty()) {
    throw ExecError("returned only one of clientCertificateData and clientKeyData");
  }
  if (const std::string expiry = string_field(status, "expirationTimestamp"); !expiry.empty()) {
    out.expires = parse_rfc3339(expiry);
    if (!out.expires) throw ExecError("expirationTimestamp \"" + expiry + "\" is not RFC 3339");
  }
  return out;
}

ExecCredentialSource::ExecCredentialSource(ExecConfig config, ExecCluster cluster, std::shared_ptr<ProcessRunner> runner,
                                           Now now)
    : config_(std::move(config)), cluster_(std::move(cluster)), runner_(std::move(runner)), now_(std::move(now)) {}

Credential ExecCredentialSource::current() {
  std::lock_guard lock(mutex_);
  // client-go keeps a credential until the clock is past its expiry.
  if (cached_ && (!cached_->expires || now_() <= *cached_->expires)) return cached_->credential;
  cached_.reset();
  cached_ = run_plugin();
  return cached_->credential;
}

void ExecCredentialSource::rejected(const Credential& used) {
  std::lock_guard lock(mutex_);
  if (cached_ && cached_->credential == used) cached_.reset();
}

uint64_t ExecCredentialSource::runs() const {
  std::lock_guard lock(mutex_);
  return runs_;
}

ExecResponse ExecCredentialSource::run_plugin() {
  const std::string who = "exec plugin \"" + config_.command + "\" (user \"" + config_.user + "\")";
  bool interactive = false;
  if (config_.interactive_mode == "Always") {
    if (!runner_->stdin_is_terminal()) {
      throw ExecError(who + ": interactiveMode Always needs a terminal on standard input, and there is none");
    }
    interactive = true;
  } else if (config_.interactive_mode == "IfAvailable") {
    interactive = runner_->stdin_is_terminal();
  }
  ProcessRequest request{.command = config_.command,
                         .args = config_.args,
                         .env = plugin_environment(config_, exec_info_json(config_, interactive, cluster_)),
                         .interactive = interactive,
                         .timeout = config_.timeout};
  ++runs_;
  const ProcessResult result = runner_->run(request);
  if (result.outcome != ProcessResult::Outcome::Exited || result.exit_code != 0) {
    throw ExecError(who + ": " + what_failed(result));
  }
  try {
    return parse_exec_response(result.out, config_.api_version);
  } catch (const ExecError& e) {
    throw ExecError(who + ": " + e.what());
  }
}

std::string ExecCredentialSource::what_failed(const ProcessResult& result) const {
  using Outcome = ProcessResult::Outcome;
  std::string why;
  switch (result.outcome) {
    case Outcome::NotFound:
      why = config_.command.find('/') != std::string::npos ? "not found" : "not found in $PATH";
      if (!config_.install_hint.empty()) why += "; " + one_line(config_.install_hint, 2 * kQuotedStderr);
      return why;
    case Outcome::SpawnFailed:
      return "cannot start it: " + result.error;
    case Outcome::TimedOut:
      why = "still running after " + std::to_string(config_.timeout.count()) + " ms, killed";
      break;
    case Outcome::OutputTooLarge:
      why = "wrote more output than svcproxy reads, killed";
      break;
    case Outcome::Signaled:
      why = "killed by signal " + std::to_string(result.signal);
      break;
    case Outcome::Exited:
      why = "failed with exit code " + std::to_string(result.exit_code);
      break;
  }
  const std::string err = one_line(result.err, kQuotedStderr);
  if (!err.empty()) why += ": \"" + err + "\"";
  return why;
}

}  // namespace svcproxy::watch
