#include "watch/process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "base/unique_fd.h"

namespace svcproxy::watch {
namespace {

using Clock = std::chrono::steady_clock;

using base::UniqueFd;

struct Pipe {
  UniqueFd read, write;
};

bool make_pipe(Pipe& out) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return false;
  out.read = UniqueFd(fds[0]);
  out.write = UniqueFd(fds[1]);
  return true;
}

struct FileActions {
  FileActions() { posix_spawn_file_actions_init(&actions); }
  ~FileActions() { posix_spawn_file_actions_destroy(&actions); }
  posix_spawn_file_actions_t actions;
};

struct SpawnAttributes {
  SpawnAttributes() { posix_spawnattr_init(&attributes); }
  ~SpawnAttributes() { posix_spawnattr_destroy(&attributes); }
  posix_spawnattr_t attributes;
};

std::vector<char*> c_strings(std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (auto& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Reads the captured streams until both end, the deadline passes or one
// grows past the limit. Returns the outcome that stopped it, if any.
std::optional<ProcessResult::Outcome> drain(std::vector<std::pair<UniqueFd*, std::string*>> streams,
                                            Clock::time_point deadline, size_t max_output) {
  std::array<char, 16 * 1024> buffer;
  for (;;) {
    std::vector<pollfd> polled;
    std::vector<size_t> which;
    for (size_t i = 0; i < streams.size(); ++i) {
      if (streams[i].first->get() < 0) continue;
      polled.push_back({.fd = streams[i].first->get(), .events = POLLIN, .revents = 0});
      which.push_back(i);
    }
    if (polled.empty()) return std::nullopt;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return ProcessResult::Outcome::TimedOut;
    const int ready = ::poll(polled.data(), polled.size(), static_cast<int>(std::min<long long>(left, 60000)));
    if (ready < 0 && errno != EINTR) return ProcessResult::Outcome::TimedOut;
    for (size_t i = 0; i < polled.size() && ready > 0; ++i) {
      if (polled[i].revents == 0) continue;
      auto& [fd, text] = streams[which[i]];
      const ssize_t n = ::read(fd->get(), buffer.data(), buffer.size());
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {
        fd->reset();
        continue;
      }
      if (text->size() + static_cast<size_t>(n) > max_output) return ProcessResult::Outcome::OutputTooLarge;
      text->append(buffer.data(), static_cast<size_t>(n));
    }
  }
}

// A plugin may close its output and still run: wait for its exit with the
// same deadline (pidfd; without one, waitpid alone).
bool exits_before(pid_t pid, Clock::time_point deadline) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd.get() < 0) return true;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd polled{.fd = pidfd.get(), .events = POLLIN, .revents = 0};
    const int ready = ::poll(&polled, 1, static_cast<int>(std::min<long long>(left, 60000)));
    if (ready > 0) return true;
    if (ready < 0 && errno != EINTR) return true;
  }
}

class PosixProcessRunner final : public ProcessRunner {
 public:
  ProcessResult run(const ProcessRequest& request) override {
    ProcessResult result;
    Pipe out, err;
    if (!make_pipe(out) || !make_pipe(err)) return spawn_failed(result, std::strerror(errno));
    FileActions files;
    SpawnAttributes attributes;
    // The daemon blocks SIGTERM/SIGINT/SIGHUP for its signalfd and the
    // userspace proxy SIGPIPE: the plugin starts with none blocked and
    // those at their defaults.
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (const int signal : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD}) sigaddset(&defaults, signal);
    posix_spawnattr_setsigmask(&attributes.attributes, &none);
    posix_spawnattr_setsigdefault(&attributes.attributes, &defaults);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (!request.interactive) {
      posix_spawn_file_actions_addopen(&files.actions, 0, "/dev/null", O_RDONLY, 0);
      posix_spawn_file_actions_adddup2(&files.actions, err.write.get(), 2);
      // A group of its own: a timeout kills what the plugin started too. An
      // interactive plugin stays in the terminal's foreground group.
      posix_spawnattr_setpgroup(&attributes.attributes, 0);
      flags |= POSIX_SPAWN_SETPGROUP;
    }
    posix_spawnattr_setflags(&attributes.attributes, flags);
    posix_spawn_file_actions_adddup2(&files.actions, out.write.get(), 1);
    std::vector<std::string> argv_strings{request.command};
    argv_strings.insert(argv_strings.end(), request.args.begin(), request.args.end());
    std::vector<std::string> env_strings = request.env;
    const auto argv = c_strings(argv_strings);
    const auto envp = c_strings(env_strings);
    pid_t pid = 0;
    const int rc = ::posix_spawnp(&pid, request.command.c_str(), &files.actions, &attributes.attributes, argv.data(), envp.data());
    if (rc == ENOENT) {
      result.outcome = ProcessResult::Outcome::NotFound;
      return result;
    }
    if (rc != 0) return spawn_failed(result, std::strerror(rc));
    out.write.reset();
    err.write.reset();
    std::vector<std::pair<UniqueFd*, std::string*>> streams{{&out.read, &result.out}};
    if (!request.interactive) streams.emplace_back(&err.read, &result.err);
    const auto deadline = Clock::now() + request.timeout;
    auto stopped = drain(streams, deadline, request.max_output);
    if (!stopped && !exits_before(pid, deadline)) stopped = ProcessResult::Outcome::TimedOut;
    if (stopped) ::kill(request.interactive ? pid : -pid, SIGKILL);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (stopped) {
      result.outcome = *stopped;
    } else if (WIFSIGNALED(status)) {
      result.outcome = ProcessResult::Outcome::Signaled;
      result.signal = WTERMSIG(status);
    } else {
      result.exit_code = WEXITSTATUS(status);
    }
    return result;
  }

  bool stdin_is_terminal() override { return ::isatty(0) == 1; }

 private:
  static ProcessResult& spawn_failed(ProcessResult& result, std::string why) {
    result.outcome = ProcessResult::Outcome::SpawnFailed;
    result.error = std::move(why);
    return result;
  }
};

}  // namespace

std::shared_ptr<ProcessRunner> system_process_runner() { return std::make_shared<PosixProcessRunner>(); }

}  // namespace svcproxy::watch
