// The localhost NodePort relay with real sockets on 127.0.0.1 (loopback is
// local everywhere: no namespace, no root): what of a port it serves, which
// endpoints the NodePort's policy gives it, and a port that loses its last
// endpoint refusing at once. The relay is the userspace proxier, whose own
// behaviour (round robin, retries, splice) tests/userspace covers.
#include "proxy/localhost_nodeports.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <sstream>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "tests/support/ip.h"

namespace svcproxy::proxy {
namespace {

using model::Protocol;
using model::ServicePortState;
using test_support::ip;

sockaddr_in loopback(uint16_t port) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return sin;
}

// A listening socket on 127.0.0.1:<ephemeral>: an endpoint whose accepted
// connections the test counts.
struct Endpoint {
  base::UniqueFd fd{::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  uint16_t port = 0;
  Endpoint() {
    sockaddr_in sin = loopback(0);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin), 0);
    socklen_t len = sizeof sin;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sin), &len);
    port = ntohs(sin.sin_port);
    ::listen(fd.get(), 64);
  }
  // Accepts (and closes) connections until `expected` came or `ms` passed;
  // returns how many came.
  int take(int expected, int ms = 2000) {
    int n = 0;
    pollfd p{fd.get(), POLLIN, 0};
    while (n<expected&& ::poll(&p, 1, ms)> 0) {
      base::UniqueFd c(::accept(fd.get(), nullptr, nullptr));
      ++n;
    }
    return n;
  }
};

uint16_t free_port() {
  Endpoint e;
  return e.port;  // closed again: free (a race with other processes is unlikely)
}

// Connects to 127.0.0.1:port: 0, or the errno of the failure.
int connect_loopback(uint16_t port) {
  base::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  const sockaddr_in to = loopback(port);
  return ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0 ? 0 : errno;
}

ServicePortState node_port(const char* name, uint16_t port, const std::vector<uint16_t>& cluster,
                           const std::vector<uint16_t>& local = {}) {
  ServicePortState sp;
  sp.name.service = {"default", name};
  sp.name.protocol = Protocol::TCP;
  sp.cluster_ip = ip("10.96.0.10");
  sp.port = 80;
  sp.node_port = port;
  sp.external_ips = {ip("198.51.100.50")};
  for (auto p : cluster) sp.cluster_endpoints.push_back({ip("127.0.0.1"), p});
  for (auto p : local) sp.local_endpoints.push_back({ip("127.0.0.1"), p});
  return sp;
}

TEST(LocalhostNodePortView, OnlyTheNodePortOfTcpPorts) {
  auto web = node_port("web", 30080, {8080});
  web.load_balancer_ips = {ip("198.51.100.60")};
  web.load_balancer_source_ranges = {*model::CIDR::parse("198.51.100.0/24")};
  const auto view = localhost_nodeport_view(web);
  ASSERT_TRUE(view);
  EXPECT_TRUE(view->cluster_ip.is_unspecified());
  EXPECT_EQ(view->cluster_ip.family, model::IPFamily::V4);
  EXPECT_TRUE(view->external_ips.empty());
  EXPECT_TRUE(view->load_balancer_ips.empty());
  EXPECT_TRUE(view->load_balancer_source_ranges.empty());
  EXPECT_EQ(view->node_port, 30080);
  EXPECT_EQ(view->cluster_endpoints, web.cluster_endpoints);

  auto udp = web;
  udp.name.protocol = Protocol::UDP;
  EXPECT_FALSE(localhost_nodeport_view(udp));
  auto sctp = web;
  sctp.name.protocol = Protocol::SCTP;
  EXPECT_FALSE(localhost_nodeport_view(sctp));
  auto cluster_ip_only = web;
  cluster_ip_only.node_port = 0;
  EXPECT_FALSE(localhost_nodeport_view(cluster_ip_only));
}

struct Relay {
  std::ostringstream log_text;
  Log log{log_text};
  LocalhostNodePorts relay{{ip("127.0.0.1")}, UserspaceFlags{}, log};
};

TEST(LocalhostNodePorts, PicksEndpointsAsTheNodePortDoes) {
  Endpoint local, remote;
  const uint16_t cluster_port = free_port(), local_port = free_port();
  Relay r;
  auto by_local = node_port("local", local_port, {local.port, remote.port}, {local.port});
  by_local.external_traffic_policy = model::TrafficPolicy::Local;
  EXPECT_TRUE(r.relay.set_all({node_port("web", cluster_port, {local.port, remote.port}), by_local}).empty());
  // Round robin: an even split.
  for (int i = 0; i < 8; ++i) ASSERT_EQ(connect_loopback(cluster_port), 0);
  EXPECT_EQ(local.take(4), 4);
  EXPECT_EQ(remote.take(4), 4);
  for (int i = 0; i < 8; ++i) ASSERT_EQ(connect_loopback(local_port), 0);
  EXPECT_EQ(local.take(8), 8) << "externalTrafficPolicy: Local: this node's endpoints only";
  EXPECT_EQ(remote.take(1, 100), 0);
  ASSERT_EQ(r.relay.stats().size(), 1u);
  EXPECT_EQ(r.relay.stats()[0].listeners, 2u);
  EXPECT_EQ(r.relay.stats()[0].listen_failures, 0u);
}

TEST(LocalhostNodePorts, AServiceLosingItsEndpointsIsRefusedAtOnce) {
  Endpoint a;
  const uint16_t port = free_port();
  Relay r;
  r.relay.set_all({node_port("web", port, {a.port})});
  ASSERT_EQ(connect_loopback(port), 0);
  EXPECT_EQ(a.take(1), 1);
  r.relay.set_services({{"default", "web"}}, {node_port("web", port, {})});
  EXPECT_EQ(connect_loopback(port), ECONNREFUSED);
  EXPECT_EQ(r.relay.stats()[0].listeners, 0u);
  // Back with an endpoint; then the service is deleted.
  r.relay.set_services({{"default", "web"}}, {node_port("web", port, {a.port})});
  ASSERT_EQ(connect_loopback(port), 0);
  EXPECT_EQ(a.take(1), 1);
  r.relay.set_services({{"default", "web"}}, {});
  EXPECT_EQ(connect_loopback(port), ECONNREFUSED);
}

TEST(LocalhostNodePorts, UdpNodePortsAndOtherServicesGetNoListener) {
  Endpoint a;
  const uint16_t port = free_port();
  Relay r;
  auto dns = node_port("dns", port, {a.port});
  dns.name.protocol = Protocol::UDP;
  auto cluster_ip_only = node_port("internal", 0, {a.port});
  r.relay.set_all({dns, cluster_ip_only});
  EXPECT_EQ(r.relay.stats()[0].listeners, 0u);
}

TEST(LocalhostNodePorts, APortHeldElsewhereIsAWarningAndCounted) {
  Endpoint a, squatter;
  Relay r;
  const auto warnings = r.relay.set_all({node_port("web", squatter.port, {a.port})});
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("localhost nodeports: userspace: cannot listen on tcp:127.0.0.1:" +
                             std::to_string(squatter.port)),
            std::string::npos)
      << warnings[0];
  EXPECT_EQ(r.relay.stats()[0].listen_failures, 1u);
  // Unchanged services: no update, the same warning stands.
  EXPECT_EQ(r.relay.set_services({{"default", "other"}}, {}), warnings);
  EXPECT_EQ(r.relay.stats()[0].listen_failures, 1u);
}

}  // namespace
}  // namespace svcproxy::proxy
