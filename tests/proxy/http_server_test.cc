// The HTTP server answering real requests on loopback. No sleeps: start()
// and set_health_check_services() return once their listeners listen.
#include "proxy/http_server.h"

#include <gtest/gtest.h>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "prometheus_text.h"

namespace svcproxy::proxy {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

struct Reply {
  int status = 0;
  std::string body;
  std::string content_type;
  std::string weight;  // X-Load-Balancing-Endpoint-Weight
  std::string warning;
};

// One GET over a fresh connection (with an Accept header unless empty).
Reply get(uint16_t port, const std::string& target, const std::string& host = "127.0.0.1",
          http::verb verb = http::verb::get, const std::string& accept = "") {
  asio::io_context io;
  tcp::socket socket(io);
  socket.connect(tcp::endpoint(asio::ip::make_address(host), port));
  http::request<http::empty_body> req{verb, target, 11};
  req.set(http::field::host, host);
  if (!accept.empty()) req.set(http::field::accept, accept);
  http::write(socket, req);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  if (verb == http::verb::head) parser.skip(true);
  http::read(socket, buffer, parser);
  const auto& res = parser.get();
  return {static_cast<int>(res.result_int()), res.body(), std::string(res[http::field::content_type]),
          std::string(res["X-Load-Balancing-Endpoint-Weight"]), std::string(res[http::field::warning])};
}

Reply get_accepting(uint16_t port, const std::string& target, const std::string& accept) {
  return get(port, target, "127.0.0.1", http::verb::get, accept);
}

bool refuses(uint16_t port, const std::string& host = "127.0.0.1") {
  asio::io_context io;
  tcp::socket socket(io);
  boost::system::error_code ec;
  socket.connect(tcp::endpoint(asio::ip::make_address(host), port), ec);
  return ec == asio::error::connection_refused;
}

// A port free right now (the kernel picks it; the listener is closed again).
uint16_t free_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

HttpServerOptions loopback_options() {
  HttpServerOptions o;
  o.healthz_bind_address = "127.0.0.1:0";
  o.metrics_bind_address = "127.0.0.1:0";
  o.health_check_ips = {"127.0.0.1"};
  return o;
}

TEST(ParseHostPort, AcceptsIpPortForms) {
  auto v4 = parse_host_port("0.0.0.0:10256");
  ASSERT_TRUE(v4);
  EXPECT_EQ(v4->ip, "0.0.0.0");
  EXPECT_EQ(v4->port, 10256);
  auto v6 = parse_host_port("[::1]:10249");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->ip, "::1");
  EXPECT_EQ(v6->port, 10249);
  const auto missing_port = parse_host_port("10256");
  ASSERT_FALSE(missing_port);
  EXPECT_NE(missing_port.error().find("missing port"), std::string::npos) << missing_port.error();
  const auto unbracketed = parse_host_port("::1:80");
  ASSERT_FALSE(unbracketed);
  EXPECT_NE(unbracketed.error().find("brackets"), std::string::npos) << unbracketed.error();
  const auto name = parse_host_port("localhost:80");
  ASSERT_FALSE(name);
  EXPECT_NE(name.error().find("not an IP address"), std::string::npos) << name.error();
  EXPECT_FALSE(parse_host_port("1.2.3.4:65536"));
  EXPECT_FALSE(parse_host_port("1.2.3.4:"));
}

