#include "proxy/http_server.h"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "proxy/debug_feed.h"
#include "svcproxy_version.h"

namespace svcproxy::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

base::Result<HostPort> parse_host_port(std::string_view text) {
  auto fail = [&](const std::string& why) {
    return base::Error{"invalid address \"" + std::string(text) + "\": " + why + " (want IP:PORT, e.g. 0.0.0.0:10256)"};
  };
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return fail("a bracketed IPv6 address needs ]:PORT");
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail("missing port");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return fail("an IPv6 address needs brackets");
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535)
    return fail("port must be a number 0..65535");
  boost::system::error_code bad;
  asio::ip::make_address(std::string(host), bad);
  if (bad) return fail("\"" + std::string(host) + "\" is not an IP address");
  return HostPort{std::string(host), static_cast<uint16_t>(value)};
}

namespace {

enum class Role { Healthz, Metrics, HealthCheck };

struct Answer {
  http::status status = http::status::ok;
  std::string content_type;
  std::string body;
  std::optional<size_t> endpoint_weight;  // X-Load-Balancing-Endpoint-Weight
  bool close = false;
  std::string warning;  // a Warning header; empty: none
  std::string csp{};    // Content-Security-Policy (the /debug page)
};

// The metrics port's pages, as /statusz lists them (kube-proxy lists the
// first path segment of each page registered before /statusz).
const std::vector<std::string> kMetricsPortPaths = {"/configz", "/flagz", "/healthz", "/metrics", "/proxyMode"};

}  // namespace

class HttpServer::Impl {
 public:
  Impl(HttpServerOptions options, const ProxyHealth& health, Metrics& metrics)
      : options_(std::move(options)), health_(health), metrics_(metrics), work_(asio::make_work_guard(io_)) {}

  // Opens a listener on ip:port. An unspecified IP (0.0.0.0 or ::) listens
  // on both families, as Go (and so kube-proxy) does; IPv4 only when the
  // kernel has no IPv6.
  std::shared_ptr<tcp::acceptor> listen(const std::string& ip, uint16_t port) {
    const auto address = asio::ip::make_address(ip);
    auto try_open = [&](const tcp::endpoint& ep, bool dual_stack) {
      auto acceptor = std::make_shared<tcp::acceptor>(io_);
      acceptor->open(ep.protocol());
      acceptor->set_option(asio::socket_base::reuse_address(true));
      if (ep.protocol() == tcp::v6()) acceptor->set_option(asio::ip::v6_only(!dual_stack));
      acceptor->bind(ep);
      acceptor->listen(asio::socket_base::max_listen_connections);
      return acceptor;
    };
    if (address.is_unspecified()) {
      try {
        return try_open(tcp::endpoint(tcp::v6(), port), true);
      } catch (const boost::system::system_error& e) {
        if (e.code() != asio::error::address_family_not_supported || address.is_v6()) throw;
      }
    }
    return try_open(tcp::endpoint(address, port), false);
  }

  void accept(std::shared_ptr<tcp::acceptor> acceptor, Role role, uint16_t port);
  Answer answer(Role role, uint16_t port, std::string_view path, std::string_view query, std::string_view accept);
  Answer metrics_port(std::string_view path, std::string_view query, std::string_view accept);

  // Runs `f` on the io thread and waits (inline when that thread is not
  // running): acceptors are only touched from one thread at a time.
  void run_on_io(const std::function<void()>& f) {
    if (!thread_.joinable() || thread_.get_id() == std::this_thread::get_id()) {
      f();
      return;
    }
    std::promise<void> done;
    asio::post(io_, [&] {
      try {
        f();
        done.set_value();
      } catch (...) {
        done.set_exception(std::current_exception());
      }
    });
    done.get_future().get();
  }

  // Declared first: destroyed last, after everything that uses it.
  asio::io_context io_;
  HttpServerOptions options_;
  const ProxyHealth& health_;
  Metrics& metrics_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  std::thread thread_;
  bool stopped_ = false;

  std::vector<std::shared_ptr<tcp::acceptor>> main_acceptors_;
  std::map<uint16_t, std::vector<std::shared_ptr<tcp::acceptor>>> hc_acceptors_;  // io thread only

  mutable std::mutex services_mutex_;
  std::map<uint16_t, HealthCheckService> services_;  // what the open ports answer
};

namespace {

// One client connection: read a request, answer, repeat while keep-alive.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, HttpServer::Impl& server, Role role, uint16_t port)
      : stream_(std::move(socket)), server_(server), role_(role), port_(port) {}

  void start() { read(); }

