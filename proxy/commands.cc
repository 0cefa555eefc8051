#include "proxy/commands.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>

#include "dataplane/compile.h"
#include "dataplane/kernel.h"
#include "dataplane/render.h"
#include "dataplane/trace.h"
#include "model/service_ports.h"
#include "proxy/config.h"
#include "proxy/conntrack_sysctls.h"
#include "proxy/echo.h"
#include "proxy/kube_proxy_flags.h"
#include "proxy/loadtest_command.h"
#include "proxy/log.h"
#include "proxy/modes.h"
#include "proxy/node_flags.h"
#include "proxy/proxy_mode.h"
#include "proxy/run.h"
#include "proxy/source_flags.h"
#include "proxy/status_command.h"
#include "svcproxy_version.h"
#include "userspace/vip_interface.h"
#include "watch/api_source.h"
#include "watch/kubeconfig.h"
#include "watch/manifests.h"

namespace svcproxy::proxy {
namespace {

constexpr int kExitUsage = 2;

void print_ruleset(const dataplane::ir::Ruleset& ruleset, const std::string& format) {
  std::cout << (format == "json" ? dataplane::render_json(ruleset) : dataplane::render_nft(ruleset));
  std::cout.flush();
}

int cmd_rules(const SourceFlags& source, const NodeFlags& node_flags, const std::string& format, bool live) {
  if (live) {
    // What the kernel holds in this network namespace, read over netlink.
    dataplane::NetlinkBackend backend;
    print_ruleset(backend.read_back(), format);
    return 0;
  }
  auto compiled = load_and_compile(source, node_flags);
  print_ruleset(compiled.result.ruleset, format);
  return source.strict && compiled.had_problems ? 1 : 0;
}

int cmd_run_once(const SourceFlags& source, const NodeFlags& node_flags) {
  require_source(source);
  back_heap_with_huge_pages();
  // The daemon's full-sync path: the kernel's batch is encoded straight from
  // the compiler's state (no copy of the ruleset), and the decoded cluster
  // and per-port view are freed before the batch is built, so their heap is
  // reused for it instead of adding to the peak.
  std::optional<dataplane::RulesetCompiler> compiler;
  bool had_problems = false;
  {
    auto decoded = load_cluster(source, node_flags);
    for (const auto& d : decoded.diagnostics) std::cerr << d.str() << "\n";
    std::vector<std::string> node_warnings;
    model::NodeConfig node = resolve_node_config(node_flags, decoded.state, InterfaceAddresses(), &node_warnings);
    for (const auto& w : node_warnings) std::cerr << w << "\n";
    auto state = model::build_proxy_state(decoded.state, node);
    had_problems = !decoded.diagnostics.empty() || !state.skipped.empty();
    decoded = {};
    for (const auto& s : state.skipped) std::cerr << "skipped " << s.object.str() << ": " << s.reason << "\n";
    compiler.emplace(std::move(node));
    compiler->reset(state.ports);
    const auto warnings = compiler->take_warnings();
    for (const auto& w : warnings) std::cerr << w << "\n";
    had_problems = had_problems || !warnings.empty();
  }
  dataplane::NetlinkBackend backend;
  try {
    backend.apply_full(*compiler);
  } catch (const std::exception& e) {
    std::cerr << "svcproxy: the kernel refused the ruleset; nothing was changed: " << e.what() << "\n";
    return 1;
  }
  size_t chains = 0, elements = 0;
  for (const auto& t : compiler->ruleset_ref().tables) {
    chains += t.chains.size();
    for (const auto& set : t.sets) elements += set.size();
  }
  std::cerr << "programmed " << chains << " chains and " << elements << " set elements in one transaction\n";
  // The process exits next and returns the heap whole: freeing the
  // compiler's state one allocation at a time was 4% of run --once's CPU at
  // 50k x 2 (perf). The pointer stays reachable, so LeakSanitizer is quiet.
  [[maybe_unused]] static std::optional<dataplane::RulesetCompiler>* kept_until_exit = nullptr;
  kept_until_exit = new std::optional<dataplane::RulesetCompiler>(std::move(compiler));
  return source.strict && had_problems ? 1 : 0;
}

int cmd_cleanup() {
  // The userspace proxy's interface (and its service addresses) first: it
  // needs no nf_tables, so a node without nftables is cleaned up too.
  if (userspace::remove_vip_interface()) std::cerr << "removed interface " << userspace::kVipInterfaceName << "\n";
  try {
    dataplane::NetlinkBackend backend;
    backend.cleanup();
  } catch (const std::exception&) {
    if (nftables_unusable().empty()) throw;
  }
  return 0;
}

struct TraceFlags {
  std::string src, dst, proto = "tcp";
  std::string iif;  // empty: not given
  int dport = 0;
  bool json = false;
  bool live = false;
};

int cmd_trace(const SourceFlags& source, const NodeFlags& node_flags, const TraceFlags& flags) {
  dataplane::TracePacket packet;
  auto src = model::IPAddress::parse(flags.src);
  if (!src) throw FlagError("--src: invalid IP address \"" + flags.src + "\"");
  auto dst = model::IPAddress::parse(flags.dst);
  if (!dst) throw FlagError("--dst: invalid IP address \"" + flags.dst + "\"");
  if (src->family != dst->family) throw FlagError("--src/--dst: addresses of different families");
  packet.src = *src;
  packet.dst = *dst;
  packet.dport = static_cast<uint16_t>(flags.dport);
  if (!flags.iif.empty()) {
    if (auto problem = interface_name_problem(flags.iif, false); !problem.empty())
      throw FlagError("--iif: " + problem);
    packet.iif = flags.iif;
  }
  packet.protocol = flags.proto == "udp" ? model::Protocol::UDP
                    : flags.proto == "sctp" ? model::Protocol::SCTP
                                            : model::Protocol::TCP;

  dataplane::TraceEnvironment env;
  dataplane::ir::Ruleset ruleset;
  bool problems = false;
  if (flags.live) {
    // The live ruleset of this network namespace; "local" is what its
    // interfaces carry.
    dataplane::NetlinkBackend backend;
    ruleset = backend.read_back();
    env.local_addresses = InterfaceAddresses().list();
  } else {
    auto compiled = load_and_compile(source, node_flags);
    ruleset = std::move(compiled.result.ruleset);
    env.local_addresses = compiled.node.node_ips;
    env.local_addresses.insert(env.local_addresses.end(), compiled.node.nodeport_ips.begin(),
                               compiled.node.nodeport_ips.end());
    problems = compiled.had_problems;
  }
  for (const auto& ip : env.local_addresses) packet.locally_generated = packet.locally_generated || ip == packet.src;
  auto result = dataplane::trace(ruleset, packet, env);
  std::cout << (flags.json ? result.to_json() + "\n" : result.to_text());
  return source.strict && problems ? 1 : 0;
}

bool flag_given(const CLI::App& cmd, const std::string& name) {
  const auto* opt = cmd.get_option_no_throw(name);
  return opt != nullptr && opt->count() > 0;
}

// Go's time.ParseDuration, as kube-proxy's flags read durations ("1m0s").
std::chrono::nanoseconds go_duration_flag(const char* flag, const std::string& text, bool zero_ok) {
  std::chrono::nanoseconds d{};
  try {
    d = parse_go_duration(text);
  } catch (const std::invalid_argument& e) {
    throw FlagError(std::string(flag) + ": " + e.what());
  }
  if (d < std::chrono::nanoseconds(0) || (!zero_ok && d.count() == 0))
    throw FlagError(std::string(flag) + ": must be greater than " + (zero_ok ? "or equal to 0" : "0") + ", got \"" +
                    text + "\"");
  return d;
}

// The --conntrack-* flags as given (kube-proxy's defaults otherwise).
struct ConntrackFlags {
  int32_t max_per_core = 32768;
  int32_t min = 131072;
  std::string tcp_established = "24h0m0s";
  std::string tcp_close_wait = "1h0m0s";
  bool tcp_be_liberal = false;
  std::string udp_timeout = "0s";
  std::string udp_stream_timeout = "0s";
};

void add_conntrack_flags(CLI::App& run, ConntrackFlags& f) {
  run.add_option("--conntrack-max-per-core", f.max_per_core,
                 "nf_conntrack_max per CPU: nf_conntrack_max = max(this x CPUs, --conntrack-min), and the hash "
                 "table at least a quarter of it (default 32768; 0: both left as they are)")
      ->check(CLI::Range(0, INT32_MAX));
  run.add_option("--conntrack-min", f.min, "The least nf_conntrack_max (default 131072)")
      ->check(CLI::Range(0, INT32_MAX));
  run.add_option("--conntrack-tcp-timeout-established", f.tcp_established,
                 "nf_conntrack_tcp_timeout_established: idle timeout of established TCP connections (default 24h; 0: "
                 "left as it is)");
  run.add_option("--conntrack-tcp-timeout-close-wait", f.tcp_close_wait,
                 "nf_conntrack_tcp_timeout_close_wait (default 1h; 0: left as it is)");
  run.add_flag("--conntrack-tcp-be-liberal", f.tcp_be_liberal, "Set nf_conntrack_tcp_be_liberal to 1");
  run.add_option("--conntrack-udp-timeout", f.udp_timeout,
                 "nf_conntrack_udp_timeout: idle timeout of UDP flows without a reply (default 0: left as it is)");
  run.add_option("--conntrack-udp-timeout-stream", f.udp_stream_timeout,
                 "nf_conntrack_udp_timeout_stream: idle timeout of ASSURED UDP flows (default 0: left as it is)");
}

ConntrackSettings conntrack_settings(const ConntrackFlags& f) {
  ConntrackSettings s;
  s.max_per_core = f.max_per_core;
  s.min = f.min;
  s.tcp_be_liberal = f.tcp_be_liberal;
  auto timeout = [](const char* flag, const std::string& text) {
    try {
      return conntrack_timeout(go_duration_flag(flag, text, true));
    } catch (const std::invalid_argument& e) {
      throw FlagError(std::string(flag) + ": " + e.what());
    }
  };
  s.tcp_established_timeout = timeout("--conntrack-tcp-timeout-established", f.tcp_established);
  s.tcp_close_wait_timeout = timeout("--conntrack-tcp-timeout-close-wait", f.tcp_close_wait);
  s.udp_timeout = timeout("--conntrack-udp-timeout", f.udp_timeout);
  s.udp_stream_timeout = timeout("--conntrack-udp-timeout-stream", f.udp_stream_timeout);
  return s;
}

// --write-config-to: kube-proxy writes its configuration and exits.
int write_config(const std::string& path, const DaemonSettings& settings, Log& log) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << render_proxy_config(settings);
  out.close();
  if (!out) throw std::runtime_error("--write-config-to " + path + ": cannot write");
  log.info("wrote configuration", {{"file", path}});
  return 0;
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App app{"svcproxy: a Kubernetes service proxy for Linux nodes (nftables dataplane)", "svcproxy"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "svcproxy " + std::string(kVersion));

