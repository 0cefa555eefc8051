#include "proxy/source_flags.h"

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <iostream>
#include <stdexcept>
#include <vector>

#include "model/service_ports.h"
#include "proxy/run.h"
#include "watch/api_source.h"
#include "watch/kubeconfig.h"

namespace svcproxy::proxy {

// A one-shot command (rules, trace, run --once) builds the model, the
// compiler's state and the netlink batch in a heap nothing has touched yet:
// at 10k services that is ~80 MB of fresh memory, and faulting it in 4 KiB
// at a time cost this guest ~0.3 s of CPU, a third of `run --once`. So the
// heap grows now, by kHeapReserve past a block larger than its free top
// (address space only: pages are still touched lazily), and that range is
// advised as transparent huge pages, as glibc's `glibc.malloc.hugetlb=1`
// tunable would do. Relies on main()'s M_MMAP_THRESHOLD and M_TRIM_THRESHOLD
// (the block comes from the heap, its top stays after the free). Nothing
// changes where the kernel has THP off; failures are ignored (it is only
// faster).
void back_heap_with_huge_pages() {
  constexpr size_t kHeapReserve = size_t{256} << 20;
  constexpr size_t kGrow = size_t{64} << 20;
  constexpr uintptr_t kHugePage = uintptr_t{2} << 20;
  mallopt(M_TOP_PAD, static_cast<int>(kHeapReserve));
  const auto before = reinterpret_cast<uintptr_t>(::sbrk(0));
  void* volatile grow = std::malloc(kGrow);  // volatile: the pair must not be optimised out
  std::free(grow);
  const auto after = reinterpret_cast<uintptr_t>(::sbrk(0));
  const uintptr_t start = (before + kHugePage - 1) & ~(kHugePage - 1);
  if (before != static_cast<uintptr_t>(-1) && start < after) {
    ::madvise(reinterpret_cast<void*>(start), after - start, MADV_HUGEPAGE);
  }
}

namespace {

// --manifests: a path or file that cannot be read throws (one line), never an
// empty cluster: `rules | nft -f -` or `run --once` would remove every
// service. A readable directory without objects is an empty cluster, said once.
watch::DecodeResult load_manifests_or_throw(const std::string& path) {
  watch::DecodeResult decoded = watch::load_manifests(path);
  for (const auto& d : decoded.diagnostics) {
    if (d.scope == watch::Diagnostic::Scope::Unreadable)
      throw std::runtime_error("--manifests " + path + ": " + (d.file == path ? "" : d.file + ": ") + d.message);
  }
  const auto& s = decoded.state;
  if (s.services.empty() && s.endpoint_slices.empty() && s.nodes.empty() && s.service_cidrs.empty())
    std::cerr << "svcproxy: warning: --manifests " << path
              << " holds no Service, EndpointSlice, Node or ServiceCIDR; the cluster is empty\n";
  return decoded;
}

}  // namespace

void add_source_flags(CLI::App& cmd, SourceFlags& flags) {
  cmd.add_option("--manifests", flags.manifests,
                 "File or directory of Kubernetes objects (kubectl get -o yaml|json output); a path or file "
                 "that cannot be read is an error (exit 1), never an empty cluster");
  cmd.add_option("--kubeconfig", flags.kubeconfig, "Read the cluster from the API server of this kubeconfig (token, tokenFile, client "
                 "certificate or exec credential plugin, as kubectl)");
  cmd.add_option("--master", flags.master, "The API server's URL (overrides the kubeconfig's server)");
  cmd.add_option("--request-timeout", flags.request_timeout,
                 "How long to keep trying the API server (transient failures are retried) (default 30s)");
  cmd.add_flag("--strict", flags.strict, "Exit 1 if any object was skipped as unusable");
}

void require_source(const SourceFlags& flags) {
  if (!flags.manifests.empty() && flags.api()) throw FlagError("--manifests and --kubeconfig/--master: pick one");
  if (flags.manifests.empty() && !flags.api()) {
    throw FlagError(
        "--manifests or --kubeconfig: required (where the cluster's objects come from; in a pod, the "
        "service account is used)");
  }
}

// The cluster from --manifests, or listed once from the API server; a server
// that cannot be read throws (one line), never an empty cluster.
watch::DecodeResult load_cluster(const SourceFlags& source, const NodeFlags& node_flags) {
  if (!source.api()) return load_manifests_or_throw(source.manifests);
  const watch::ClientConfig config =
      watch::resolve_client_config(source.kubeconfig, source.master, [](const char* name) { return std::getenv(name); });
  watch::ApiSourceOptions options;
  options.request_timeout = parse_duration("--request-timeout", source.request_timeout, false);
  options.node_name = node_name(node_flags);
  watch::DecodeResult out;
  const std::string url = config.url();
  // Unusable objects become diagnostics; retries stay quiet (the final error
  // says why); warnings (insecure TLS) are shown.
  auto log = [&](const std::string& line) {
    if (line.starts_with("skipped ")) {
      out.diagnostics.push_back({.file = url, .kind = "", .object = "", .field = "", .message = line.substr(8)});
    } else if (line.find("retrying") == std::string::npos) {
      std::cerr << "svcproxy: " << line << "\n";
    }
  };
  out.state = watch::list_cluster(config, options, log);
  return out;
}

Compiled load_and_compile(const SourceFlags& source, const NodeFlags& node_flags) {
  require_source(source);
  back_heap_with_huge_pages();
  Compiled out;
  auto decoded = load_cluster(source, node_flags);
  for (const auto& d : decoded.diagnostics) std::cerr << d.str() << "\n";
  // Offline: the node's addresses are its node IPs, not this machine's.
  std::vector<std::string> node_warnings;
  out.node = resolve_node_config(node_flags, decoded.state, offline_node_addresses(node_flags, decoded.state),
                                 &node_warnings);
  for (const auto& w : node_warnings) std::cerr << w << "\n";
  auto state = model::build_proxy_state(decoded.state, out.node);
  for (const auto& s : state.skipped) std::cerr << "skipped " << s.object.str() << ": " << s.reason << "\n";
  out.result = dataplane::compile(state.ports, out.node);
  for (const auto& w : out.result.warnings) std::cerr << w << "\n";
  out.had_problems = !decoded.diagnostics.empty() || !state.skipped.empty() || !out.result.warnings.empty();
  return out;
}

// Go-style durations as kube-proxy's flags take them: "250ms", "30s", "1m", "1h".
std::chrono::milliseconds parse_duration(const char* flag, const std::string& text, bool zero_ok) {
  size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  const std::string unit = text.substr(used);
  double ms = -1;
  if (used == 0) ms = -1;
  else if (unit == "ms") ms = value;
  else if (unit == "s") ms = value * 1000;
  else if (unit == "m") ms = value * 60000;
  else if (unit == "h") ms = value * 3600000;
  if (zero_ok && used > 0 && value == 0 && (unit == "s" || unit == "ms" || unit == "m" || unit == "h" || unit.empty()))
    return std::chrono::milliseconds(0);
  if (ms <= 0) throw FlagError(std::string(flag) + ": invalid duration \"" + text + "\" (want e.g. 500ms, 30s, 1m)");
  return std::chrono::milliseconds(static_cast<long long>(ms));
}

}  // namespace svcproxy::proxy