TEST(HttpServer, ServesHealthzLivezAndMetrics) {
  ProxyHealth health(30s);
  Metrics metrics;
  HttpServer server(loopback_options(), health, metrics);
  server.start();
  ASSERT_NE(server.healthz_port(), 0);
  ASSERT_NE(server.metrics_port(), 0);

  auto hz = get(server.healthz_port(), "/healthz");
  EXPECT_EQ(hz.status, 200);
  EXPECT_EQ(hz.content_type, "application/json");
  EXPECT_NE(hz.body.find("\"healthy\":true"), std::string::npos) << hz.body;
  EXPECT_EQ(get(server.healthz_port(), "/livez?verbose").status, 200);
  EXPECT_EQ(get(server.healthz_port(), "/metrics").status, 404);
  EXPECT_EQ(get(server.healthz_port(), "/healthz", "127.0.0.1", http::verb::head).status, 200);

  // An update queued 61 s ago and never applied.
  health.queued(Instant::now() + -61s);
  EXPECT_EQ(get(server.healthz_port(), "/healthz").status, 503);
  EXPECT_EQ(get(server.healthz_port(), "/livez").status, 503);
  health.updated();
  EXPECT_EQ(get(server.healthz_port(), "/livez").status, 200);

  auto m = get(server.metrics_port(), "/metrics");
  EXPECT_EQ(m.status, 200);
  EXPECT_EQ(m.content_type, "text/plain; version=0.0.4; charset=utf-8");
  const auto parsed = svcproxy::testing::parse_prometheus_text(m.body);
  EXPECT_EQ(parsed.value("kubeproxy_proxy_healthz_total", {{"code", "200"}}), 2);  // GET and HEAD
  EXPECT_EQ(parsed.value("kubeproxy_proxy_healthz_total", {{"code", "503"}}), 1);
  EXPECT_EQ(parsed.value("kubeproxy_proxy_livez_total", {{"code", "200"}}), 2);
  EXPECT_EQ(parsed.value("kubeproxy_proxy_livez_total", {{"code", "503"}}), 1);
  EXPECT_EQ(get(server.metrics_port(), "/proxyMode").body, "nftables");
  EXPECT_EQ(get(server.metrics_port(), "/healthz").body, "ok");
  EXPECT_EQ(get(server.metrics_port(), "/nope").status, 404);
}

// kube-proxy's other pages on the metrics port, with the headers and
// content negotiation the real v1.37.2 answers with.
TEST(HttpServer, MetricsPortServesKubeProxysZpages) {
  ProxyHealth health(30s);
  Metrics metrics;
  auto options = loopback_options();
  options.proxy_mode = ProxyMode::Userspace;
  options.flags = {{"sync-period", "30s"}, {"cluster-cidr", "10.244.0.0/16"}};
  options.configz = R"({"kubeproxy.config.k8s.io":{"kind":"KubeProxyConfiguration"}})";
  options.started = std::chrono::system_clock::now() - 3725s;
  HttpServer server(options, health, metrics);
  server.start();
  const uint16_t port = server.metrics_port();

  const auto mode = get(port, "/proxyMode");
  EXPECT_EQ(mode.body, "userspace");
  EXPECT_EQ(mode.content_type, "text/plain; charset=utf-8");

  const auto configz = get(port, "/configz");
  EXPECT_EQ(configz.status, 200);
  EXPECT_EQ(configz.content_type, "application/json");
  EXPECT_EQ(configz.body, options.configz);

  const auto flagz = get(port, "/flagz");
  EXPECT_EQ(flagz.status, 200);
  EXPECT_EQ(flagz.content_type, "text/plain; charset=utf-8");
  EXPECT_TRUE(flagz.body.starts_with("\nsvcproxy flagz\nWarning: This endpoint is not meant to be machine parseable"))
      << flagz.body;
  EXPECT_NE(flagz.body.find("cluster-cidr"), std::string::npos);
  const auto flagz_json = get_accepting(port, "/flagz", "application/json;as=Flagz;v=v1beta1;g=config.k8s.io");
  EXPECT_EQ(flagz_json.content_type, "application/json;g=config.k8s.io;v=v1beta1;as=Flagz");
  EXPECT_EQ(flagz_json.body,
            "{\"kind\":\"Flagz\",\"apiVersion\":\"config.k8s.io/v1beta1\",\"metadata\":{\"name\":\"svcproxy\"},"
            "\"flags\":{\"cluster-cidr\":\"10.244.0.0/16\",\"sync-period\":\"30s\"}}\n");
  EXPECT_EQ(flagz_json.warning, "");

  const auto statusz = get(port, "/statusz");
  EXPECT_EQ(statusz.status, 200);
  EXPECT_NE(statusz.body.find(" 1 hr 02 min 0"), std::string::npos) << statusz.body;
  const auto statusz_old = get_accepting(port, "/statusz", "application/json;as=Statusz;v=v1alpha1;g=config.k8s.io");
  EXPECT_EQ(statusz_old.status, 200);
  EXPECT_EQ(statusz_old.warning,
            "299 - \"This version of the statusz endpoint is deprecated. Please use a newer version.\"");
  EXPECT_NE(statusz_old.body.find("\"paths\":[\"/configz\",\"/flagz\",\"/healthz\",\"/metrics\",\"/proxyMode\"]"),
            std::string::npos)
      << statusz_old.body;
  const auto refused = get_accepting(port, "/statusz", "application/json");
  EXPECT_EQ(refused.status, 406);
  EXPECT_NE(refused.body.find("\"reason\": \"NotAcceptable\""), std::string::npos);

  const auto slis = get(port, "/metrics/slis");
  EXPECT_EQ(slis.status, 200);
  EXPECT_EQ(slis.content_type, "text/plain; version=0.0.4; charset=utf-8");
  const auto parsed = svcproxy::testing::parse_prometheus_text(slis.body);
  EXPECT_EQ(parsed.families.size(), 1u);
  EXPECT_GT(parsed.value("process_start_time_seconds"), 1.7e9);
  // Only on the metrics port.
  EXPECT_EQ(get(server.healthz_port(), "/statusz").status, 404);
  EXPECT_EQ(get(server.healthz_port(), "/configz").status, 404);
}

