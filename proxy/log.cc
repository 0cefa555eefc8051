#include "proxy/log.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <ctime>
#include <ostream>

#include "base/json.h"

namespace svcproxy::proxy {
namespace {

std::string_view base_name(const char* path) {
  std::string_view p(path);
  const auto slash = p.rfind('/');
  return slash == std::string_view::npos ? p : p.substr(slash + 1);
}

}  // namespace

LogField::LogField(std::string_view k, double v) : key(k), quoted(false) {
  if (!std::isfinite(v)) {
    text = std::isnan(v) ? "NaN" : (v > 0 ? "+Inf" : "-Inf");
    quoted = true;  // not a JSON number
    return;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.6g", v);
  text = buf;
}

std::string log_quote(std::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

Log::Log(std::ostream& out, int verbosity, LogFormat format)
    : out_(out), verbosity_(verbosity), format_(format), pid_(static_cast<int32_t>(getpid())) {}

void Log::write(Severity severity, int level, std::string_view message, LogFields fields, LogSite where) {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  const std::string_view file = base_name(where.file_name());
  std::string line;
  line.reserve(128 + message.size());
  if (format_ == LogFormat::Text) {
    tm parts;
    gmtime_r(&ts.tv_sec, &parts);
    char head[96];
    std::snprintf(head, sizeof head, "%c%02d%02d %02d:%02d:%02d.%06ld %7d ", static_cast<char>(severity),
                  parts.tm_mon + 1, parts.tm_mday, parts.tm_hour, parts.tm_min, parts.tm_sec, ts.tv_nsec / 1000,
                  pid_);
    line += head;
    line += file;
    line += ':';
    line += std::to_string(where.line());
    line += "] ";
    // One event, one line: a message never breaks the line.
    for (const char c : message) line += (c == '\n' || c == '\r') ? ' ' : c;
    for (const auto& f : fields) {
      line += ' ';
      line += f.key;
      line += '=';
      line += f.quoted ? log_quote(f.text) : f.text;
    }
  } else {
    char stamp[48];
    std::snprintf(stamp, sizeof stamp, "%lld.%06ld", static_cast<long long>(ts.tv_sec), ts.tv_nsec / 1000);
    line += "{\"ts\":";
    line += stamp;
    line += ",\"caller\":";
    base::append_json_string(line, std::string(file) + ":" + std::to_string(where.line()));
    if (severity != Severity::Info) line += severity == Severity::Error ? ",\"severity\":\"error\"" : ",\"severity\":\"warning\"";
    line += ",\"v\":" + std::to_string(level) + ",\"msg\":";
    base::append_json_string(line, message);
    for (const auto& f : fields) {
      line += ',';
      base::append_json_string(line, f.key);
      line += ':';
      if (f.quoted) {
        base::append_json_string(line, f.text);
      } else {
        line += f.text;
      }
    }
    line += '}';
  }
  line += '\n';
  std::lock_guard lock(mutex_);
  out_ << line;
  out_.flush();
}

}  // namespace svcproxy::proxy
