// Internal to watch/: the Field adapter over yaml-cpp nodes (see field.h).
// Every scalar is text, as in YAML; lines come from the parser's marks.
#pragma once

#include <yaml-cpp/yaml.h>

#include <string_view>
#include <utility>

#include "watch/field.h"

namespace svcproxy::watch::detail {

class YamlNode {
 public:
  class Iterator {
   public:
    Iterator() = default;
    explicit Iterator(YAML::const_iterator it) : it_(std::move(it)) {}
    YamlNode operator*() const { return YamlNode(*it_); }
    Iterator& operator++() {
      ++it_;
      return *this;
    }
    bool operator!=(const Iterator& other) const { return it_ != other.it_; }

   private:
    YAML::const_iterator it_;
  };

  YamlNode() = default;
  explicit YamlNode(YAML::Node node) : node_(std::move(node)) {}

  NodeType type() const {
    switch (node_.Type()) {
      case YAML::NodeType::Map:
        return NodeType::Map;
      case YAML::NodeType::Sequence:
        return NodeType::List;
      case YAML::NodeType::Scalar:
        return NodeType::Scalar;
      case YAML::NodeType::Null:
      case YAML::NodeType::Undefined:
        break;
    }
    return NodeType::Null;
  }

  bool find(const char* key, YamlNode& out) const {
    const YAML::Node& map = node_;  // const: a missing key must not be inserted
    YAML::Node child = map[key];
    if (!child.IsDefined()) return false;
    out = YamlNode(std::move(child));
    return true;
  }

  Iterator begin() const { return Iterator(node_.begin()); }
  Iterator end() const { return Iterator(node_.end()); }

  std::string_view scalar(Scratch& /*scratch*/) const { return node_.Scalar(); }
  IntStatus to_int(int64_t& out) const { return parse_int(node_.Scalar(), out); }
  bool to_bool(bool& out) const { return YAML::convert<bool>::decode(node_, out); }

  int line() const {
    if (!node_.IsDefined()) return -1;
    const YAML::Mark mark = node_.Mark();
    return mark.is_null() ? -1 : mark.line;
  }

 private:
  YAML::Node node_;
};

}  // namespace svcproxy::watch::detail
