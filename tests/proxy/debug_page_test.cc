// The /debug page, /debug/state and `svcproxy status` rendering: what
// collect_services reports per endpoint, the JSON round trip, escaping of
// hostile names in every output, the filter, the feed's counters (a fake
// TrafficCounters) and the routes on the metrics server.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include "dataplane/compile.h"
#include "model/service_ports.h"
#include "proxy/debug_feed.h"
#include "proxy/debug_page.h"
#include "proxy/debug_state.h"
#include "proxy/http_server.h"
#include "proxy/sync_history.h"
#include "watch/store.h"

namespace svcproxy::proxy {
namespace {

using model::IPAddress;
using namespace std::chrono_literals;

constexpr const char* kHostile = "x\"><script>alert(1)</script>'\nnext";

model::NodeConfig node() {
  model::NodeConfig n;
  n.node_name = "node-a";
  n.zone = "zone-a";
  n.node_ips = {IPAddress::v4(192, 0, 2, 1)};
  n.nodeport_ips = n.node_ips;
  return n;
}

model::Endpoint endpoint(uint8_t last, const std::string& on_node, bool ready, bool terminating = false) {
  model::Endpoint e;
  e.address = IPAddress::v4(10, 244, 0, last);
  e.node_name = on_node;
  e.zone = on_node == "node-a" ? "zone-a" : "zone-b";
  e.conditions = {ready, true, terminating};
  return e;
}

model::ClusterState cluster(const std::string& name = "web") {
  model::ClusterState c;
  model::Service s;
  s.ref = {"shop", name};
  s.type = model::ServiceType::NodePort;
  s.cluster_ips = {IPAddress::v4(10, 96, 0, 10)};
  s.ports = {{"http", model::Protocol::TCP, 80, {8080, ""}, 30080}};
  c.services.push_back(s);
  model::EndpointSlice slice;
  slice.ref = {"shop", name + "-abc"};
  slice.service_name = name;
  slice.ports = {{"http", model::Protocol::TCP, 8080}};
  slice.endpoints = {endpoint(1, "node-a", true), endpoint(2, "node-b", false, true)};
  c.endpoint_slices.push_back(slice);
  return c;
}

class FakeCounters final : public TrafficCounters {
 public:
  base::Result<TrafficSnapshot> read() override {
    ++reads;  // on the server's thread
    if (!error.empty()) return base::Error{error};
    return snapshot;
  }
  TrafficSnapshot snapshot;
  std::string error;
  std::atomic<int> reads{0};
};

TrafficSnapshot web_traffic() {
  ServicePortTraffic t;
  t.ns = "shop";
  t.service = "web";
  t.port = "http";
  t.protocol = "TCP";
  t.accepted = {7, 700};
  t.rejected = {1, 60};
  t.endpoints = {{"10.244.0.1:8080", {5, 500}}};
  return {{t}};
}

TEST(CollectServices, EveryEndpointWithItsConditionsAndWhetherItIsUsed) {
  const auto services = collect_services(cluster(), node(), nullptr);
  ASSERT_EQ(services.size(), 1U);
  EXPECT_EQ(services[0].type, "NodePort");
  ASSERT_EQ(services[0].ports.size(), 1U);
  const auto& p = services[0].ports[0];
  EXPECT_EQ(p.name, "shop/web/tcp/http");
  EXPECT_EQ(p.cluster_ip, "10.96.0.10");
  EXPECT_EQ(p.number, 80);
  EXPECT_EQ(p.node_port, 30080);
  EXPECT_FALSE(p.accepted);
  ASSERT_EQ(p.endpoints.size(), 2U);
  const auto& local = p.endpoints[0];
  EXPECT_EQ(local.address, "10.244.0.1:8080");
  EXPECT_TRUE(local.ready && local.serving && local.local && local.used);
  EXPECT_FALSE(local.terminating);
  EXPECT_EQ(local.zone, "zone-a");
  const auto& remote = p.endpoints[1];
  EXPECT_EQ(remote.node, "node-b");
  EXPECT_FALSE(remote.ready || remote.local || remote.used);  // a ready one exists: not the fallback
  EXPECT_TRUE(remote.terminating && remote.serving);
  EXPECT_FALSE(remote.traffic);
}

TEST(CollectServices, CountersGoToTheirPortAndEndpoint) {
  const auto traffic = web_traffic();
  const auto services = collect_services(cluster(), node(), &traffic);
  const auto& p = services.at(0).ports.at(0);
  ASSERT_TRUE(p.accepted && p.rejected && p.dropped);
  EXPECT_EQ(p.accepted->packets, 7U);
  EXPECT_EQ(p.rejected->bytes, 60U);
  EXPECT_EQ(p.dropped->packets, 0U);
  ASSERT_TRUE(p.endpoints[0].traffic);
  EXPECT_EQ(p.endpoints[0].traffic->bytes, 500U);
  EXPECT_FALSE(p.endpoints[1].traffic);  // not in the snapshot
}

DebugState sample_state(const std::string& name) {
  DebugState s;
  s.origin = "daemon";
  s.time = "2026-12-06T10:00:00.000Z";
  s.node = describe_node(node());
  s.node.mode = "nftables";
  s.node.sync_period_ms = 30000;
  const auto traffic = web_traffic();
  s.services = collect_services(cluster(name), node(), &traffic);
  s.syncs.push_back({std::chrono::system_clock::time_point(1765015200000ms), name, "partial", 3, 250us, name});
  s.watch = {"api", 2, 1, name, {{"services", "123", 3, 1, name}}};
  s.counters = true;
  return s;
}

TEST(DebugStateJson, RoundTripsEveryField) {
  const auto state = sample_state(kHostile);
  const auto back = debug_state_from_json(to_json(state));
  ASSERT_TRUE(back) << back.error();
  // PacketCount has no ==: compared through the document.
  EXPECT_EQ(to_json(*back), to_json(state));
  EXPECT_EQ(back->syncs, state.syncs);
  EXPECT_EQ(back->watch, state.watch);
  EXPECT_EQ(back->node, state.node);
  EXPECT_EQ(back->services.at(0).name, kHostile);
}

TEST(DebugStateJson, RejectsWhatIsNotAnObject) {
  EXPECT_FALSE(debug_state_from_json("<html>"));
  EXPECT_FALSE(debug_state_from_json("[1,2]"));
}

TEST(DebugPage, HostileNamesAreEscapedEverywhere) {
  const auto page = render_debug_page(sample_state(kHostile), kHostile, "NONCE");
  EXPECT_EQ(page.find("<script>alert"), std::string::npos);
  EXPECT_EQ(page.find("x\"><"), std::string::npos);
  EXPECT_NE(page.find("x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#39;"), std::string::npos);
  // One script element: the page's own, with its nonce.
  size_t scripts = 0;
  for (size_t at = page.find("<script"); at != std::string::npos; at = page.find("<script", at + 1)) ++scripts;
  EXPECT_EQ(scripts, 1U);
  EXPECT_NE(page.find("<script nonce=\"NONCE\">"), std::string::npos);
  EXPECT_NE(page.find("<style nonce=\"NONCE\">"), std::string::npos);
}

TEST(DebugPage, ShowsEndpointsCountersAndNoCountersAsDash) {
  auto state = sample_state("web");
  auto page = render_debug_page(state, "", "n");
  EXPECT_NE(page.find("data-endpoint=\"10.244.0.2:8080\" data-ready=\"false\""), std::string::npos);
  EXPECT_NE(page.find("data-endpoint=\"10.244.0.1:8080\" data-ready=\"true\""), std::string::npos);
  EXPECT_NE(page.find("<td>5</td><td>500</td>"), std::string::npos);
  EXPECT_NE(page.find("10.96.0.10:80 nodePort 30080"), std::string::npos);
  state.services = collect_services(cluster(), node(), nullptr);
  state.counters = false;
  page = render_debug_page(state, "", "n");
  EXPECT_EQ(page.find("<td>500</td>"), std::string::npos);
  EXPECT_NE(page.find("<td>\u2014</td><td>\u2014</td>"), std::string::npos);
  EXPECT_NE(page.find("Traffic counters: none in this mode"), std::string::npos);
}

TEST(DebugPage, CspAllowsOnlyTheNoncedInlineParts) {
  const auto csp = debug_page_csp("abc");
  EXPECT_NE(csp.find("default-src 'none'"), std::string::npos);
  EXPECT_NE(csp.find("script-src 'nonce-abc'"), std::string::npos);
  EXPECT_NE(csp.find("connect-src 'self'"), std::string::npos);
  EXPECT_EQ(csp.find("unsafe"), std::string::npos);
  EXPECT_NE(make_nonce(), make_nonce());
}

TEST(StatusText, ControlCharactersCannotBreakLines) {
  const auto text = render_status_text(sample_state(kHostile));
  EXPECT_EQ(text.find("\nnext"), std::string::npos);
  EXPECT_NE(text.find("shop/x\"><script>alert(1)</script>'\\x0anext (NodePort)"), std::string::npos);
  EXPECT_NE(text.find("    10.244.0.2:8080 unready,serving,terminating,unused node node-b zone zone-b"),
            std::string::npos);
  const auto web = render_status_text(sample_state("web"));
  EXPECT_NE(web.find("10.244.0.1:8080 ready,serving,local node node-a zone zone-a packets 5 bytes 500"),
            std::string::npos);
}

TEST(Filter, KeepsServicesMatchingByNameIpNodeOrZone) {
  auto both = collect_services(cluster("web"), node(), nullptr);
  auto other = collect_services(cluster("db"), node(), nullptr);
  other[0].ports[0].endpoints[1].node = "node-c";
  both.push_back(other[0]);
  EXPECT_EQ(filter_services(both, "").size(), 2U);
  EXPECT_EQ(filter_services(both, "shop/db").size(), 1U);
  EXPECT_EQ(filter_services(both, "node-c").at(0).name, "db");
  EXPECT_EQ(filter_services(both, "10.96.0.10").size(), 2U);
  EXPECT_TRUE(filter_services(both, "nothing").empty());
  EXPECT_EQ(query_parameter("a=1&filter=shop%2Fdb+x&b", "filter"), "shop/db x");
  EXPECT_EQ(query_parameter("filter", "filter"), "");
  EXPECT_EQ(query_parameter("a=1", "filter"), "");
}

TEST(SyncHistory, KeepsTheLastOnesOldestFirst) {
  SyncHistory history(3);
  for (int i = 0; i < 5; ++i) history.record({{}, std::to_string(i), "partial", 0, 0us, ""});
  const auto list = history.list();
  ASSERT_EQ(list.size(), 3U);
  EXPECT_EQ(list.front().reason, "2");
  EXPECT_EQ(list.back().reason, "4");
  EXPECT_EQ(SyncHistory::kDefaultCapacity, 50U);
}

TEST(ServicesFromRuleset, ReadsAddressesAndEndpointsFromTheDnatMaps) {
  const auto state = model::build_proxy_state(cluster(), node());
  const auto services = services_from_ruleset(dataplane::compile(state.ports, node()).ruleset);
  ASSERT_EQ(services.size(), 2U);
  EXPECT_EQ(services[0].name, "10.96.0.10");  // the kernel has no names: by address
  ASSERT_EQ(services[0].ports.size(), 1U);
  const auto& p = services[0].ports[0];
  EXPECT_EQ(p.protocol, "TCP");
  EXPECT_EQ(p.number, 80);
  ASSERT_EQ(p.endpoints.size(), 1U);  // only the used one is programmed
  EXPECT_EQ(p.endpoints[0].address, "10.244.0.1:8080");
  EXPECT_EQ(services[1].name, "NodePorts");
  EXPECT_EQ(services[1].ports.at(0).node_port, 30080);
  EXPECT_EQ(services[1].ports.at(0).endpoints.size(), 1U);
}

TEST(ServicesFromRuleset, NamesSessionAffinityPortsFromTheirChains) {
  auto c = cluster();
  c.services[0].session_affinity_client_ip = true;
  c.services[0].type = model::ServiceType::ClusterIP;
  c.services[0].ports[0].node_port = 0;
  c.endpoint_slices[0].endpoints[1].conditions.ready = true;
  const auto state = model::build_proxy_state(c, node());
  const auto services = services_from_ruleset(dataplane::compile(state.ports, node()).ruleset);
  ASSERT_EQ(services.size(), 1U);
  EXPECT_EQ(services[0].ns, "shop");
  EXPECT_EQ(services[0].name, "web");
  const auto& p = services[0].ports.at(0);
  EXPECT_EQ(p.name, "shop/web/tcp/http");
  EXPECT_EQ(p.port, "http");
  EXPECT_EQ(p.cluster_ip, "10.96.0.10");
  ASSERT_EQ(p.endpoints.size(), 2U);
  EXPECT_EQ(p.endpoints[1].address, "10.244.0.2:8080");
}

TEST(ServicesFromRuleset, PortsWithoutEndpointsAreListed) {
  auto c = cluster();
  c.endpoint_slices.clear();
  const auto state = model::build_proxy_state(c, node());
  const auto services = services_from_ruleset(dataplane::compile(state.ports, node()).ruleset);
  ASSERT_FALSE(services.empty());
  EXPECT_EQ(services[0].name, "10.96.0.10");
  EXPECT_TRUE(services[0].ports.at(0).endpoints.empty());
}

struct Reply {
  unsigned status = 0;
  std::string csp;
  std::string body;
};

Reply get(uint16_t port, const std::string& target) {
  namespace beast = boost::beast;
  namespace http = beast::http;
  boost::asio::io_context io;
  beast::tcp_stream stream(io);
  stream.connect({boost::asio::ip::make_address("127.0.0.1"), port});
  http::request<http::empty_body> request(http::verb::get, target, 11);
  http::write(stream, request);
  beast::flat_buffer buffer;
  http::response<http::string_body> response;
  http::read(stream, buffer, response);
  return {response.result_int(), std::string(response["Content-Security-Policy"]), response.body()};
}

TEST(DebugFeed, ServesThePageAndStateOnTheMetricsPort) {
  watch::Store store;
  const auto c = cluster();
  store.replace(watch::Resource::Services, {c.services[0]});
  store.replace(watch::Resource::EndpointSlices, {c.endpoint_slices[0]});
  FakeCounters counters;
  counters.snapshot = web_traffic();
  DebugFeed feed({"nftables", 30s, 1s});
  feed.set_store(&store);
  feed.set_counters(&counters);
  feed.set_node(node());
  feed.record_sync({std::chrono::system_clock::now(), "start", "full", 12, 900us, ""});
  feed.set_source({"api", 1, 2, "", {{"services", "42", 2, 0, ""}}});

  ProxyHealth health(30s);
  Metrics metrics;
  HttpServerOptions options;
  options.healthz_bind_address = "";
  options.metrics_bind_address = "127.0.0.1:0";
  options.debug = &feed;
  HttpServer server(options, health, metrics);
  server.start();

  const auto page = get(server.metrics_port(), "/debug/");
  EXPECT_EQ(page.status, 200U);
  EXPECT_NE(page.csp.find("default-src 'none'"), std::string::npos);
  EXPECT_NE(page.body.find("data-service=\"shop/web\""), std::string::npos);
  EXPECT_EQ(get(server.metrics_port(), "/debug/?filter=nothing").body.find("data-service"), std::string::npos);

  const auto state = debug_state_from_json(get(server.metrics_port(), "/debug/state").body);
  ASSERT_TRUE(state) << state.error();
  EXPECT_TRUE(state->counters);
  EXPECT_EQ(state->node.min_sync_period_ms, 1000U);
  EXPECT_EQ(state->services.at(0).ports.at(0).accepted->packets, 7U);
  EXPECT_EQ(state->syncs.at(0).operations, 12U);
  EXPECT_EQ(state->watch.resources.at(0).resource_version, "42");
  EXPECT_EQ(counters.reads, 3);  // one read per answer

  // Swapped in under the feed's mutex: the server's thread sees the error.
  FakeCounters failing;
  failing.error = "netlink: Operation not permitted";
  feed.set_counters(&failing);
  const auto failed = debug_state_from_json(get(server.metrics_port(), "/debug/state").body);
  ASSERT_TRUE(failed);
  EXPECT_FALSE(failed->counters);
  EXPECT_EQ(failed->counters_error, "netlink: Operation not permitted");
  EXPECT_FALSE(failed->services.at(0).ports.at(0).accepted);
  EXPECT_EQ(get(server.metrics_port(), "/debug/nothing").status, 404U);
}

TEST(DebugFeed, WithoutANodeYetShowsNoServices) {
  watch::Store store;
  DebugFeed feed({"userspace", 30s, 0s});
  feed.set_store(&store);
  const auto state = feed.state();
  EXPECT_TRUE(state.services.empty());
  EXPECT_EQ(state.node.mode, "userspace");
  EXPECT_FALSE(state.counters);
}

}  // namespace
}  // namespace svcproxy::proxy
