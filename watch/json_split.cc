#include <algorithm>
#include <cstdint>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "watch/json_node.h"

namespace svcproxy::watch::detail {

namespace ondemand = simdjson::ondemand;

namespace {

// A forward scanner over JSON text that finds the extent of values without
// building anything: strings are skipped sixteen bytes at a time, nesting is
// counted. It is lenient inside values (the DOM parser validates each item
// later) and strict about the envelope's separators. When the text runs out
// before a token is complete, `truncated()` says so: with more text the same
// token may turn out well-formed.
class Scanner {
 public:
  explicit Scanner(std::string_view text) : p_(text.data()), end_(text.data() + text.size()) {}

  const char* position() const { return p_; }
  bool truncated() const { return truncated_; }

  void skip_space() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }
  bool eat(char c) {
    skip_space();
    if (p_ == end_) return ran_out();
    if (*p_ != c) return false;
    ++p_;
    return true;
  }
  char peek() {
    skip_space();
    if (p_ == end_) {
      truncated_ = true;
      return '\0';
    }
    return *p_;
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
    if (p_ == end_) return ran_out();
    if (*p_ == '"') {
      if (!skip_string()) return false;
    } else if (*p_ == '{' || *p_ == '[') {
      if (!skip_nested()) return false;
    } else {
      while (p_ < end_ && *p_ != ',' && *p_ != '}' && *p_ != ']' && *p_ != ' ' && *p_ != '\n' && *p_ != '\r' &&
             *p_ != '\t') {
        ++p_;
      }
      if (p_ == end_) truncated_ = true;  // a number or literal may go on
      if (p_ == start) return false;
    }
    out = std::string_view(start, static_cast<size_t>(p_ - start));
    return true;
  }

 private:
  bool ran_out() {
    truncated_ = true;
    return false;
  }

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
    if (p_ == end_) return ran_out();
    if (*p_ != '"') return false;
    const char* q = p_ + 1;
    for (;;) {
      q = find_any<'"', '\\'>(q, end_);
      if (q == end_) return ran_out();
      if (*q == '\\') {  // an escape: skip it and the character it escapes
        if (end_ - q < 2) return ran_out();
        q += 2;
        continue;
      }
      p_ = q + 1;
      return true;
    }
  }

  bool skip_nested() {  // at '{' or '['
    size_t depth = 0;
    const char* scalar_until = p_;  // bytes before this are walked one structural at a time
    for (;;) {
#if defined(__SSE2__)
      if (p_ >= scalar_until && end_ - p_ >= 64) {
        switch (nested_block(depth)) {
          case Block::Closed:
            return true;
          case Block::Open:
            break;
          case Block::Escape:
            scalar_until = p_ + 64;
            break;
          case Block::RanOut:
            return false;
        }
        continue;
      }
#endif
      p_ = find_any<'"', '{', '}', '[', ']'>(p_, end_);
      if (p_ == end_) return ran_out();
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

#if defined(__SSE2__)
  // Bit i set where byte i of the 64 at `p` is one of C...
  template <char... C>
  static uint64_t block_mask(const char* p) {
    uint64_t mask = 0;
    for (int i = 0; i < 4; ++i) {
      const __m128i block = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * i));
      const __m128i hits = (_mm_cmpeq_epi8(block, _mm_set1_epi8(C)) | ...);
      mask |= static_cast<uint64_t>(static_cast<uint32_t>(_mm_movemask_epi8(hits))) << (16 * i);
    }
    return mask;
  }

  // The 64 bytes at p_ (outside any string) as bit masks, so that strings
  // cost nothing one by one: each bit of `inside` is the parity of the quotes
  // up to it (set from an opening quote to just before its closing one).
  // Moves p_ past what it settled. Escape (p_ unmoved): the block holds a
  // backslash, its bytes are left to the byte-wise walk.
  enum class Block { Closed, Open, Escape, RanOut };
  Block nested_block(size_t& depth) {
    if (block_mask<'\\'>(p_) != 0) return Block::Escape;
    const uint64_t quotes = block_mask<'"'>(p_);
    uint64_t inside = quotes;
    for (int shift = 1; shift < 64; shift *= 2) inside ^= inside << shift;
    uint64_t structural = block_mask<'{', '}', '[', ']'>(p_) & ~inside;
    int settled = 64;
    if (inside >> 63) {  // a string runs past the block: stop at its opening quote
      settled = 63 - __builtin_clzll(quotes);
      if (settled == 0) return skip_string() ? Block::Open : Block::RanOut;  // a string longer than the block
      structural &= (uint64_t{1} << settled) - 1;
    }
    for (; structural != 0; structural &= structural - 1) {
      const int at = __builtin_ctzll(structural);
      const char c = p_[at];
      if (c == '{' || c == '[') {
        ++depth;
      } else if (--depth == 0) {
        p_ += at + 1;
        return Block::Closed;
      }
    }
    p_ += settled;
    return Block::Open;
  }
#endif

  const char* p_;
  const char* end_;
  bool truncated_ = false;
};

}  // namespace

