// Internal to watch/: the Field adapter over simdjson DOM elements (see
// field.h). Every JSON scalar reads as text the way YAML would print it
// (numbers in their shortest form, true/false), so the field rules behave the
// same on JSON and YAML; numbers and booleans of the expected type take a
// fast path. The DOM has no positions: line() is -1 and decoders that want a
// line locate FieldError::pointer in the source text afterwards.
#pragma once

#include <simdjson.h>

#include <charconv>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "watch/field.h"

namespace svcproxy::watch::detail {

// YAML 1.1 booleans exactly as yaml-cpp's convert<bool> reads them.
bool yaml_bool_text(std::string_view text, bool& out);

class JsonNode {
 public:
  class Iterator {
   public:
    Iterator() = default;
    explicit Iterator(simdjson::dom::array::iterator it) : it_(it) {}
    JsonNode operator*() const { return JsonNode(*it_); }
    Iterator& operator++() {
      ++it_;
      return *this;
    }
    bool operator!=(const Iterator& other) const { return it_ != other.it_; }

   private:
    simdjson::dom::array::iterator it_;
  };

  JsonNode() = default;
  explicit JsonNode(simdjson::dom::element element) : element_(element) {}

  NodeType type() const {
    switch (element_.type()) {
      case simdjson::dom::element_type::OBJECT:
        return NodeType::Map;
      case simdjson::dom::element_type::ARRAY:
        return NodeType::List;
      case simdjson::dom::element_type::NULL_VALUE:
        return NodeType::Null;
      default:
        return NodeType::Scalar;
    }
  }

  bool find(const char* key, JsonNode& out) const {
    simdjson::dom::element child;
    if (simdjson::dom::object(element_.get_object().value_unsafe()).at_key(key).get(child)) return false;
    out = JsonNode(child);
    return true;
  }

  Iterator begin() const { return Iterator(element_.get_array().value_unsafe().begin()); }
  Iterator end() const { return Iterator(element_.get_array().value_unsafe().end()); }

  std::string_view scalar(Scratch& scratch) const {
    using simdjson::dom::element_type;
    switch (element_.type()) {
      case element_type::STRING:
        return element_.get_string().value_unsafe();
      case element_type::INT64:
        return format(scratch, element_.get_int64().value_unsafe());
      case element_type::UINT64:
        return format(scratch, element_.get_uint64().value_unsafe());
      case element_type::DOUBLE:
        return format(scratch, element_.get_double().value_unsafe());
      case element_type::BOOL:
        return element_.get_bool().value_unsafe() ? "true" : "false";
      default:
        return {};
    }
  }

  IntStatus to_int(int64_t& out) const {
    using simdjson::dom::element_type;
    switch (element_.type()) {
      case element_type::INT64:
        out = element_.get_int64().value_unsafe();
        return IntStatus::Ok;
      case element_type::UINT64:
        return IntStatus::OutOfRange;
      case element_type::STRING:
        return parse_int(element_.get_string().value_unsafe(), out);
      default:
        return IntStatus::NotInteger;
    }
  }

  bool to_bool(bool& out) const {
    using simdjson::dom::element_type;
    if (element_.type() == element_type::BOOL) {
      out = element_.get_bool().value_unsafe();
      return true;
    }
    if (element_.type() == element_type::STRING) return yaml_bool_text(element_.get_string().value_unsafe(), out);
    return false;
  }

  int line() const { return -1; }

 private:
  template <class T>
  static std::string_view format(Scratch& scratch, T value) {
    const auto result = std::to_chars(scratch.data(), scratch.data() + scratch.size(), value);
    return {scratch.data(), static_cast<size_t>(result.ptr - scratch.data())};
  }

  simdjson::dom::element element_;
};

}  // namespace svcproxy::watch::detail

namespace svcproxy::watch::detail {

// A JSON document whose root is a list object (kind *List with items),
// split without building a DOM of the whole: the raw text of each item, to be
// parsed one at a time. Keeps memory at one item's DOM for lists of any size.
struct JsonListView {
  std::string kind;
  std::string api_version;
  std::string_view metadata;          // raw text of metadata, empty if absent
  bool has_items = false;
  std::vector<std::string_view> items;  // raw text of each element (all objects)
};

// The same split, over text that arrives piece by piece: call next() with all
// the text not yet consumed (earlier text may be gone); it consumes envelope
// tokens and items and says what to do next. A token cut off by the end of
// the text is left unconsumed (NeedMore) until the text is `final`. Items
// are whole objects, their envelope is checked; each item is to be parsed
// later (the scanner is lenient inside values).
class JsonListSplitter {
 public:
  enum class Step {
    Item,      // `item` is the next item (a view into `text`)
    NeedMore,  // call again with more text after what `text` held
    End,       // the envelope is closed and only white space follows
    Malformed  // the root is not an object, an item is not one, or the envelope is broken
  };
  Step next(std::string_view text, bool final, size_t& consumed, std::string_view& item);

  // kind, apiVersion and has_items of the envelope as far as seen; metadata
  // is a view into the text it was in (valid only while that text is).
  const JsonListView& list() const { return list_; }
  size_t items() const { return items_; }  // items returned so far

 private:
  enum class State { Open, FirstKey, Key, FirstItem, Item, AfterItem, AfterValue, Trailing };
  State state_ = State::Open;
  JsonListView list_;
  size_t items_ = 0;
};

// Only the envelope is checked (each item is parsed later); returns false
// when the root is not an object, an item is not an object, or the envelope
// is not well-formed, and the caller then parses the document whole.
bool split_json_list(std::string_view text, JsonListView& out);

// The same, handing each item to `on_item(index, raw_text)` as soon as it is
// found (while it is still in cache) instead of collecting `out.items`. The
// envelope's kind may come after the items (kubectl prints it there). Returns
// false when the envelope is not well-formed or `on_item` returns false.
bool split_json_list(std::string_view text, JsonListView& out,
                     const std::function<bool(size_t, std::string_view)>& on_item);

// The number of '\n' in `text`.
size_t count_newlines(std::string_view text);

// The 0-based line, counted from the start of the JSON object `object`
// (followed by SIMDJSON_PADDING readable bytes), of the value at JSON pointer
// `pointer` inside it; -1 if it cannot be found.
int locate_line(std::string_view object, const std::string& pointer);

}  // namespace svcproxy::watch::detail
