// Internal to watch/: one field of a decoded document together with its path,
// over any document representation. The field rules (decode_rules.h) are
// written once against `Field<Node>`; a Node adapter (yaml_node.h for
// yaml-cpp, json_node.h for simdjson) supplies the document. A field that
// cannot be used throws FieldError, which the object's decoder turns into
// exactly one diagnostic.
//
// A Node adapter provides:
//   NodeType type() const;                      // Absent never: absence is Field's business
//   bool find(std::string_view key, Node& out) const;   // only called on maps
//   Iterator begin() const, end() const;        // only called on lists; *it is a Node
//   std::string_view scalar(Scratch& scratch) const;    // text of a scalar (numbers formatted)
//   IntStatus to_int(int64_t& out) const;       // a scalar as a decimal integer
//   bool to_bool(bool& out) const;              // a scalar as a boolean
//   int line() const;                           // 0-based line, -1 unknown
//
// Paths are kept as segments (borrowed keys, indexes) and only turned into
// text when a field fails: decoding 100k endpoints must not build 1M strings.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace svcproxy::watch::detail {

struct FieldError {
  std::string field;    // path relative to the object, e.g. "spec.ports[1].port"
  std::string message;
  int line = -1;        // 0-based line within the parsed document; -1 unknown
  // JSON pointer (relative to the object) of the deepest node on the path that
  // exists: lets a decoder without line information find one afterwards.
  std::string pointer;
};

enum class NodeType : uint8_t { Null, Map, List, Scalar };
enum class IntStatus : uint8_t { Ok, NotInteger, OutOfRange };

using Scratch = std::array<char, 32>;

std::string quote(std::string_view text);
std::string join_path(std::string_view base, std::string_view key);
std::string_view type_name(std::optional<NodeType> type);  // nullopt: "nothing"
IntStatus parse_int(std::string_view text, int64_t& out);

// A field's path below its object: up to kMaxDepth segments, each a borrowed
// key (the rules use string literals) or a list index.
class FieldPath {
 public:
  static constexpr size_t kMaxDepth = 14;
  FieldPath child(const char* key) const { return push({key, 0}); }
  FieldPath child(uint32_t index) const { return push({nullptr, index}); }
  size_t depth() const { return depth_; }
  std::string dotted() const;                     // "spec.ports[1].port"
  std::string pointer(size_t depth) const;        // "/spec/ports/1" for the first `depth` segments

 private:
  struct Segment {
    const char* key;  // nullptr: an index
    uint32_t index;
  };
  FieldPath push(Segment segment) const {
    FieldPath out = *this;
    if (depth_ < kMaxDepth) out.segments_[out.depth_++] = segment;
    else out.truncated_ = true;
    return out;
  }
  std::array<Segment, kMaxDepth> segments_{};
  uint8_t depth_ = 0;
  bool truncated_ = false;
};

template <class Node>
class Field {
 public:
  class Items;

  // The object itself: an empty path, so field paths are relative to it.
  static Field object(const Node& node) { return Field(node, true, FieldPath(), 0, node.line()); }

  // The same node as an object of its own (a List item): paths restart.
  Field as_object() const { return Field(node_, exists_, FieldPath(), 0, line_); }

  bool exists() const { return exists_; }
  bool present() const { return exists_ && node_.type() != NodeType::Null; }
  std::string path() const { return path_.dotted(); }
  const Node& node() const { return node_; }

  [[noreturn]] void fail(std::string message) const {
    throw FieldError{path_.dotted(), std::move(message), line_, path_.pointer(anchor_depth_)};
  }

  // Requires a mapping (an absent one is allowed: every child is then absent).
  Field get(const char* key) const {
    if (!present()) return absent(path_.child(key));
    if (node_.type() != NodeType::Map) fail(expected("a mapping"));
    Node child;
    if (!node_.find(key, child)) return absent(path_.child(key));
    const FieldPath path = path_.child(key);
    const int line = child.line();
    return Field(std::move(child), true, path, path.depth(), line < 0 ? line_ : line);
  }