  SourceFlags source;
  NodeFlags node_flags;

  auto* rules = app.add_subcommand("rules", "Print the nftables ruleset svcproxy would program on this node");
  std::string format = "nft";
  add_source_flags(*rules, source);
  add_node_flags(*rules, node_flags);
  rules->add_option("--format", format, "Output format: nft (an nft -f script) or json (the IR)")
      ->check(CLI::IsMember({"nft", "json"}));
  bool rules_live = false;
  rules->add_flag("--live", rules_live,
                  "Print what the kernel holds in this network namespace (read over netlink) instead");

  auto* trace = app.add_subcommand("trace", "Explain where one packet arriving at this node goes");
  TraceFlags trace_flags;
  SourceFlags trace_source;
  NodeFlags trace_node_flags;
  add_source_flags(*trace, trace_source);
  add_node_flags(*trace, trace_node_flags);
  trace->add_option("--src", trace_flags.src, "Source IP (a node IP means locally generated)")->required();
  trace->add_option("--dst", trace_flags.dst, "Destination IP")->required();
  trace->add_option("--dport", trace_flags.dport, "Destination port")->required()->check(CLI::Range(1, 65535));
  trace->add_option("--proto", trace_flags.proto, "tcp, udp or sctp")
      ->check(CLI::IsMember({"tcp", "udp", "sctp"}));
  trace->add_option("--iif", trace_flags.iif,
                    "Input interface of an arriving packet (for the iifname matches of --detect-local-mode "
                    "BridgeInterface / InterfaceNamePrefix)");
  trace->add_flag("--json", trace_flags.json, "Print one JSON object");
  trace->add_flag("--live", trace_flags.live,
                  "Evaluate the ruleset the kernel holds in this network namespace instead of compiling");