 private:
  void read() {
    parser_.emplace();
    parser_->body_limit(16 * 1024);
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(beast::error_code ec) {
    if (ec) return close();
    const auto request = parser_->release();
    const std::string_view target(request.target().data(), request.target().size());
    const auto accept = request[http::field::accept];
    const size_t question = target.find('?');
    const std::string_view query = question == std::string_view::npos ? "" : target.substr(question + 1);
    Answer answer =
        server_.answer(role_, port_, target.substr(0, question), query, std::string_view(accept.data(), accept.size()));

    response_ = std::make_shared<http::response<http::string_body>>(answer.status, request.version());
    response_->set(http::field::content_type, answer.content_type);
    response_->set("X-Content-Type-Options", "nosniff");
    if (!answer.warning.empty()) response_->set(http::field::warning, answer.warning);
    if (!answer.csp.empty()) response_->set("Content-Security-Policy", answer.csp);
    if (answer.endpoint_weight)
      response_->set("X-Load-Balancing-Endpoint-Weight", std::to_string(*answer.endpoint_weight));
    response_->keep_alive(request.keep_alive() && !answer.close);
    if (request.method() == http::verb::head) {
      response_->content_length(answer.body.size());
    } else {
      response_->body() = std::move(answer.body);
      response_->prepare_payload();
    }
    http::async_write(stream_, *response_, [self = shared_from_this()](beast::error_code write_ec, size_t) {
      if (write_ec || !self->response_->keep_alive()) return self->close();
      self->read();
    });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    stream_.close();
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http::response<http::string_body>> response_;
  HttpServer::Impl& server_;
  Role role_;
  uint16_t port_;
};

}  // namespace

void HttpServer::Impl::accept(std::shared_ptr<tcp::acceptor> acceptor, Role role, uint16_t port) {
  acceptor->async_accept([this, acceptor, role, port](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
    if (!ec) {
      std::make_shared<Session>(std::move(socket), *this, role, port)->start();
      accept(acceptor, role, port);
      return;
    }
    // Out of descriptors and the like: retry shortly instead of spinning.
    auto timer = std::make_shared<asio::steady_timer>(io_, std::chrono::milliseconds(100));
    timer->async_wait([this, timer, acceptor, role, port](beast::error_code) {
      if (acceptor->is_open()) accept(acceptor, role, port);
    });
  });
}

Answer HttpServer::Impl::metrics_port(std::string_view path, std::string_view query, std::string_view accept) {
  constexpr const char* kText = "text/plain; charset=utf-8";
  constexpr const char* kPrometheus = "text/plain; version=0.0.4; charset=utf-8";
  auto page = [](ZpageAnswer z) {
    return Answer{static_cast<http::status>(z.status),
                  std::move(z.content_type),
                  std::move(z.body),
                  std::nullopt,
                  false,
                  std::move(z.warning)};
  };
  if (path == "/metrics") return {http::status::ok, kPrometheus, metrics_.render(), std::nullopt, false, ""};
  if (path == "/metrics/slis") return {http::status::ok, kPrometheus, metrics_.render_slis(), std::nullopt, false, ""};
  if (path == "/healthz") return {http::status::ok, kText, "ok", std::nullopt, false, ""};
  if (path == "/proxyMode")
    return {http::status::ok, kText, std::string(to_string(options_.proxy_mode)), std::nullopt, false, ""};
  if (path == "/configz") return {http::status::ok, "application/json", options_.configz, std::nullopt, false, ""};
  if (path == "/flagz") return page(flagz_page(options_.flags, accept, random_zpage_delimiter()));
  if (path == "/statusz") {
    std::vector<std::string> paths = kMetricsPortPaths;
    if (options_.debug) paths.insert(paths.begin() + 1, "/debug");  // kept sorted
    const StatuszInfo info{options_.started, std::string(kVersion), std::string(kKubeProxyLine), std::move(paths)};
    return page(statusz_page(info, accept, std::chrono::system_clock::now(), random_zpage_delimiter()));
  }
  if (options_.debug && path.starts_with("/debug")) {
    if (auto debug = options_.debug->answer(path, query))
      return {static_cast<http::status>(debug->status),
              debug->content_type,
              std::move(debug->body),
              std::nullopt,
              false,
              "",
              std::move(debug->csp)};
  }
  return {http::status::not_found, kText, "404 page not found\n", std::nullopt, false, ""};
}

Answer HttpServer::Impl::answer(Role role, uint16_t port, std::string_view path, std::string_view query,
                                std::string_view accept) {
  constexpr const char* kJson = "application/json";
  constexpr const char* kText = "text/plain; charset=utf-8";
  const Answer not_found{http::status::not_found, kText, "404 page not found\n", std::nullopt, false, ""};
  switch (role) {
    case Role::Healthz: {
      if (path != "/healthz" && path != "/livez") return not_found;
      const bool healthz = path == "/healthz";
      const auto a = healthz ? health_.healthz() : health_.livez();
      if (healthz) metrics_.count_healthz(a.status);
      else metrics_.count_livez(a.status);
      return {static_cast<http::status>(a.status), kJson, a.body, std::nullopt, false, ""};
    }
    case Role::Metrics:
      return metrics_port(path, query, accept);
    case Role::HealthCheck: {
      std::optional<HealthCheckService> service;
      {
        std::lock_guard lock(services_mutex_);
        if (auto it = services_.find(port); it != services_.end()) service = it->second;
      }
      // A connection kept alive across the port's closing.
      if (!service) return {http::status::service_unavailable, kText, "health check closed\n", std::nullopt, true, ""};
      const auto a = service_health(*service, health_.healthy());
      return {static_cast<http::status>(a.status), kJson, a.body, service->local_endpoints, false, ""};
    }
  }
  return not_found;
}

HttpServer::HttpServer(HttpServerOptions options, const ProxyHealth& health, Metrics& metrics)
    : impl_(std::make_unique<Impl>(std::move(options), health, metrics)) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  auto open = [&](const char* flag, const std::string& address, Role role) -> uint16_t {
    if (address.empty()) return 0;
    const auto hp = parse_host_port(address);
    if (!hp) throw BindError(std::string(flag) + ": " + hp.error());
    std::shared_ptr<tcp::acceptor> acceptor;
    try {
      acceptor = impl_->listen(hp->ip, hp->port);
    } catch (const boost::system::system_error& e) {
      throw BindError(std::string(flag) + " " + address + ": cannot listen: " + e.code().message());
    }
    impl_->main_acceptors_.push_back(acceptor);
    const uint16_t port = acceptor->local_endpoint().port();
    impl_->accept(acceptor, role, port);
    return port;
  };
  healthz_port_ = open("--healthz-bind-address", impl_->options_.healthz_bind_address, Role::Healthz);
  metrics_port_ = open("--metrics-bind-address", impl_->options_.metrics_bind_address, Role::Metrics);
  impl_->thread_ = std::thread([impl = impl_.get()] { impl->io_.run(); });
}

