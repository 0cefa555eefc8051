#include <algorithm>
#include <cstring>

#include "watch/json_node.h"

namespace svcproxy::watch::detail {

namespace ondemand = simdjson::ondemand;

namespace {

// A forward scanner over JSON text that finds the extent of values without
// building anything: strings are skipped with memchr, nesting is counted.
// It is lenient inside values (the DOM parser validates each item later) and
// strict about the envelope's separators.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

  void skip_space() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool at_end() {
    skip_space();
    return p_ == end_;
  }
  bool eat(char c) {
    skip_space();
    if (p_ == end_ || *p_ != c) return false;
    ++p_;
    return true;
  }
  char peek() {
    skip_space();
    return p_ == end_ ? '\0' : *p_;
  }

  // A string without escapes (keys and the kinds we compare); false otherwise.
  bool simple_string(std::string_view& out) {
    skip_space();
    const char* start = p_;
    if (!skip_string()) return false;
    out = std::string_view(start + 1, static_cast<size_t>(p_ - start - 2));
    return out.find('\\') == std::string_view::npos;
  }

  // Any value; `out` is its raw text.
  bool value(std::string_view& out) {
    skip_space();
    const char* start = p_;
    if (p_ == end_) return false;
    if (*p_ == '"') {
      if (!skip_string()) return false;
    } else if (*p_ == '{' || *p_ == '[') {
      if (!skip_nested()) return false;
    } else {
      while (p_ < end_ && *p_ != ',' && *p_ != '}' && *p_ != ']' && *p_ != ' ' && *p_ != '\n' && *p_ != '\r' &&
             *p_ != '\t') {
        ++p_;
      }
      if (p_ == start) return false;
    }
    out = std::string_view(start, static_cast<size_t>(p_ - start));
    return true;
  }

 private:
  bool skip_string() {  // at '"'
    if (p_ == end_ || *p_ != '"') return false;
    ++p_;
    for (;;) {
      const void* quote = std::memchr(p_, '"', static_cast<size_t>(end_ - p_));
      if (quote == nullptr) return false;
      const char* q = static_cast<const char*>(quote);
      size_t backslashes = 0;
      for (const char* b = q; b > p_ && b[-1] == '\\'; --b) ++backslashes;
      p_ = q + 1;
      if (backslashes % 2 == 0) return true;
    }
  }

  bool skip_nested() {  // at '{' or '['
    size_t depth = 0;
    while (p_ < end_) {
      const char c = *p_;
      if (c == '"') {
        if (!skip_string()) return false;
        continue;
      }
      ++p_;
      if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) return true;
      }
    }
    return false;
  }

  const char* p_;
  const char* end_;
};

}  // namespace

bool split_json_list(std::string_view text, JsonListView& out) {
  out = JsonListView();
  Scanner scan(text);
  if (!scan.eat('{')) return false;
  if (scan.eat('}')) return scan.at_end();
  for (;;) {
    std::string_view key;
    std::string_view value;
    if (!scan.simple_string(key) || !scan.eat(':')) return false;
    if (key == "items") {
      if (!scan.eat('[')) return false;
      out.has_items = true;
      if (!scan.eat(']')) {
        for (;;) {
          if (scan.peek() != '{' || !scan.value(value)) return false;
          out.items.push_back(value);
          if (scan.eat(']')) break;
          if (!scan.eat(',')) return false;
        }
      }
    } else if (key == "kind" || key == "apiVersion") {
      std::string_view text_value;
      if (scan.peek() != '"' || !scan.simple_string(text_value)) return false;
      (key == "kind" ? out.kind : out.api_version) = std::string(text_value);
    } else {
      if (!scan.value(value)) return false;
      if (key == "metadata") out.metadata = value;
    }
    if (scan.eat('}')) return scan.at_end();
    if (!scan.eat(',')) return false;
  }
}

int locate_line(std::string_view whole, std::string_view object, const std::string& pointer) {
  ondemand::parser parser;
  ondemand::document doc;
  const size_t capacity = static_cast<size_t>(whole.data() + whole.size() - object.data()) + simdjson::SIMDJSON_PADDING;
  if (parser.iterate(simdjson::padded_string_view(object.data(), object.size(), capacity)).get(doc)) return -1;
  std::string_view token;
  if (pointer.empty()) {
    token = object;
  } else {
    ondemand::value value;
    if (doc.at_pointer(pointer).get(value)) return -1;
    token = value.raw_json_token();
  }
  if (token.data() < whole.data() || token.data() > whole.data() + whole.size()) return -1;
  return 1 + static_cast<int>(std::count(whole.data(), token.data(), '\n'));
}

}  // namespace svcproxy::watch::detail
