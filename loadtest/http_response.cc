#include "loadtest/http_response.h"

#include <charconv>
#include <optional>

namespace svcproxy::loadtest {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] + 32) : a[i];
    const char y = b[i] >= 'A' && b[i] <= 'Z' ? static_cast<char>(b[i] + 32) : b[i];
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Length of a complete chunked body starting at `body`, or nullopt.
std::optional<size_t> chunked_length(std::string_view body) {
  size_t pos = 0;
  for (;;) {
    const size_t line_end = body.find("\r\n", pos);
    if (line_end == std::string_view::npos) return std::nullopt;
    size_t size = 0;
    std::from_chars(body.data() + pos, body.data() + line_end, size, 16);
    pos = line_end + 2;
    if (size == 0) {
      // Trailers end with an empty line.
      const size_t end = body.find("\r\n", pos);
      if (end == std::string_view::npos) return std::nullopt;
      if (end == pos) return pos + 2;
      const size_t trailers_end = body.find("\r\n\r\n", pos);
      if (trailers_end == std::string_view::npos) return std::nullopt;
      return trailers_end + 4;
    }
    if (body.size() < pos + size + 2) return std::nullopt;
    pos += size + 2;
  }
}

}  // namespace

HttpResponse parse_http_response(std::string_view data, std::string_view endpoint_header, bool eof) {
  HttpResponse r;
  const size_t head_end = data.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return r;
  std::string_view head = data.substr(0, head_end);
  const size_t first_end = head.find("\r\n");
  std::string_view status_line = head.substr(0, first_end);
  if (!status_line.starts_with("HTTP/1.") || status_line.size() < 12) return r;
  const bool http11 = status_line[7] == '1';
  std::from_chars(status_line.data() + 9, status_line.data() + 12, r.status);
  r.keep_alive = http11;
  std::optional<size_t> content_length;
  bool chunked = false;
  size_t pos = first_end == std::string_view::npos ? head.size() : first_end + 2;
  while (pos < head.size()) {
    size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos) end = head.size();
    std::string_view line = head.substr(pos, end - pos);
    pos = end + 2;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view name = trim(line.substr(0, colon));
    std::string_view value = trim(line.substr(colon + 1));
    if (iequals(name, "content-length")) {
      size_t n = 0;
      std::from_chars(value.data(), value.data() + value.size(), n);
      content_length = n;
    } else if (iequals(name, "transfer-encoding")) {
      chunked = value.find("chunked") != std::string_view::npos;
    } else if (iequals(name, "connection")) {
      if (iequals(value, "close")) r.keep_alive = false;
      if (iequals(value, "keep-alive")) r.keep_alive = true;
    } else if (!endpoint_header.empty() && iequals(name, endpoint_header)) {
      r.endpoint = std::string(value);
    }
  }
  std::string_view body = data.substr(head_end + 4);
  // 1xx, 204 and 304 carry no body.
  if ((r.status >= 100 && r.status < 200) || r.status == 204 || r.status == 304) {
    r.complete = true;
  } else if (chunked) {
    r.complete = chunked_length(body).has_value();
  } else if (content_length) {
    r.complete = body.size() >= *content_length;
  } else {
    r.keep_alive = false;
    r.complete = eof;
  }
  return r;
}

}  // namespace svcproxy::loadtest
