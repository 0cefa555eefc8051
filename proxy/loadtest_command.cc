#include "proxy/loadtest_command.h"

#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <thread>

#include "loadtest/fail_if.h"
#include "loadtest/html_report.h"
#include "loadtest/json_report.h"
#include "loadtest/progress_line.h"
#include "loadtest/summary.h"
#include "proxy/conntrack_attributor.h"
#include "proxy/node_flags.h"

namespace svcproxy::proxy {
namespace {

// A CIDR larger than this is refused: every address becomes a bound source.
constexpr uint64_t kMaxSources = 65536;

std::optional<sockaddr_storage> parse_ip(const std::string& text, uint16_t port) {
  sockaddr_storage storage{};
  auto* v4 = reinterpret_cast<sockaddr_in*>(&storage);
  if (inet_pton(AF_INET, text.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    return storage;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&storage);
  if (inet_pton(AF_INET6, text.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    return storage;
  }
  return std::nullopt;
}

// "IP:PORT" or "[IPv6]:PORT"; nullopt when TARGET is not an address.
std::optional<sockaddr_storage> parse_address_target(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return std::nullopt;
  std::string host = text.substr(0, colon);
  const std::string port_text = text.substr(colon + 1);
  const bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
  if (bracketed) host = host.substr(1, host.size() - 2);
  else if (host.find(':') != std::string::npos) return std::nullopt;  // IPv6 needs brackets
  auto address = parse_ip(host, 0);
  if (!address) return std::nullopt;
  if (bracketed != (address->ss_family == AF_INET6)) return std::nullopt;
  if (port_text.empty() || port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos)
    throw FlagError("TARGET: invalid port \"" + port_text + "\" in \"" + text + "\"");
  const unsigned long port = std::stoul(port_text);
  if (port == 0 || port > 65535) throw FlagError("TARGET: port out of range in \"" + text + "\"");
  return parse_ip(host, static_cast<uint16_t>(port));
}

// Go-style durations: "500ms", "10s", "1.5m", "1h", "250us".
std::chrono::microseconds parse_duration_flag(const char* flag, const std::string& text) {
  size_t used = 0;
  double value = -1;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = text.substr(used);
  double scale = 0;
  if (unit == "us") scale = 1;
  else if (unit == "ms") scale = 1e3;
  else if (unit == "s") scale = 1e6;
  else if (unit == "m") scale = 60e6;
  else if (unit == "h") scale = 3600e6;
  if (used == 0 || scale == 0 || !(value > 0) || value * scale > 1e15)
    throw FlagError(std::string(flag) + ": invalid duration \"" + text + "\" (want e.g. 500ms, 10s, 1m)");
  return std::chrono::microseconds(static_cast<int64_t>(std::llround(value * scale)));
}

// Every address of a CIDR (without the network and broadcast addresses of
// an IPv4 prefix shorter than /31).
std::vector<sockaddr_storage> expand_cidr(const std::string& text) {
  const size_t slash = text.find('/');
  auto base = parse_ip(text.substr(0, slash), 0);
  const std::string bits_text = text.substr(slash + 1);
  if (!base || bits_text.empty() || bits_text.find_first_not_of("0123456789") != std::string::npos || bits_text.size() > 3)
    throw FlagError("--sources: invalid CIDR \"" + text + "\"");
  const bool v4 = base->ss_family == AF_INET;
  const unsigned width = v4 ? 32 : 128;
  const unsigned bits = static_cast<unsigned>(std::stoul(bits_text));
  if (bits > width) throw FlagError("--sources: invalid prefix length in \"" + text + "\"");
  if (width - bits > 16) throw FlagError("--sources: \"" + text + "\" has more than 65536 addresses");
  const uint64_t count = uint64_t{1} << (width - bits);
  std::vector<sockaddr_storage> out;
  uint8_t* bytes = v4 ? reinterpret_cast<uint8_t*>(&reinterpret_cast<sockaddr_in*>(&*base)->sin_addr)
                      : reinterpret_cast<uint8_t*>(&reinterpret_cast<sockaddr_in6*>(&*base)->sin6_addr);
  const size_t n = width / 8;
  for (uint64_t i = 0; i < count; ++i) {
    if (v4 && bits < 31 && (i == 0 || i == count - 1)) continue;
    sockaddr_storage addr = *base;
    uint8_t* b = v4 ? reinterpret_cast<uint8_t*>(&reinterpret_cast<sockaddr_in*>(&addr)->sin_addr)
                    : reinterpret_cast<uint8_t*>(&reinterpret_cast<sockaddr_in6*>(&addr)->sin6_addr);
    // Host bits are the low (width - bits): clear them, then add i.
    for (size_t k = 0; k < n; ++k) {
      const unsigned bit_start = static_cast<unsigned>(k * 8);
      if (bit_start + 8 <= bits) continue;
      const unsigned keep = bits > bit_start ? bits - bit_start : 0;
      b[k] = static_cast<uint8_t>(bytes[k] & (keep ? (0xff << (8 - keep)) & 0xff : 0));
    }
    uint64_t carry = i;
    for (size_t k = n; k-- > 0 && carry;) {
      const uint64_t sum = b[k] + (carry & 0xff);
      b[k] = static_cast<uint8_t>(sum);
      carry = (carry >> 8) + (sum >> 8);
    }
    out.push_back(addr);
  }
  return out;
}

// Each source must be an address of this host: a bind that would fail on
// every connection is a bad flag, not a run full of errors.
std::vector<sockaddr_storage> parse_sources(const std::string& text, int family) {
  std::vector<sockaddr_storage> out;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t comma = text.find(',', pos);
    if (comma == std::string::npos) comma = text.size();
    const std::string item = text.substr(pos, comma - pos);
    pos = comma + 1;
    if (item.empty()) throw FlagError("--sources: empty item in \"" + text + "\"");
    if (item.find('/') != std::string::npos) {
      auto more = expand_cidr(item);
      out.insert(out.end(), more.begin(), more.end());
    } else if (auto ip = parse_ip(item, 0)) {
      out.push_back(*ip);
    } else {
      throw FlagError("--sources: invalid address \"" + item + "\"");
    }
    if (out.size() > kMaxSources) throw FlagError("--sources: more than 65536 addresses");
  }
  for (const auto& source : out) {
    if (source.ss_family != family) throw FlagError("--sources: not the target's address family");
    const int fd = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    const bool ok = fd >= 0 && ::bind(fd, reinterpret_cast<const sockaddr*>(&source), len) == 0;
    const int err = errno;
    if (fd >= 0) ::close(fd);
    if (!ok) {
      char text_addr[INET6_ADDRSTRLEN] = {};
      const void* raw = family == AF_INET ? static_cast<const void*>(&reinterpret_cast<const sockaddr_in&>(source).sin_addr)
                                          : static_cast<const void*>(&reinterpret_cast<const sockaddr_in6&>(source).sin6_addr);
      inet_ntop(family, raw, text_addr, sizeof text_addr);
      throw FlagError(std::string("--sources: cannot send from ") + text_addr + ": " + std::strerror(err));
    }
  }
  return out;
}

loadtest::Plan plan_from(const LoadtestFlags& flags, ResolvedTarget target) {
  loadtest::Plan plan;
  plan.target = flags.target;
  plan.address = target.address;
  auto mode = loadtest::parse_mode(flags.mode);
  if (!mode) throw FlagError("--mode: \"" + flags.mode + "\" (want connect, request, http or udp)");
  plan.mode = *mode;
  if (flags.concurrency == 0) throw FlagError("--concurrency: must be at least 1");
  if (flags.threads == 0) throw FlagError("--threads: must be at least 1");
  plan.concurrency = flags.concurrency;
  plan.threads = flags.threads;
  if (!flags.duration.empty()) plan.duration = parse_duration_flag("--duration", flags.duration);
  if (flags.requests > 0) plan.requests = flags.requests;
  if (!plan.duration && !plan.requests) plan.duration = std::chrono::seconds(10);
  if (flags.rate < 0 || std::isnan(flags.rate)) throw FlagError("--rate: must be positive");
  if (flags.rate > 0) plan.rate = flags.rate;
  if (!flags.sources.empty()) plan.sources = parse_sources(flags.sources, target.address.ss_family);
  plan.keepalive = !flags.no_keepalive;
  if (flags.http_path.empty() || flags.http_path.front() != '/' ||
      flags.http_path.find_first_of(" \r\n") != std::string::npos)
    throw FlagError("--http-path: must start with / and hold no spaces");
  plan.http_path = flags.http_path;
  if (flags.endpoint_header.find_first_of(" :\r\n") != std::string::npos)
    throw FlagError("--endpoint-header: not a header name");
  plan.endpoint_header = flags.endpoint_header;
  plan.timeout = std::chrono::duration_cast<std::chrono::milliseconds>(parse_duration_flag("--timeout", flags.timeout));
  if (plan.timeout.count() == 0) throw FlagError("--timeout: at least 1ms");
  plan.expected = std::move(target.expected);
  plan.attributor = std::move(target.attributor);
  return plan;
}

// SIGINT/SIGTERM end the run early (the summary is still printed): the
// signals are blocked in every thread and read here from a signalfd.
class StopOnSignal {
 public:
  explicit StopOnSignal(loadtest::Engine& engine) {
    sigemptyset(&mask_);
    sigaddset(&mask_, SIGINT);
    sigaddset(&mask_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &mask_, &old_);
    signal_fd_ = signalfd(-1, &mask_, SFD_CLOEXEC);
    wake_fd_ = eventfd(0, EFD_CLOEXEC);
    thread_ = std::thread([this, &engine] {
      pollfd fds[2] = {{signal_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
      while (::poll(fds, 2, -1) < 0 && errno == EINTR) {
      }
      if (fds[0].revents & POLLIN) {
        // Consumed here, or it would be delivered (and kill us) when the
        // mask is restored after the run.
        signalfd_siginfo info{};
        (void)!::read(signal_fd_, &info, sizeof info);
        engine.stop();
      }
    });
  }
  ~StopOnSignal() {
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
    thread_.join();
    ::close(signal_fd_);
    ::close(wake_fd_);
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  StopOnSignal(const StopOnSignal&) = delete;
  StopOnSignal& operator=(const StopOnSignal&) = delete;

 private:
  sigset_t mask_{}, old_{};
  int signal_fd_ = -1;
  int wake_fd_ = -1;
  std::thread thread_;
};

}  // namespace

void add_loadtest_flags(CLI::App& cmd, LoadtestFlags& f) {
  cmd.add_option("TARGET", f.target,
                 "IP:PORT, [IPv6]:PORT, or NAMESPACE/SERVICE[:PORT-NAME|PORT] (resolved through --manifests or "
                 "--kubeconfig and --via)")
      ->required();
  cmd.add_option("--mode", f.mode, "connect (TCP handshake), request (one line, svcproxy echo), http (GET) or udp");
  cmd.add_option("--concurrency", f.concurrency, "Connections / requests in flight (default 16)");
  cmd.add_option("--threads", f.threads, "Worker threads (default 1)");
  cmd.add_option("--duration", f.duration, "How long to run, e.g. 30s (default 10s unless --requests)");
  cmd.add_option("--requests", f.requests, "Stop after this many requests");
  cmd.add_option("--rate", f.rate, "Open loop: requests/s over all threads (latency counted from each planned send)");
  cmd.add_option("--sources", f.sources, "Client addresses to send from, round robin: a comma list or a CIDR");
  cmd.add_flag("--no-keepalive", f.no_keepalive, "http: one request per connection");
  cmd.add_option("--http-path", f.http_path, "http: the path to GET (default /)");
  cmd.add_option("--endpoint-header", f.endpoint_header, "http: response header naming the server (default X-Endpoint)");
  cmd.add_option("--timeout", f.timeout, "Per attempt, connect + answer (default 1s)");
  cmd.add_option("--json", f.json, "Write the report as JSON to this file");
  cmd.add_option("--html", f.html, "Write the report as one self-contained HTML page (inline SVG) to this file");
  cmd.add_option("--fail-if", f.fail_if,
                 "Exit 1 when one holds, e.g. 'p99>50ms,errors>0,violations>0,fairness<0.01'");
  cmd.add_flag("--quiet", f.quiet, "No progress line");
  cmd.add_option("--via", f.via,
                 "NAMESPACE/SERVICE: the address to load: cluster (ClusterIP, default), nodeport (node IP + "
                 "nodePort), lb (status.loadBalancer ingress IP) or external (first externalIPs)");
  cmd.add_option("--family", f.family, "NAMESPACE/SERVICE: ipv4 or ipv6 (default: the service's first family)");
  cmd.add_option("--attribute", f.attribute,
                 "Where each answer's endpoint is read: conntrack (this namespace's conntrack entry: run on the "
                 "node that does the DNAT), answer (the server names itself), or auto (default: conntrack in "
                 "connect mode or when the client is the node itself, else the answer)");
  cmd.add_flag("--watch", f.watch,
               "NAMESPACE/SERVICE: follow the source during the run; report per endpoint change the time to the "
               "last answer of a removed endpoint and to the first of an added one");
  add_source_flags(cmd, f.source);
  add_node_flags(cmd, f.node);
}

namespace {

// A NAMESPACE/SERVICE target: the address --via picks and the endpoints the
// rules must send these clients to (see proxy/service_target.h).
void resolve_service_target(const LoadtestFlags& flags, const ServiceTarget& service, ResolvedTarget& target) {
  if (flags.source.manifests.empty() && !flags.source.api())
    throw FlagError("TARGET: " + service.text + " is a service: resolving it needs --manifests or --kubeconfig");
  ExpectationInputs inputs;
  inputs.target = service;
  const auto via = parse_via(flags.via);
  if (!via) throw FlagError("--via: \"" + flags.via + "\" (want cluster, nodeport, lb or external)");
  inputs.via = *via;
  inputs.protocol = flags.mode == "udp" ? model::Protocol::UDP : model::Protocol::TCP;
  if (flags.family == "ipv4") inputs.family = model::IPFamily::V4;
  else if (flags.family == "ipv6") inputs.family = model::IPFamily::V6;
  else if (!flags.family.empty()) throw FlagError("--family: \"" + flags.family + "\" (want ipv4 or ipv6)");
  inputs.node_flags = flags.node;
  // Each source's set is traced; beyond this many the rest are taken as
  // the first ones (a CIDR of clients is normally one class of client).
  constexpr size_t kTracedSources = 256;
  if (!flags.sources.empty()) {
    // Clients of one family reach only addresses of that family: the
    // sources pick it (when --family does not).
    const std::string first = flags.sources.substr(0, flags.sources.find_first_of(",/"));
    const int family = first.find(':') == std::string::npos ? AF_INET : AF_INET6;
    if (!inputs.family) inputs.family = family == AF_INET ? model::IPFamily::V4 : model::IPFamily::V6;
    for (const auto& s : parse_sources(flags.sources, family)) {
      if (inputs.sources.size() == kTracedSources) break;
      inputs.sources.push_back(endpoint_of_sockaddr(s)->ip);
    }
  }
  target.service = resolve_service_run(flags.source, inputs, flags.watch);
  const auto& e = target.service->expectation;
  target.address = model::to_sockaddr(e.address.ip, e.address.port).storage;
  target.expected = e.expected;
  if (e.sources_differ)
    std::cerr << "svcproxy: loadtest: the sources are served by different endpoint sets; fairness and violations "
                 "are judged against their union\n";
  std::cerr << "svcproxy: loadtest: " << target.service->describe() << "\n";
}

// --attribute: conntrack wherever it can answer (connect mode has no
// answer; a client on the node sees the node's DNAT in its own conntrack).
bool use_conntrack(const LoadtestFlags& flags, const ResolvedTarget& target) {
  if (flags.attribute == "conntrack") return true;
  if (flags.attribute == "answer") return false;
  if (flags.attribute != "auto")
    throw FlagError("--attribute: \"" + flags.attribute + "\" (want conntrack, answer or auto)");
  if (flags.mode == "connect") return true;
  if (!target.service) return false;
  // The client is the node itself: the rules' output hook did the DNAT here.
  const auto& e = target.service->expectation;
  return std::all_of(e.sources.begin(), e.sources.end(), [&](const model::IPAddress& source) {
    return std::find(e.local_addresses.begin(), e.local_addresses.end(), source) != e.local_addresses.end();
  });
}

}  // namespace

ResolvedTarget resolve_target(const LoadtestFlags& flags) {
  ResolvedTarget target;
  if (auto service = parse_service_target(flags.target)) {
    try {
      resolve_service_target(flags, *service, target);
    } catch (const TargetError& e) {
      throw FlagError(e.what());  // a target naming nothing usable is a bad argument: exit 2
    }
  } else {
    auto address = parse_address_target(flags.target);
    if (!address)
      throw FlagError("TARGET: \"" + flags.target + "\" is not IP:PORT, [IPv6]:PORT or NAMESPACE/SERVICE[:PORT]");
    if (flags.watch) throw FlagError("--watch: needs a NAMESPACE/SERVICE target");
    target.address = *address;
  }
  if (use_conntrack(flags, target)) {
    try {
      // auto gives up after 256 lookups that find no DNAT (see the class).
      target.attributor = std::make_shared<ConntrackAttributor>(flags.attribute == "auto" ? 256 : 0);
    } catch (const std::exception& e) {
      if (flags.attribute == "conntrack") throw std::runtime_error(std::string("--attribute conntrack: ") + e.what());
      std::cerr << "svcproxy: loadtest: attributing by the answers: " << e.what() << "\n";
    }
  }
  return target;
}

int run_loadtest(const LoadtestFlags& flags) {
  std::vector<loadtest::FailCondition> conditions;
  if (!flags.fail_if.empty()) {
    auto parsed = loadtest::parse_fail_if(flags.fail_if);
    if (!parsed.error.empty()) throw FlagError("--fail-if: " + parsed.error);
    conditions = std::move(parsed.conditions);
  }
  ResolvedTarget target = resolve_target(flags);
  std::unique_ptr<ServiceRun> service = std::move(target.service);
  loadtest::Engine engine(plan_from(flags, std::move(target)));
  // Opened before the run: a path that cannot be written fails now, not
  // after a long run.
  std::ofstream json_out;
  if (!flags.json.empty()) {
    json_out.open(flags.json);
    if (!json_out) throw FlagError("--json: cannot write " + flags.json + ": " + std::strerror(errno));
  }
  std::ofstream html_out;
  if (!flags.html.empty()) {
    html_out.open(flags.html, std::ios::binary);
    if (!html_out) throw FlagError("--html: cannot write " + flags.html + ": " + std::strerror(errno));
  }
  const bool tty = ::isatty(STDERR_FILENO) == 1;
  unsigned calls = 0;
  auto on_progress = [&](const loadtest::Progress& p) {
    if (flags.quiet) return;
    if (tty) std::cerr << "\r" << loadtest::render_progress(p) << "\x1b[K" << std::flush;
    else if (++calls % 4 == 0) std::cerr << loadtest::render_progress(p) << "\n" << std::flush;
  };
  loadtest::Report report;
  {
    StopOnSignal stop(engine);
    if (service) service->watch(engine);
    report = engine.run(on_progress);
    if (service && service->follower) service->follower->stop();
  }
  if (tty && !flags.quiet) std::cerr << "\r\x1b[K" << std::flush;
  if (json_out.is_open()) {
    json_out << loadtest::render_json(report) << "\n";
    if (!json_out.flush()) {
      std::cerr << "svcproxy: --json: cannot write " << flags.json << "\n";
      return 1;
    }
  }
  if (html_out.is_open()) {
    html_out << loadtest::render_html(report);
    if (!html_out.flush()) {
      std::cerr << "svcproxy: --html: cannot write " << flags.html << "\n";
      return 1;
    }
  }
  const std::vector<std::string> failed = loadtest::evaluate_fail_if(conditions, report);
  std::cout << loadtest::render_summary(report, failed) << std::flush;
  return failed.empty() ? 0 : 1;
}

}  // namespace svcproxy::proxy
