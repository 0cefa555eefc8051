// `svcproxy status`: the /debug page's content in a terminal, from the
// running daemon (GET /debug/state on its metrics address) or, with --live,
// from the services svcproxy's tables hold in this network namespace.
#pragma once

#include <string>

namespace CLI {
class App;
}

namespace svcproxy::proxy {

struct StatusFlags {
  std::string metrics_bind_address = "127.0.0.1:10249";
  bool live = false;
  bool json = false;
  std::string filter;
};

void add_status_flags(CLI::App& cmd, StatusFlags& flags);
// The exit code: 0, or 1 when the daemon or the kernel could not be read.
int run_status(const StatusFlags& flags);

}  // namespace svcproxy::proxy
