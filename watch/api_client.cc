#include "watch/api_client.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <charconv>
#include <optional>
#include <variant>

#include "svcproxy_version.h"
#include "watch/exec_credential.h"

namespace svcproxy::watch {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using net::awaitable;

namespace {

constexpr auto kUseTuple = net::as_tuple(net::use_awaitable);
constexpr size_t kPadding = 64;
constexpr const char* kUserAgent = "svcproxy/" SVCPROXY_VERSION;

std::string describe(const boost::system::error_code& ec) { return ec.message(); }

[[noreturn]] void throw_transport(const boost::system::error_code& ec, const std::string& what) {
  if (ec == beast::error::timeout) throw ApiError(FailureKind::Timeout, what + ": timed out");
  if (ec == net::error::connection_refused) throw ApiError(FailureKind::Refused, what + ": connection refused");
  throw ApiError(FailureKind::Reset, what + ": " + describe(ec));
}

std::chrono::seconds parse_retry_after(std::string_view value) {
  int seconds = 0;
  const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec != std::errc() || seconds < 0) return std::chrono::seconds(0);
  return std::chrono::seconds(std::min(seconds, 3600));
}

}  // namespace

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

namespace {

// The TLS settings of `config`, with this client certificate (if any).
// Throws ConfigError naming the bad PEM.
std::shared_ptr<ssl::context> make_tls(const ClientConfig& config, const std::string& cert_pem, const std::string& key_pem) {
  auto tls = std::make_shared<ssl::context>(ssl::context::tls_client);
  tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  if (!config.ca_pem.empty()) {
    tls->add_certificate_authority(net::buffer(config.ca_pem), ec);
    if (ec) throw ConfigError("certificate-authority: not a PEM certificate: " + ec.message());
  } else {
    tls->set_default_verify_paths(ec);
  }
  if (!cert_pem.empty()) {
    tls->use_certificate_chain(net::buffer(cert_pem), ec);
    if (ec) throw ConfigError("client-certificate: not a PEM certificate: " + ec.message());
    tls->use_private_key(net::buffer(key_pem), ssl::context::pem, ec);
    if (ec) throw ConfigError("client-key: not a PEM key matching the certificate: " + ec.message());
  }
  tls->set_verify_mode(config.insecure_skip_tls_verify ? ssl::verify_none : ssl::verify_peer);
  return tls;
}

ExecCluster exec_cluster(const ClientConfig& config) {
  return {.server = config.url(), .tls_server_name = config.tls_server_name,
          .insecure_skip_tls_verify = config.insecure_skip_tls_verify, .ca_pem = config.ca_pem};
}

}  // namespace

struct ApiClient::Impl {
  Impl(net::any_io_executor ex, ClientConfig cfg, Logger logger)
      : executor(std::move(ex)), config(std::move(cfg)), log(std::move(logger)), tokens(config.token, config.token_file) {
    for (const auto& warning : config.warnings) log(warning);
    if (config.exec) exec = std::make_unique<ExecCredentialSource>(*config.exec, exec_cluster(config));
    if (config.scheme == "https") tls = make_tls(config, config.client_cert_pem, config.client_key_pem);
  }

  // The credential for the next request: the exec plugin's (cached until it
  // expires) or the token (file). Throws ApiError(Credentials).
  Credential credential() {
    if (exec) {
      try {
        return exec->current();
      } catch (const ExecError& e) {
        throw ApiError(FailureKind::Credentials, e.what());
      }
    }
    Credential out{.token = tokens.current(), .client_cert_pem = "", .client_key_pem = ""};
    if (const std::string error = tokens.last_error(); !error.empty() && error != last_token_error) log(error);
    last_token_error = tokens.last_error();
    return out;
  }

  // A 401 with `used`: whether a fresh credential may differ.
  bool reject(const Credential& used) {
    if (exec) {
      exec->rejected(used);
      return true;
    }
    if (config.token_file.empty()) return false;
    tokens.invalidate();
    return true;
  }

