// The CLI: `svcproxy <command> [flags]`. Parse errors and bad flag values
// exit 2 with one line naming the flag.
#pragma once

namespace svcproxy::proxy {

int run_cli(int argc, char** argv);

}  // namespace svcproxy::proxy
