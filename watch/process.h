// Running a program: the one place svcproxy starts one (a kubeconfig's exec
// credential plugin). Behind an interface so that the plugin protocol can be
// tested with a fake; the real runner is posix_spawn with pipes, a deadline
// and bounded output.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace svcproxy::watch {

struct ProcessRequest {
  std::string command;            // a path (has a '/'), else a name looked up in $PATH
  std::vector<std::string> args;  // after argv[0]
  std::vector<std::string> env;   // the whole environment, NAME=value
  // Standard input and error are svcproxy's (a terminal: the plugin may
  // prompt); otherwise stdin is /dev/null and stderr is captured.
  bool interactive = false;
  std::chrono::milliseconds timeout{60000};
  size_t max_output = 1 << 20;  // per captured stream; more fails the run
};

struct ProcessResult {
  enum class Outcome { Exited, NotFound, SpawnFailed, TimedOut, Signaled, OutputTooLarge };
  Outcome outcome = Outcome::Exited;
  int exit_code = 0;  // Exited
  int signal = 0;     // Signaled
  std::string error;  // SpawnFailed: why
  std::string out;    // stdout
  std::string err;    // stderr (not when interactive)
};

class ProcessRunner {
 public:
  virtual ~ProcessRunner() = default;
  // Runs the program to its end (or kills it at the deadline). Never throws
  // for the program's own failures: they are the result's outcome.
  virtual ProcessResult run(const ProcessRequest& request) = 0;
  // Whether svcproxy's standard input is a terminal (interactiveMode).
  virtual bool stdin_is_terminal() = 0;
};

// posix_spawnp; a non-interactive program gets a process group of its own,
// killed whole at the deadline.
std::shared_ptr<ProcessRunner> system_process_runner();

}  // namespace svcproxy::watch