  // The TLS context for `credential`: the configured one, or one with the
  // plugin's client certificate (rebuilt when the plugin returns a new one).
  std::shared_ptr<ssl::context> tls_for(const Credential& credential) {
    if (credential.client_cert_pem.empty()) return tls;
    if (exec_tls && exec_tls_cert == credential.client_cert_pem) return exec_tls;
    try {
      exec_tls = make_tls(config, credential.client_cert_pem, credential.client_key_pem);
    } catch (const ConfigError& e) {
      throw ApiError(FailureKind::Credentials, "exec plugin \"" + config.exec->command + "\": " + e.what());
    }
    exec_tls_cert = credential.client_cert_pem;
    return exec_tls;
  }

  const std::string& server_name() const { return config.tls_server_name.empty() ? config.host : config.tls_server_name; }

  http::request<http::empty_body> request(const std::string& target, const std::string& token) {
    http::request<http::empty_body> req{http::verb::get, config.path_prefix + target, 11};
    req.set(http::field::host, config.authority());
    req.set(http::field::user_agent, kUserAgent);
    req.set(http::field::accept, "application/json");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    return req;
  }

  awaitable<void> connect(beast::tcp_stream& stream, std::chrono::milliseconds timeout) {
    tcp::resolver resolver(executor);
    auto [rec, results] = co_await resolver.async_resolve(config.host, config.port, kUseTuple);
    if (rec) throw ApiError(FailureKind::Connect, "resolve " + config.host + ": " + describe(rec));
    stream.expires_after(timeout);
    auto [cec, endpoint] = co_await stream.async_connect(results, kUseTuple);
    if (cec) throw_transport(cec, "connect " + config.url());
  }

