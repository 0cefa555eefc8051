// The fixture API server (tests/fixtures/apiserver.py) as a child process,
// driven by JSON commands on its stdin; one reply line each on its stdout.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>

extern char** environ;

namespace svcproxy::watch::testing {

inline std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// Pulls "key":"value" or "key":number out of a flat reply (good enough for
// the fixture's replies).
inline std::string json_field(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  at += needle.size();
  while (at < json.size() && json[at] == ' ') ++at;
  if (at < json.size() && json[at] == '"') {
    const size_t end = json.find('"', at + 1);
    return json.substr(at + 1, end - at - 1);
  }
  size_t end = at;
  while (end < json.size() && json[end] != ',' && json[end] != '}') ++end;
  return json.substr(at, end - at);
}

class FixtureProcess {
 public:
  // `pki_dir` empty: plain HTTP.
  explicit FixtureProcess(const std::string& pki_dir, double bookmark_interval = 0.3, int seed = 1,
                          const std::string& host = "127.0.0.1") {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    const std::string script = std::string(SVCPROXY_SOURCE_DIR) + "/tests/fixtures/apiserver.py";
    std::vector<std::string> args = {"python3", script, "--bookmark-interval", std::to_string(bookmark_interval),
                                     "--seed", std::to_string(seed), "--host", host};
    if (!pki_dir.empty()) {
      args.push_back("--pki");
      args.push_back(pki_dir);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    if (posix_spawnp(&pid_, "python3", &actions, nullptr, argv.data(), environ) != 0) {
      throw std::runtime_error("cannot start the fixture");
    }
    posix_spawn_file_actions_destroy(&actions);
    close(in[0]);
    close(out[1]);
    to_ = fdopen(in[1], "w");
    from_ = fdopen(out[0], "r");
    const std::string hello = read_line();
    url_ = json_field(hello, "url");
    port_ = json_field(hello, "port");
    if (url_.empty()) throw std::runtime_error("the fixture did not start: " + hello);
  }

  ~FixtureProcess() {
    if (to_ != nullptr) fclose(to_);
    if (from_ != nullptr) fclose(from_);
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }

  const std::string& url() const { return url_; }
  const std::string& port() const { return port_; }

  // Sends one command (a JSON object) and returns the reply line.
  std::string command(const std::string& json) {
    std::fputs((json + "\n").c_str(), to_);
    std::fflush(to_);
    return read_line();
  }

  std::string apply(const std::string& resource, const std::string& object) {
    return command(R"({"op":"apply","resource":")" + resource + R"(","object":)" + object + "}");
  }
  std::string remove(const std::string& resource, const std::string& ns, const std::string& name) {
    return command(R"({"op":"delete","resource":")" + resource + R"(","namespace":")" + ns + R"(","name":")" + name +
                   "\"}");
  }
  std::string fault(const std::string& fields) { return command(R"({"op":"fault",)" + fields + "}"); }

 private:
  std::string read_line() {
    std::string line;
    int c;
    while ((c = std::fgetc(from_)) != EOF && c != '\n') line += static_cast<char>(c);
    return line;
  }

  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
  std::string url_;
  std::string port_;
};

}  // namespace svcproxy::watch::testing