TEST(HttpServer, NodeBeingDeletedFailsHealthzNotLivez) {
  ProxyHealth health(30s);
  Metrics metrics;
  HttpServer server(loopback_options(), health, metrics);
  server.start();
  model::Node node;
  node.being_deleted = true;
  health.set_node(node);
  const auto hz = get(server.healthz_port(), "/healthz");
  EXPECT_EQ(hz.status, 503);
  EXPECT_NE(hz.body.find("\"nodeEligible\":false"), std::string::npos) << hz.body;
  EXPECT_EQ(get(server.healthz_port(), "/livez").status, 200);
}

TEST(HttpServer, KeepAliveServesSeveralRequestsOnOneConnection) {
  ProxyHealth health(30s);
  Metrics metrics;
  HttpServer server(loopback_options(), health, metrics);
  server.start();
  asio::io_context io;
  tcp::socket socket(io);
  socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.healthz_port()));
  beast::flat_buffer buffer;
  for (const char* target : {"/healthz", "/livez", "/healthz"}) {
    http::request<http::empty_body> req{http::verb::get, target, 11};
    http::write(socket, req);
    http::response<http::string_body> res;
    http::read(socket, buffer, res);
    EXPECT_EQ(res.result_int(), 200u) << target;
    EXPECT_TRUE(res.keep_alive());
  }
}

TEST(HttpServer, BindErrorsNameTheFlagAndAddress) {
  ProxyHealth health(30s);
  Metrics metrics;
  HttpServer first(loopback_options(), health, metrics);
  first.start();
  auto options = loopback_options();
  options.healthz_bind_address = "127.0.0.1:" + std::to_string(first.healthz_port());
  HttpServer second(options, health, metrics);
  try {
    second.start();
    FAIL() << "second server bound a port in use";
  } catch (const BindError& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("--healthz-bind-address " + options.healthz_bind_address), std::string::npos) << what;
    EXPECT_NE(what.find("in use"), std::string::npos) << what;
  }
  options = loopback_options();
  options.metrics_bind_address = "localhost:10249";
  HttpServer third(options, health, metrics);
  EXPECT_THROW(third.start(), BindError);
}

TEST(HttpServer, DisabledServersBindNothing) {
  ProxyHealth health(30s);
  Metrics metrics;
  HttpServerOptions options;
  options.healthz_bind_address = "";
  options.metrics_bind_address = "";
  HttpServer server(options, health, metrics);
  server.start();
  EXPECT_EQ(server.healthz_port(), 0);
  EXPECT_EQ(server.metrics_port(), 0);
}

TEST(HttpServer, StopClosesListenersAndIsIdempotent) {
  ProxyHealth health(30s);
  Metrics metrics;
  HttpServer server(loopback_options(), health, metrics);
  server.start();
  const uint16_t port = server.healthz_port();
  EXPECT_EQ(get(port, "/healthz").status, 200);
  server.stop();
  EXPECT_TRUE(refuses(port));
  server.stop();
}