  // One request on a connected (and handshaken) stream. A 200 body goes to
  // on_data when it is set; any other body is collected.
  template <class Stream>
  awaitable<HttpReply> exchange(Stream& stream, const std::string& target, const std::string& token,
                                const std::function<void(std::string_view)>* on_data, std::chrono::milliseconds timeout,
                                std::chrono::milliseconds idle) {
    auto& lowest = beast::get_lowest_layer(stream);
    auto req = request(target, token);
    lowest.expires_after(timeout);
    auto [wec, written] = co_await http::async_write(stream, req, kUseTuple);
    if (wec) throw_transport(wec, "GET " + target);

    beast::flat_buffer buffer;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    parser.header_limit(64 * 1024);
    auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, kUseTuple);
    if (hec) {
      if (hec.category() == http::make_error_code(http::error::bad_version).category() && hec != http::error::end_of_stream) {
        throw ApiError(FailureKind::Protocol, "GET " + target + ": not an HTTP reply: " + describe(hec));
      }
      throw_transport(hec, "GET " + target);
    }
    HttpReply reply;
    reply.status = static_cast<int>(parser.get().result_int());
    if (auto it = parser.get().find(http::field::retry_after); it != parser.get().end()) {
      reply.retry_after = parse_retry_after(it->value());
    }
    const bool streaming = on_data != nullptr && reply.status == 200;
    std::array<char, 64 * 1024> chunk;
    while (!parser.is_done()) {
      parser.get().body().data = chunk.data();
      parser.get().body().size = chunk.size();
      lowest.expires_after(on_data != nullptr ? idle : timeout);
      auto [rec, rn] = co_await http::async_read_some(stream, buffer, parser, kUseTuple);
      const size_t got = chunk.size() - parser.get().body().size;
      if (got > 0) {
        if (streaming) {
          (*on_data)(std::string_view(chunk.data(), got));
        } else {
          if (reply.body.capacity() < reply.body.size() + got + kPadding) {
            reply.body.reserve(2 * (reply.body.size() + got + kPadding));
          }
          reply.body.append(chunk.data(), got);
        }
      }
      if (rec == http::error::need_buffer) continue;
      if (rec) {
        if (rec.category() == http::make_error_code(http::error::bad_version).category() && rec != http::error::partial_message) {
          throw ApiError(FailureKind::Protocol, "GET " + target + ": malformed HTTP body: " + describe(rec));
        }
        throw_transport(rec, "GET " + target + " (body)");
      }
    }
    reply.body.reserve(reply.body.size() + kPadding);
    co_return reply;
  }

  awaitable<HttpReply> once(const std::string& target, const Credential& credential,
                            const std::function<void(std::string_view)>* on_data, std::chrono::milliseconds timeout,
                            std::chrono::milliseconds idle) {
    if (config.scheme == "http") {
      beast::tcp_stream stream(executor);
      co_await connect(stream, timeout);
      HttpReply reply = co_await exchange(stream, target, credential.token, on_data, timeout, idle);
      boost::system::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      co_return reply;
    }
    const std::shared_ptr<ssl::context> context = tls_for(credential);  // alive as long as the stream
    beast::ssl_stream<beast::tcp_stream> stream(executor, *context);
    co_await connect(beast::get_lowest_layer(stream), timeout);
    const std::string& name = server_name();
    boost::system::error_code address_ec;
    net::ip::make_address(name, address_ec);
    if (address_ec && !SSL_set_tlsext_host_name(stream.native_handle(), name.c_str())) {  // SNI: names only
      throw ApiError(FailureKind::Tls, "TLS: cannot set the server name " + name);
    }
    if (!config.insecure_skip_tls_verify) stream.set_verify_callback(ssl::host_name_verification(name));
    beast::get_lowest_layer(stream).expires_after(timeout);
    auto [hec] = co_await stream.async_handshake(ssl::stream_base::client, kUseTuple);
    if (hec) {
      if (hec == beast::error::timeout) throw ApiError(FailureKind::Timeout, "TLS handshake with " + config.url() + ": timed out");
      const long verify = SSL_get_verify_result(stream.native_handle());
      std::string why = verify != X509_V_OK ? std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify)
                                             : describe(hec);
      if (verify == X509_V_OK && hec.category() != net::error::get_ssl_category() && hec != net::ssl::error::stream_truncated) {
        throw_transport(hec, "TLS handshake with " + config.url());
      }
      throw ApiError(FailureKind::Tls, "TLS handshake with " + config.url() + " (server name " + name + "): " + why);
    }
    HttpReply reply = co_await exchange(stream, target, credential.token, on_data, timeout, idle);
    // The reply is complete (length or last chunk): close without waiting for
    // the server's close_notify, which many servers never send.
    beast::get_lowest_layer(stream).close();
    co_return reply;
  }

  awaitable<HttpReply> with_token_retry(const std::string& target, const std::function<void(std::string_view)>* on_data,
                                        std::chrono::milliseconds timeout, std::chrono::milliseconds idle) {
    const Credential used = credential();
    HttpReply reply = co_await once(target, used, on_data, timeout, idle);
    if (reply.status == 401 && reject(used)) {
      const Credential fresh = credential();
      if (fresh != used) {
        log(exec ? "401 Unauthorized: retrying with a new credential from exec plugin \"" + exec->config().command + "\""
                 : "401 Unauthorized: retrying with the re-read token from " + config.token_file);
        reply = co_await once(target, fresh, on_data, timeout, idle);
      }
    }
    co_return reply;
  }

  net::any_io_executor executor;
  ClientConfig config;
  Logger log;
  TokenSource tokens;
  std::unique_ptr<ExecCredentialSource> exec;
  std::shared_ptr<ssl::context> tls;       // https: the kubeconfig's settings and client certificate
  std::shared_ptr<ssl::context> exec_tls;  // with the exec plugin's client certificate
  std::string exec_tls_cert;
  std::string last_token_error;
};

ApiClient::ApiClient(net::any_io_executor executor, ClientConfig config, Logger log)
    : impl_(std::make_unique<Impl>(std::move(executor), std::move(config), std::move(log))) {}
ApiClient::~ApiClient() = default;

awaitable<HttpReply> ApiClient::get(std::string target, std::chrono::milliseconds timeout) {
  co_return co_await impl_->with_token_retry(target, nullptr, timeout, timeout);
}

awaitable<HttpReply> ApiClient::stream(std::string target, std::function<void(std::string_view)> on_data,
                                       std::chrono::milliseconds timeout, std::chrono::milliseconds idle) {
  co_return co_await impl_->with_token_retry(target, &on_data, timeout, idle);
}

const ClientConfig& ApiClient::config() const { return impl_->config; }
TokenSource& ApiClient::tokens() { return impl_->tokens; }

}  // namespace svcproxy::watch
