#include <algorithm>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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
  // The first byte at or after `p` that is one of C..., or `end`. Sixteen
  // bytes at a time: indented JSON is mostly spaces and short strings, which
  // a byte loop (or a memchr per string) walks slowly.
  template <char... C>
  static const char* find_any(const char* p, const char* end) {
#if defined(__SSE2__)
    while (end - p >= 16) {
      const __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
      const __m128i hits = (_mm_cmpeq_epi8(block, _mm_set1_epi8(C)) | ...);
      if (const int mask = _mm_movemask_epi8(hits); mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
      p += 16;
    }
#endif
    while (p < end && ((*p != C) && ...)) ++p;
    return p;
  }

  bool skip_string() {  // at '"'
    if (p_ == end_ || *p_ != '"') return false;
    ++p_;
    for (;;) {
      const char* q = find_any<'"', '\\'>(p_, end_);
      if (q == end_) return false;
      if (*q == '\\') {  // an escape: skip it and the character it escapes
        if (end_ - q < 2) return false;
        p_ = q + 2;
        continue;
      }
      p_ = q + 1;
      return true;
    }
  }

  bool skip_nested() {  // at '{' or '['
    size_t depth = 0;
    for (;;) {
      p_ = find_any<'"', '{', '}', '[', ']'>(p_, end_);
      if (p_ == end_) return false;
      const char c = *p_;
      if (c == '"') {
        if (!skip_string()) return false;
        continue;
      }
      ++p_;
      if (c == '{' || c == '[') {
        ++depth;
      } else if (--depth == 0) {
        return true;
      }
    }
  }

  const char* p_;
  const char* end_;
};

}  // namespace

bool split_json_list(std::string_view text, JsonListView& out) {
  return split_json_list(text, out, [&out](size_t, std::string_view item) {
    out.items.push_back(item);
    return true;
  });
}

bool split_json_list(std::string_view text, JsonListView& out,
                     const std::function<bool(size_t, std::string_view)>& on_item) {
  out = JsonListView();
  Scanner scan(text);
  if (!scan.eat('{')) return false;
  if (scan.eat('}')) return scan.at_end();
  size_t index = 0;
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
          if (!on_item(index++, value)) return false;
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