TEST(HttpServer, HealthCheckNodePortServersOpenAnswerAndClose) {
  ProxyHealth health(30s);
  Metrics metrics;
  HttpServer server(loopback_options(), health, metrics);
  server.start();
  const uint16_t web = free_port(), draining = free_port();
  ASSERT_NE(web, draining);

  auto errors = server.set_health_check_services(
      {{web, {"default", "web", 2}}, {draining, {"default", "draining", 0}}});
  EXPECT_TRUE(errors.empty());
  auto ports = server.health_check_ports();
  std::sort(ports.begin(), ports.end());
  std::vector<uint16_t> want{web, draining};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(ports, want);

  auto r = get(web, "/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.weight, "2");
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.body,
            "{\n\t\"service\": {\n\t\t\"namespace\": \"default\",\n\t\t\"name\": \"web\"\n\t},\n"
            "\t\"localEndpoints\": 2,\n\t\"serviceProxyHealthy\": true\n}");
  r = get(draining, "/any/path");
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.weight, "0");

  // The proxy turns unhealthy: every service answers 503.
  health.queued(Instant::now() + -61s);
  r = get(web, "/");
  EXPECT_EQ(r.status, 503);
  EXPECT_NE(r.body.find("\"serviceProxyHealthy\": false"), std::string::npos);
  health.updated();

  // Counts change in place; a service goes away and its port closes.
  errors = server.set_health_check_services({{draining, {"default", "draining", 1}}});
  EXPECT_TRUE(errors.empty());
  EXPECT_TRUE(refuses(web));
  r = get(draining, "/");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.weight, "1");
  EXPECT_EQ(server.health_check_ports(), std::vector<uint16_t>{draining});

  server.set_health_check_services({});
  EXPECT_TRUE(refuses(draining));
  EXPECT_TRUE(server.health_check_ports().empty());
}

TEST(HttpServer, HealthCheckPortInUseIsReportedAndRetried) {
  ProxyHealth health(30s);
  Metrics metrics;
  HttpServer server(loopback_options(), health, metrics);
  server.start();
  asio::io_context io;
  auto squatter = std::make_unique<tcp::acceptor>(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const uint16_t port = squatter->local_endpoint().port();

  const std::map<uint16_t, HealthCheckService> services{{port, {"shop", "cart", 1}}};
  auto errors = server.set_health_check_services(services);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("shop/cart"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("127.0.0.1:" + std::to_string(port)), std::string::npos) << errors[0];
  EXPECT_TRUE(server.health_check_ports().empty());

  squatter.reset();
  errors = server.set_health_check_services(services);
  EXPECT_TRUE(errors.empty());
  EXPECT_EQ(get(port, "/").status, 200);
}

TEST(HttpServer, HealthCheckServersMoveWithTheNodePortAddresses) {
  // The node's NodePort addresses change (its Node arrived with another
  // InternalIP): the open port moves from the old address to the new one.
  // 127.0.0.2 is as local as 127.0.0.1 (all of 127/8 is).
  ProxyHealth health(30s);
  Metrics metrics;
  HttpServer server(loopback_options(), health, metrics);
  server.start();
  const uint16_t hc = free_port();
  const std::map<uint16_t, HealthCheckService> services{{hc, {"default", "web", 1}}};
  ASSERT_TRUE(server.set_health_check_services(services).empty());
  EXPECT_TRUE(refuses(hc, "127.0.0.2"));

  server.set_health_check_ips({"127.0.0.2"});
  ASSERT_TRUE(server.set_health_check_services(services).empty());
  EXPECT_EQ(get(hc, "/", "127.0.0.2").status, 200);
  EXPECT_TRUE(refuses(hc, "127.0.0.1"));
  // The same IPs again keep the listeners (no window without one).
  server.set_health_check_ips({"127.0.0.2"});
  EXPECT_EQ(server.health_check_ports(), std::vector<uint16_t>{hc});
}

TEST(HttpServer, WildcardListensOnBothFamilies) {
  ProxyHealth health(30s);
  Metrics metrics;
  auto options = loopback_options();
  options.healthz_bind_address = "0.0.0.0:0";
  options.health_check_ips.clear();  // every address
  HttpServer server(options, health, metrics);
  server.start();
  EXPECT_EQ(get(server.healthz_port(), "/healthz", "127.0.0.1").status, 200);
  const uint16_t hc = free_port();
  ASSERT_TRUE(server.set_health_check_services({{hc, {"default", "web", 1}}}).empty());
  EXPECT_EQ(get(hc, "/", "127.0.0.1").status, 200);

  // ::1 when this namespace has IPv6.
  asio::io_context io;
  tcp::socket probe(io);
  boost::system::error_code ec;
  probe.open(tcp::v6(), ec);
  if (!ec) probe.bind(tcp::endpoint(asio::ip::make_address("::1"), 0), ec);
  if (ec) GTEST_SKIP() << "no IPv6 loopback here";
  EXPECT_EQ(get(server.healthz_port(), "/healthz", "::1").status, 200);
  EXPECT_EQ(get(hc, "/", "::1").status, 200);
}

}  // namespace
}  // namespace svcproxy::proxy
