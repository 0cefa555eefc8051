#include "proxy/status_command.h"

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdint>
#include <iostream>

#include "dataplane/kernel.h"
#include "proxy/debug_page.h"
#include "proxy/debug_state.h"
#include "proxy/http_server.h"

namespace svcproxy::proxy {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = boost::beast::http;

std::string percent_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~' || c == '/') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

// GET http://<address><target>; the body, or an error naming the address.
base::Result<std::string> http_get(const std::string& address, const std::string& target) {
  auto hp = parse_host_port(address);
  if (!hp) return base::Error{"--metrics-bind-address: " + hp.error()};
  auto ip = asio::ip::make_address(hp->ip);
  // A daemon listening on every address answers on loopback.
  if (ip.is_unspecified()) ip = ip.is_v6() ? asio::ip::make_address("::1") : asio::ip::make_address("127.0.0.1");
  try {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.expires_after(std::chrono::seconds(30));
    stream.connect(asio::ip::tcp::endpoint(ip, hp->port));
    http::request<http::empty_body> request(http::verb::get, target, 11);
    request.set(http::field::host, address);
    http::write(stream, request);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(uint64_t{1} << 30);  // 100k services: tens of MB
    http::read(stream, buffer, parser);
    if (parser.get().result() != http::status::ok)
      return base::Error{"GET " + target + " on " + address + ": HTTP " + std::to_string(parser.get().result_int())};
    return parser.release().body();
  } catch (const boost::system::system_error& e) {
    return base::Error{"cannot read the daemon's state at " + address + ": " + e.code().message() +
                       " (is `svcproxy run` running with this --metrics-bind-address?)"};
  }
}

}  // namespace

void add_status_flags(CLI::App& cmd, StatusFlags& flags) {
  cmd.add_option("--metrics-bind-address", flags.metrics_bind_address,
                 "The daemon's metrics address, where /debug/state is served (default 127.0.0.1:10249)");
  cmd.add_flag("--live", flags.live,
               "Read the services and endpoints svcproxy's tables hold in this network namespace instead "
               "(no daemon needed)");
  cmd.add_flag("--json", flags.json, "Print the /debug/state JSON document");
  cmd.add_option("--filter", flags.filter, "Only services whose name, IP, node or zone contains this");
}

int run_status(const StatusFlags& flags) {
  DebugState state;
  if (flags.live) {
    dataplane::NetlinkBackend backend;
    state.origin = "kernel";
    state.time = format_time(std::chrono::system_clock::now());
    state.services = filter_services(services_from_ruleset(backend.read_back()), flags.filter);
  } else {
    const auto body = http_get(flags.metrics_bind_address, "/debug/state?filter=" + percent_encode(flags.filter));
    if (!body) {
      std::cerr << "svcproxy status: " << body.error() << "\n";
      return 1;
    }
    auto parsed = debug_state_from_json(*body);
    if (!parsed) {
      std::cerr << "svcproxy status: /debug/state from " << flags.metrics_bind_address << ": " << parsed.error()
                << "\n";
      return 1;
    }
    state = std::move(*parsed);
  }
  std::cout << (flags.json ? to_json(state) : render_status_text(state));
  return 0;
}

}  // namespace svcproxy::proxy
