// Where the cluster comes from, as every command that reads it takes it
// (rules, trace, run --once, loadtest): --manifests, or the API server
// (--kubeconfig / --master). Shared so that a new command takes exactly the
// same flags with the same messages.
#pragma once

#include <chrono>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>

#include "dataplane/compile.h"
#include "model/node_config.h"
#include "proxy/node_flags.h"
#include "watch/manifests.h"

namespace svcproxy::proxy {

struct SourceFlags {
  std::string manifests;
  std::string kubeconfig;
  std::string master;
  std::string request_timeout = "30s";
  bool strict = false;
  // The API server: named by a flag, or (without --manifests) by
  // $KUBECONFIG or the in-cluster service account's environment.
  bool api() const {
    return !kubeconfig.empty() || !master.empty() ||
           (manifests.empty() && (std::getenv("KUBECONFIG") || std::getenv("KUBERNETES_SERVICE_HOST")));
  }
};

void add_source_flags(CLI::App& cmd, SourceFlags& flags);

// Exactly one source; throws FlagError otherwise.
void require_source(const SourceFlags& flags);

// Go-style durations as kube-proxy's flags take them: "250ms", "30s", "1m",
// "1h"; throws FlagError naming `flag`.
std::chrono::milliseconds parse_duration(const char* flag, const std::string& text, bool zero_ok = false);

// For one-shot commands about to build a large cluster's state (rules,
// trace, run --once): grows the heap once, backed by transparent huge pages,
// instead of faulting it in 4 KiB at a time. Long-running commands skip it.
void back_heap_with_huge_pages();

// The cluster from --manifests, or listed once from the API server; a path
// or server that cannot be read throws (one line), never an empty cluster.
watch::DecodeResult load_cluster(const SourceFlags& source, const NodeFlags& node_flags);

// The cluster as compiled for this node, with every problem already
// reported on stderr (one line each).
struct Compiled {
  model::NodeConfig node;
  dataplane::CompileResult result;
  bool had_problems = false;
};

Compiled load_and_compile(const SourceFlags& source, const NodeFlags& node_flags);

}  // namespace svcproxy::proxy