  auto* run = app.add_subcommand("run", "Program this network namespace's nftables from the cluster");
  SourceFlags run_source;
  NodeFlags run_node_flags;
  bool once = false;
  add_source_flags(*run, run_source);
  add_node_flags(*run, run_node_flags);
  run->add_flag("--once", once, "Compile and program once (one transaction), then exit");
  run->footer(
      "With --manifests, a path or file that cannot be read at start is an error (exit 1, nothing programmed). "
      "While running, a path or file that disappears, turns unreadable or stops parsing (caught half written) "
      "keeps what it held before in the kernel until it can be read again; it is logged once, counted in "
      "svcproxy_manifest_read_errors_total and makes /healthz answer 503 with a \"reason\".");
  std::string config_file;
  run->add_option("--config", config_file,
                  "A KubeProxyConfiguration file (kubeproxy.config.k8s.io/v1alpha1); flags given on the command "
                  "line override it");
  bool run_cleanup = false;
  run->add_flag("--cleanup", run_cleanup, "Remove everything svcproxy created (as `svcproxy cleanup`) and exit");
  std::string sync_period = "30s";
  std::string min_sync_period = "0s";
  run->add_option("--sync-period,--iptables-sync-period", sync_period,
                  "Interval of full resyncs, which also repair hand edits of svcproxy's tables (default 30s; "
                  "--iptables-sync-period is kube-proxy's name, which its nftables mode reads too)");
  run->add_option("--min-sync-period,--iptables-min-sync-period", min_sync_period,
                  "Changes are synced no sooner than this after the previous sync; bursts coalesce (default 0s; "
                  "--iptables-min-sync-period is kube-proxy's name)");
  std::string healthz_bind = "0.0.0.0:10256", metrics_bind = "127.0.0.1:10249";
  run->add_option("--healthz-bind-address", healthz_bind,
                  "IP:port of /healthz and /livez (default 0.0.0.0:10256; empty: off)");
  run->add_option("--metrics-bind-address", metrics_bind,
                  "IP:port of /metrics (default 127.0.0.1:10249; empty: off)");
  std::string bind_address;
  run->add_option("--bind-address", bind_address,
                  "kube-proxy's name for this node's primary IP (one address; 0.0.0.0 and '::' name none). --node-ip "
                  "wins; an IPv6 address moves the default bind addresses to [::]:10256 and [::1]:10249");
  ProxyMode proxy_mode = ProxyMode::Nftables;
  std::string proxy_mode_asked;
  auto mode_names_accepted = mode_names<ProxyMode>();
  mode_names_accepted.insert(mode_names_accepted.end(), {"iptables", "ipvs"});
  run->add_option_function<std::string>(
         "--proxy-mode",
         [&](const std::string& text) {
           proxy_mode_asked = text;
           proxy_mode = parse_mode<ProxyMode>(text).value_or(ProxyMode::Nftables);
         },
         "nftables (default), userspace, or auto; kube-proxy's iptables and ipvs run nftables (with a warning)")
      ->check(CLI::IsMember(mode_names_accepted));
  int verbosity = 0;
  run->add_option("-v,--v", verbosity, "Log verbosity: 0 (default) logs syncs and problems, 2 adds each queued change")
      ->check(CLI::Range(0, 10));
  LogFormat log_format = LogFormat::Text;
  add_mode_option(*run, "--log-format,--logging-format", log_format,
                  "text (klog's line shape, default) or json (one object per line); --logging-format is kube-proxy's "
                  "name");
  int iptables_masquerade_bit = 14;
  run->add_option("--iptables-masquerade-bit", iptables_masquerade_bit,
                  "kube-proxy's name for --masquerade-bit (which wins when both are given)")
      ->check(CLI::Range(0, 31));
  ConntrackFlags conntrack;
  add_conntrack_flags(*run, conntrack);
  int oom_score_adj = 0;
  run->add_option("--oom-score-adj", oom_score_adj,
                  "Write this to /proc/self/oom_score_adj at start (-1000..1000; default: left as it is)")
      ->check(CLI::Range(-1000, 1000));
  KubeProxyFlags kube_proxy_flags;
  add_kube_proxy_flags(*run, kube_proxy_flags);
  UserspaceFlags userspace_flags;
  std::string udp_timeout = "250ms";
  run->add_option("--udp-timeout", udp_timeout, "userspace mode: idle time after which a UDP flow is closed (default 250ms)");
  run->add_option("--userspace-max-connections", userspace_flags.max_connections,
                  "userspace mode: TCP connections proxied at once; more are reset (default 0: unlimited)");
  run->add_option("--userspace-workers", userspace_flags.workers,
                  "userspace mode: proxy threads, one io_context each (default 0: one per CPU)");
  run->add_option_function<std::string>(
      "--userspace-drain-timeout",
      [&userspace_flags](const std::string& text) {
        try {
          userspace_flags.drain_timeout = parse_duration("--userspace-drain-timeout", text, true);
        } catch (const FlagError& e) {
          throw CLI::ValidationError(e.what());
        }
      },
      "userspace mode: TCP connections to a removed endpoint are reset this long after the update (default 0: "
      "left to finish)");

