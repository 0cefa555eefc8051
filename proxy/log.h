// The daemon's log: one line per event, with key=value context, in klog's
// text shape (what kube-proxy operators grep for) or as JSON lines (what log
// pipelines parse), at kube-proxy's verbosity levels (-v N).
//
//   text: I1128 06:13:21.123456    1234 run.cc:42] sync done reason="start" mode="full" operations=12
//   json: {"ts":1795846401.123456,"caller":"run.cc:42","v":0,"msg":"sync done","reason":"start",...}
//
// Thread-safe: the watch thread logs too; each line is written whole.
//
// Written here rather than through spdlog: the fields, klog's quoting and
// the JSON typing are ours either way, and spdlog's pattern flags would
// only replace the few lines that write the header (time, pid, caller),
// at the cost of two more shared libraries and a line whose shape is split
// between a pattern string and this code (JSON's optional "severity" needs
// a custom flag). ./dev does not install spdlog or fmt.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <iosfwd>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>

#include "proxy/modes.h"

namespace svcproxy::proxy {

// One key=value of a log line. Strings are quoted in text lines (klog's
// structured style), numbers and booleans are not.
struct LogField {
  LogField(std::string_view k, std::string_view v) : key(k), text(v), quoted(true) {}
  LogField(std::string_view k, const char* v) : key(k), text(v), quoted(true) {}
  LogField(std::string_view k, const std::string& v) : key(k), text(v), quoted(true) {}
  LogField(std::string_view k, bool v) : key(k), text(v ? "true" : "false"), quoted(false) {}
  template <typename Int>
    requires std::is_integral_v<Int>
  LogField(std::string_view k, Int v) : key(k), text(std::to_string(v)), quoted(false) {}
  LogField(std::string_view k, double v);

  std::string_view key;
  std::string text;
  bool quoted;
};

using LogFields = std::initializer_list<LogField>;

// Where a log line was written: the caller's file and line, taken by the
// default argument at the call site. std::source_location would do, but
// clang 14 (clang-tidy in ./dev test) cannot compile GCC 12's
// <source_location>; the builtins below exist in both compilers.
struct LogSite {
  static constexpr LogSite here(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
    return {file, line};
  }
  const char* file_name() const { return file_; }
  unsigned line() const { return line_; }

  const char* file_;
  unsigned line_;
};

class Log {
 public:
  enum class Severity : char { Info = 'I', Warning = 'W', Error = 'E' };

  // Lines above `verbosity` (v(level) with level > verbosity) are dropped.
  Log(std::ostream& out, int verbosity = 0, LogFormat format = LogFormat::Text);

  void info(std::string_view message, LogFields fields = {}, LogSite where = LogSite::here()) {
    write(Severity::Info, 0, message, fields, where);
  }
  void warning(std::string_view message, LogFields fields = {}, LogSite where = LogSite::here()) {
    write(Severity::Warning, 0, message, fields, where);
  }
  void error(std::string_view message, LogFields fields = {}, LogSite where = LogSite::here()) {
    write(Severity::Error, 0, message, fields, where);
  }
  // An info line shown only at -v `level` or higher.
  void v(int level, std::string_view message, LogFields fields = {}, LogSite where = LogSite::here()) {
    if (enabled(level)) write(Severity::Info, level, message, fields, where);
  }
  bool enabled(int level) const { return level <= verbosity_; }

  void write(Severity severity, int level, std::string_view message, LogFields fields, LogSite where);

 private:
  std::ostream& out_;
  const int verbosity_;
  const LogFormat format_;
  const int32_t pid_;
  std::mutex mutex_;
};

// klog quoting of a value: "..." with \" \\ \n \t and \xNN escaped.
std::string log_quote(std::string_view text);

}  // namespace svcproxy::proxy