void HttpServer::stop() {
  if (impl_->stopped_) return;
  impl_->run_on_io([impl = impl_.get()] {
    beast::error_code ignored;
    for (auto& a : impl->main_acceptors_) a->close(ignored);
    for (auto& [port, list] : impl->hc_acceptors_)
      for (auto& a : list) a->close(ignored);
    impl->main_acceptors_.clear();
    impl->hc_acceptors_.clear();
  });
  impl_->stopped_ = true;
  impl_->work_.reset();
  impl_->io_.stop();
  if (impl_->thread_.joinable()) impl_->thread_.join();
}

std::vector<std::string> HttpServer::set_health_check_services(
    const std::map<uint16_t, HealthCheckService>& services) {
  std::vector<std::string> errors;
  if (impl_->stopped_) return errors;
  {
    // Counts first: a port that stays open answers with the new count.
    std::lock_guard lock(impl_->services_mutex_);
    impl_->services_ = services;
  }
  impl_->run_on_io([&] {
    auto& open = impl_->hc_acceptors_;
    beast::error_code ignored;
    for (auto it = open.begin(); it != open.end();) {
      if (services.count(it->first)) {
        ++it;
        continue;
      }
      for (auto& a : it->second) a->close(ignored);
      it = open.erase(it);
    }
    std::vector<std::string> ips = impl_->options_.health_check_ips;
    if (ips.empty()) ips.push_back("0.0.0.0");  // both families (see listen)
    for (const auto& [port, service] : services) {
      if (open.count(port)) continue;
      std::vector<std::shared_ptr<tcp::acceptor>> list;
      for (const auto& ip : ips) {
        try {
          list.push_back(impl_->listen(ip, port));
        } catch (const boost::system::system_error& e) {
          const std::string address = ip.find(':') != std::string::npos ? "[" + ip + "]:" + std::to_string(port)
                                                                         : ip + ":" + std::to_string(port);
          errors.push_back("healthCheckNodePort server for service " + service.ns + "/" + service.name +
                           ": cannot listen on " + address + ": " + e.code().message());
          for (auto& a : list) a->close(ignored);
          list.clear();
          break;
        }
      }
      if (list.empty()) continue;  // retried on the next call
      for (auto& a : list) impl_->accept(a, Role::HealthCheck, port);
      open.emplace(port, std::move(list));
    }
  });
  return errors;
}

void HttpServer::set_health_check_ips(std::vector<std::string> ips) {
  if (impl_->stopped_) return;
  impl_->run_on_io([&] {
    if (ips == impl_->options_.health_check_ips) return;
    impl_->options_.health_check_ips = std::move(ips);
    beast::error_code ignored;
    for (auto& [port, list] : impl_->hc_acceptors_)
      for (auto& a : list) a->close(ignored);
    impl_->hc_acceptors_.clear();
  });
}

std::vector<uint16_t> HttpServer::health_check_ports() const {
  std::vector<uint16_t> out;
  impl_->run_on_io([&] {
    for (const auto& [port, list] : impl_->hc_acceptors_) out.push_back(port);
  });
  return out;
}

}  // namespace svcproxy::proxy