  auto* cleanup = app.add_subcommand(
      "cleanup", "Remove everything svcproxy created in this network namespace (its nftables tables, the svcproxy0 interface), nothing else");

  auto* echo = app.add_subcommand("echo", "A small TCP/UDP/HTTP backend that reports who it is and who called");
  EchoOptions echo_options;
  echo->add_option("--listen", echo_options.listen, "ADDR:PORT or [ADDR]:PORT")->required();
  echo->add_flag("--udp", echo_options.udp, "Serve UDP instead of TCP");
  echo->add_option("--id", echo_options.id, "Name to answer with (default: hostname)");

  auto* status = app.add_subcommand(
      "status", "Show the services, endpoints, syncs and watch state of the running daemon (its /debug/state)");
  StatusFlags status_flags;
  add_status_flags(*status, status_flags);

  auto* loadtest = app.add_subcommand(
      "loadtest", "Load-test an address (or a Service) and show which endpoint answered each request");
  LoadtestFlags loadtest_flags;
  add_loadtest_flags(*loadtest, loadtest_flags);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string msg = e.what();
    for (auto& c : msg)
      if (c == '\n') c = ' ';
    std::cerr << "svcproxy: " << msg << "\n";
    return kExitUsage;
  }

  try {
    if (rules->parsed()) return cmd_rules(source, node_flags, format, rules_live);
    if (run->parsed()) {
      if (run_cleanup) return cmd_cleanup();
      const auto given = [&](std::string_view flag) {
        // kube-proxy's spelling of a flag counts as the flag.
        const std::string name = flag == "--masquerade-bit" && flag_given(*run, "--iptables-masquerade-bit")
                                     ? "--iptables-masquerade-bit"
                                     : std::string(flag);
        return flag_given(*run, name);
      };
      if (const auto& v = kube_proxy_flags.version; v == "true" || v == "raw") {
        std::cout << "svcproxy " << kVersion << "\n";
        return 0;
      }
      // Flags, then the config file for what the command line left unset.
      DaemonSettings settings;
      settings.node = run_node_flags;
      if (given("--iptables-masquerade-bit") && !flag_given(*run, "--masquerade-bit"))
        settings.node.masquerade_bit = iptables_masquerade_bit;
      settings.kubeconfig = run_source.kubeconfig;
      settings.proxy_mode = proxy_mode;
      settings.healthz_bind_address = healthz_bind;
      settings.metrics_bind_address = metrics_bind;
      settings.sync_period = go_duration_flag("--sync-period", sync_period, false);
      settings.min_sync_period = go_duration_flag("--min-sync-period", min_sync_period, true);
      settings.verbosity = verbosity;
      settings.log_format = log_format;
      settings.conntrack = conntrack_settings(conntrack);
      settings.bind_address = bind_address;
      if (given("--oom-score-adj")) settings.oom_score_adj = oom_score_adj;
      // Without a file, merging an empty one still checks the combination
      // (--min-sync-period <= --sync-period).
      const ProxyConfigFile file = config_file.empty() ? ProxyConfigFile{} : load_proxy_config(config_file);
      merge_config(file, given, settings);
      // kube-proxy's deprecated port flags: 0 turns a server off.
      if (kube_proxy_flags.healthz_port == 0 && !given("--healthz-bind-address")) settings.healthz_bind_address = "";
      if (kube_proxy_flags.metrics_port == 0 && !given("--metrics-bind-address")) settings.metrics_bind_address = "";
      Log log(std::cerr, settings.verbosity, settings.log_format);
      for (const auto& w : file.warnings) log.warning(w);
      for (const auto& w : kube_proxy_flag_warnings(*run, kube_proxy_flags)) log.warning(w);
      if (proxy_mode_asked == "iptables" || proxy_mode_asked == "ipvs")
        log.warning("--proxy-mode " + proxy_mode_asked +
                    ": svcproxy runs its nftables dataplane in place of "
                    "kube-proxy's " +
                    proxy_mode_asked + " mode");
      run_source.kubeconfig = settings.kubeconfig;
      if (!kube_proxy_flags.write_config_to.empty())
        return write_config(kube_proxy_flags.write_config_to, settings, log);
      if (settings.oom_score_adj) {
        if (auto problem = apply_oom_score_adj(*settings.oom_score_adj); !problem.empty())
          // Lowering it needs CAP_SYS_RESOURCE, which a pod seldom has:
          // kube-proxy logs this at -v 2 and goes on.
          log.info("oom_score_adj left as it is", {{"value", *settings.oom_score_adj}, {"error", problem}});
      }
      if (kube_proxy_flags.init_only) {
        // kube-proxy's --init-only: the steps that need more than
        // CAP_NET_ADMIN (the conntrack sysctls), then exit.
        ProcSysctls sysctls;
        log_conntrack_sysctls(apply_conntrack_sysctls(settings.conntrack, online_cpus(), sysctls), log);
        return 0;
      }

      const NftablesProbe probe = [] { return nftables_unusable(); };
      const auto chosen_mode = choose_proxy_mode(settings.proxy_mode, probe, log);
      if (!chosen_mode) return 1;
      if (once && *chosen_mode == ProxyMode::Userspace)
        throw FlagError("--once: the userspace proxy is a daemon (use --proxy-mode nftables with --once)");
      if (once) return cmd_run_once(run_source, settings.node);
      require_source(run_source);
      RunOptions options;
      options.manifests = run_source.manifests;
      if (run_source.api()) {
        options.api = watch::resolve_client_config(run_source.kubeconfig, run_source.master,
                                                   [](const char* name) { return std::getenv(name); });
        options.api_options.request_timeout = parse_duration("--request-timeout", run_source.request_timeout, false);
      }
      options.node = settings.node;
      options.sync_period = std::chrono::duration_cast<std::chrono::milliseconds>(settings.sync_period);
      options.min_sync_period = std::chrono::duration_cast<std::chrono::milliseconds>(settings.min_sync_period);
      options.healthz_bind_address = settings.healthz_bind_address;
      options.metrics_bind_address = settings.metrics_bind_address;
      options.proxy_mode = *chosen_mode;
      options.conntrack = settings.conntrack;
      options.userspace = userspace_flags;
      options.userspace.udp_timeout = parse_duration("--udp-timeout", udp_timeout);
      options.flags = flag_values(*run, settings);
      options.configz = configz_json(settings);
      log.info("starting", {{"version", kVersion}, {"proxy_mode", to_string(*chosen_mode)}});
      return run_daemon(options, log);
    }
    if (cleanup->parsed()) return cmd_cleanup();
    if (trace->parsed()) return cmd_trace(trace_source, trace_node_flags, trace_flags);
    if (echo->parsed()) return run_echo(echo_options);
    if (loadtest->parsed()) return run_loadtest(loadtest_flags);
    if (status->parsed()) return run_status(status_flags);
  } catch (const FlagError& e) {
    std::cerr << "svcproxy: " << e.what() << "\n";
    return kExitUsage;
  } catch (const ConfigError& e) {
    std::cerr << "svcproxy: " << e.what() << "\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "svcproxy: " << e.what() << "\n";
    return 1;
  }
  return kExitUsage;
}

}  // namespace svcproxy::proxy
