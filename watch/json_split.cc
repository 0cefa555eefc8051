#include <algorithm>

#include "watch/json_node.h"

namespace svcproxy::watch::detail {

namespace ondemand = simdjson::ondemand;

bool split_json_list(ondemand::parser& parser, std::string_view text, JsonListView& out) {
  out = JsonListView();
  ondemand::document doc;
  if (parser.iterate(simdjson::padded_string_view(text.data(), text.size(), text.size() + simdjson::SIMDJSON_PADDING))
          .get(doc)) {
    return false;
  }
  ondemand::object root;
  if (doc.get_object().get(root)) return false;
  for (auto member : root) {
    std::string_view key;
    ondemand::value value;
    if (member.unescaped_key().get(key) || member.value().get(value)) return false;
    if (key == "kind" || key == "apiVersion") {
      std::string_view scalar;
      if (value.type() == ondemand::json_type::string) {
        if (value.get_string().get(scalar)) return false;
      } else {
        return false;  // unusual: let the whole-document path report it
      }
      (key == "kind" ? out.kind : out.api_version) = std::string(scalar);
    } else if (key == "metadata") {
      ondemand::object metadata;
      if (value.get_object().get(metadata) || metadata.raw_json().get(out.metadata)) return false;
    } else if (key == "items") {
      ondemand::array items;
      if (value.get_array().get(items)) return false;
      out.has_items = true;
      for (auto element : items) {
        ondemand::object item;
        std::string_view raw;
        if (element.get_object().get(item) || item.raw_json().get(raw)) return false;
        out.items.push_back(raw);
      }
    }  // other members are skipped by the iteration
  }
  return true;
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