  // A mapping that must be there, e.g. each element of spec.ports.
  void expect_map() const {
    if (!present() || node_.type() != NodeType::Map) fail(expected("a mapping"));
  }

  // Requires a list; absent or null reads as empty.
  Items items() const {
    if (present() && node_.type() != NodeType::List) fail(expected("a list"));
    return Items(*this);
  }

  // A scalar as text; absent or null reads as "". Valid while this Field
  // (and its document) lives.
  std::string_view text() const {
    if (!present()) return {};
    if (node_.type() != NodeType::Scalar) fail(expected("a string"));
    return node_.scalar(scratch_);
  }

  // YAML 1.1 booleans (true/false, yes/no, on/off), as the Kubernetes YAML
  // reader accepts them; absent or null reads as `fallback`.
  bool boolean(bool fallback) const {
    if (!present()) return fallback;
    const std::string_view value = text();
    bool result = false;
    if (!node_.to_bool(result)) fail("expected true or false, got " + quote(value));
    return result;
  }

  // A decimal integer within [low, high]; absent or null reads as nullopt.
  std::optional<int64_t> integer(int64_t low, int64_t high) const {
    if (!present()) return std::nullopt;
    const std::string_view value = text();
    int64_t number = 0;
    switch (node_.to_int(number)) {
      case IntStatus::Ok:
        break;
      case IntStatus::OutOfRange:
        fail(quote(value) + " is out of range " + std::to_string(low) + ".." + std::to_string(high));
      case IntStatus::NotInteger:
        fail("expected an integer, got " + quote(value));
    }
    if (number < low || number > high) {
      fail(std::to_string(number) + " is out of range " + std::to_string(low) + ".." +
           std::to_string(high));
    }
    return number;
  }

  // The elements of a list field, produced lazily.
  class Items {
   public:
    class iterator {
     public:
      iterator(const Field* list, typename Node::Iterator it, uint32_t index, bool live)
          : list_(list), it_(std::move(it)), index_(index), live_(live) {}
      Field operator*() const { return list_->element(*it_, index_); }
      iterator& operator++() {
        ++it_;
        ++index_;
        return *this;
      }
      bool operator!=(const iterator& other) const {
        if (!live_ || !other.live_) return live_ != other.live_;
        return it_ != other.it_;
      }

     private:
      const Field* list_;
      typename Node::Iterator it_;
      uint32_t index_;
      bool live_;  // false for the end of an absent list
    };

    explicit Items(const Field& list) : list_(list) {}
    iterator begin() const {
      return list_.present() ? iterator(&list_, list_.node_.begin(), 0, true) : end();
    }
    iterator end() const {
      if (!list_.present()) return iterator(&list_, typename Node::Iterator(), 0, false);
      return iterator(&list_, list_.node_.end(), 0, true);
    }
    bool empty() const { return !(begin() != end()); }
    Field front() const { return *begin(); }  // requires !empty()

   private:
    Field list_;
  };

 private:
  Field(Node node, bool exists, FieldPath path, size_t anchor_depth, int line)
      : node_(std::move(node)),
        exists_(exists),
        path_(path),
        anchor_depth_(static_cast<uint8_t>(anchor_depth)),
        line_(line) {}

  Field absent(FieldPath path) const { return Field(Node(), false, path, anchor_depth_, line_); }

  Field element(const Node& child, uint32_t index) const {
    const FieldPath path = path_.child(index);
    const int line = child.line();
    return Field(child, true, path, path.depth(), line < 0 ? line_ : line);
  }

  std::string expected(std::string_view what) const {
    std::optional<NodeType> type;
    if (exists_) type = node_.type();
    return "expected " + std::string(what) + ", got " + std::string(type_name(type));
  }

  Node node_;
  bool exists_ = false;
  FieldPath path_;
  uint8_t anchor_depth_ = 0;  // segments of path_ that exist in the document
  int line_ = -1;
  mutable Scratch scratch_{};
};

}  // namespace svcproxy::watch::detail