JsonListSplitter::Step JsonListSplitter::next(std::string_view text, bool final, size_t& consumed,
                                              std::string_view& item) {
  for (;;) {
    Scanner scan(text.substr(consumed));
    // One token of the envelope (or one item) per turn; `commit` moves past
    // it. A token cut off by the end of `text` is looked at again once more
    // text has come.
    const auto commit = [&] { consumed = static_cast<size_t>(scan.position() - text.data()); };
    const auto stuck = [&] { return scan.truncated() && !final ? Step::NeedMore : Step::Malformed; };
    switch (state_) {
      case State::Open:
        if (!scan.eat('{')) return stuck();
        if (scan.truncated() && !final) return Step::NeedMore;
        commit();
        state_ = State::FirstKey;
        continue;
      case State::FirstKey:
        if (scan.peek() == '}') {
          scan.eat('}');
          commit();
          state_ = State::Trailing;
          continue;
        }
        if (scan.truncated()) return stuck();
        state_ = State::Key;
        continue;
      case State::Key: {
        std::string_view key;
        if (!scan.simple_string(key) || !scan.eat(':')) return stuck();
        if (key == "items") {
          if (!scan.eat('[')) return stuck();
          if (scan.truncated() && !final) return Step::NeedMore;
          commit();
          list_.has_items = true;
          state_ = State::FirstItem;
        } else if (key == "kind" || key == "apiVersion") {
          std::string_view value;
          if (scan.peek() != '"' || !scan.simple_string(value)) return stuck();
          if (scan.truncated() && !final) return Step::NeedMore;
          commit();
          (key == "kind" ? list_.kind : list_.api_version) = std::string(value);
          state_ = State::AfterValue;
        } else {
          std::string_view value;
          if (!scan.value(value)) return stuck();
          if (scan.truncated() && !final) return Step::NeedMore;
          commit();
          if (key == "metadata") list_.metadata = value;
          state_ = State::AfterValue;
        }
        continue;
      }
      case State::FirstItem:
        if (scan.peek() == ']') {
          scan.eat(']');
          commit();
          state_ = State::AfterValue;
          continue;
        }
        if (scan.truncated()) return stuck();
        state_ = State::Item;
        continue;
      case State::Item:
        if (scan.peek() != '{' || !scan.value(item)) return stuck();
        commit();
        state_ = State::AfterItem;
        ++items_;
        return Step::Item;
      case State::AfterItem:
        if (scan.peek() == ']') {
          scan.eat(']');
          commit();
          state_ = State::AfterValue;
        } else if (scan.eat(',')) {
          commit();
          state_ = State::Item;
        } else {
          return stuck();
        }
        continue;
      case State::AfterValue:
        if (scan.peek() == '}') {
          scan.eat('}');
          commit();
          state_ = State::Trailing;
        } else if (scan.eat(',')) {
          commit();
          state_ = State::Key;
        } else {
          return stuck();
        }
        continue;
      case State::Trailing:
        scan.skip_space();
        if (scan.position() != text.data() + text.size()) return Step::Malformed;
        commit();
        return final ? Step::End : Step::NeedMore;
    }
  }
}

bool split_json_list(std::string_view text, JsonListView& out) {
  return split_json_list(text, out, [&out](size_t, std::string_view item) {
    out.items.push_back(item);
    return true;
  });
}

bool split_json_list(std::string_view text, JsonListView& out,
                     const std::function<bool(size_t, std::string_view)>& on_item) {
  out = JsonListView();
  JsonListSplitter splitter;
  size_t consumed = 0;
  std::string_view item;
  bool ok = false;
  for (bool done = false; !done;) {
    switch (splitter.next(text, true, consumed, item)) {
      case JsonListSplitter::Step::Item:
        done = !on_item(splitter.items() - 1, item);
        break;
      case JsonListSplitter::Step::End:
        ok = done = true;
        break;
      case JsonListSplitter::Step::NeedMore:
      case JsonListSplitter::Step::Malformed:
        done = true;
        break;
    }
  }
  const JsonListView& list = splitter.list();
  out.kind = list.kind;
  out.api_version = list.api_version;
  out.metadata = list.metadata;
  out.has_items = list.has_items;
  return ok;
}

size_t count_newlines(std::string_view text) {
  const char* p = text.data();
  const char* const end = p + text.size();
  size_t count = 0;
#if defined(__SSE2__)
  // Per byte lane, 0 - (matches) in up to 255 blocks, then summed by SAD.
  const __m128i newline = _mm_set1_epi8('\n');
  while (end - p >= 16) {
    __m128i lanes = _mm_setzero_si128();
    for (int i = 0; i < 255 && end - p >= 16; ++i, p += 16) {
      lanes = _mm_sub_epi8(lanes, _mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)), newline));
    }
    const __m128i sums = _mm_sad_epu8(lanes, _mm_setzero_si128());
    count += static_cast<size_t>(_mm_cvtsi128_si64(sums)) + static_cast<size_t>(_mm_extract_epi16(sums, 4));
  }
#endif
  for (; p < end; ++p) count += *p == '\n';
  return count;
}

int locate_line(std::string_view object, const std::string& pointer) {
  ondemand::parser parser;
  ondemand::document doc;
  if (parser.iterate(simdjson::padded_string_view(object.data(), object.size(), object.size() + simdjson::SIMDJSON_PADDING))
          .get(doc)) {
    return -1;
  }
  std::string_view token;
  if (pointer.empty()) {
    token = object;
  } else {
    ondemand::value value;
    if (doc.at_pointer(pointer).get(value)) return -1;
    token = value.raw_json_token();
  }
  if (token.data() < object.data() || token.data() > object.data() + object.size()) return -1;
  return static_cast<int>(count_newlines(object.substr(0, static_cast<size_t>(token.data() - object.data()))));
}

}  // namespace svcproxy::watch::detail
