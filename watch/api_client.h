// An HTTP/1.1 client for the API server on Boost.Beast, with TLS through
// OpenSSL (server verified by default; client certificates; bearer tokens
// re-read from their file; tokens or client certificates from an exec
// credential plugin). One connection per request: a LIST reads its
// whole body, a WATCH hands its body on as it arrives (chunked or not).
// Transport failures throw ApiError; HTTP statuses are the caller's to judge.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include "watch/kubeconfig.h"

namespace svcproxy::watch {

using Logger = std::function<void(const std::string& line)>;

enum class FailureKind {
  Refused,   // connection refused
  Connect,   // resolve or connect failed otherwise
  Tls,       // handshake or certificate verification failed
  Timeout,   // connect, request or idle timeout
  Reset,     // the connection broke mid-request or mid-body
  Protocol,     // not HTTP as we know it
  Credentials,  // the exec credential plugin failed (missing, exit code, bad output)
};

struct ApiError : std::runtime_error {
  ApiError(FailureKind failure, const std::string& message) : std::runtime_error(message), kind(failure) {}
  FailureKind kind;
};

struct HttpReply {
  int status = 0;
  // The body (not for a streamed 200), followed by at least 64 readable bytes
  // so that it can go to simdjson as it is.
  std::string body;
  std::chrono::seconds retry_after{0};  // Retry-After, when sent
};

class ApiClient {
 public:
  ApiClient(boost::asio::any_io_executor executor, ClientConfig config, Logger log);
  ~ApiClient();

  // GET `target` (path and query) within `timeout`. A 401 makes the token be
  // re-read (the exec plugin run) at once; if it changed, the request is
  // retried once with it.
  boost::asio::awaitable<HttpReply> get(std::string target, std::chrono::milliseconds timeout);

  // GET `target`; a 200 body goes to on_data piece by piece until the server
  // ends it (returns) or it breaks (throws). `idle` bounds every wait for
  // bytes, `timeout` the connect and header.
  boost::asio::awaitable<HttpReply> stream(std::string target, std::function<void(std::string_view)> on_data,
                                           std::chrono::milliseconds timeout, std::chrono::milliseconds idle);

  const ClientConfig& config() const;
  TokenSource& tokens();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "?a=b&c=d" pieces, percent-encoded as the API server expects.
std::string url_encode(std::string_view text);

}  // namespace svcproxy::watch
