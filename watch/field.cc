#include "watch/field.h"

#include <cctype>
#include <charconv>

#include "watch/json_node.h"

namespace svcproxy::watch::detail {

std::string quote(std::string_view text) {
  constexpr size_t kMax = 64;
  std::string out = "\"";
  for (char c : text.substr(0, kMax)) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  if (text.size() > kMax) out += "...";
  return out + "\"";
}

std::string join_path(std::string_view base, std::string_view key) {
  if (base.empty()) return std::string(key);
  if (key.empty()) return std::string(base);
  std::string out(base);
  if (key.front() != '[') out += '.';
  out += key;
  return out;
}

std::string_view type_name(std::optional<NodeType> type) {
  if (!type) return "nothing";
  switch (*type) {
    case NodeType::Map:
      return "a mapping";
    case NodeType::List:
      return "a list";
    case NodeType::Scalar:
      return "a scalar";
    case NodeType::Null:
      return "null";
  }
  return "nothing";
}

IntStatus parse_int(std::string_view text, int64_t& out) {
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, out);
  if (ec == std::errc::result_out_of_range) return IntStatus::OutOfRange;
  if (ec != std::errc() || ptr != end) return IntStatus::NotInteger;
  return IntStatus::Ok;
}

std::string FieldPath::dotted() const {
  std::string out;
  for (size_t i = 0; i < depth_; ++i) {
    const Segment& s = segments_[i];
    if (s.key != nullptr) {
      if (!out.empty()) out += '.';
      out += s.key;
    } else {
      out += '[' + std::to_string(s.index) + ']';
    }
  }
  if (truncated_) out += "...";
  return out;
}

std::string FieldPath::pointer(size_t depth) const {
  std::string out;
  for (size_t i = 0; i < depth && i < depth_; ++i) {
    const Segment& s = segments_[i];
    out += '/';
    if (s.key == nullptr) {
      out += std::to_string(s.index);
      continue;
    }
    for (const char* c = s.key; *c != '\0'; ++c) {  // RFC 6901 escaping
      if (*c == '~') out += "~0";
      else if (*c == '/') out += "~1";
      else out += *c;
    }
  }
  return out;
}

namespace {

bool all_of(std::string_view text, int (*test)(int)) {
  for (char c : text) {
    if (!test(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

bool yaml_bool_text(std::string_view text, bool& out) {
  // yaml-cpp: all lower case, or a capital first letter and the rest all
  // lower or all upper case; then y/n, yes/no, true/false, on/off.
  const bool flexible = text.empty() || all_of(text, ::islower) ||
                        (std::isupper(static_cast<unsigned char>(text[0])) &&
                         (all_of(text.substr(1), ::islower) || all_of(text.substr(1), ::isupper)));
  if (!flexible) return false;
  std::string lower(text);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static constexpr std::pair<std::string_view, std::string_view> kNames[] = {
      {"y", "n"}, {"yes", "no"}, {"true", "false"}, {"on", "off"}};
  for (const auto& [yes, no] : kNames) {
    if (lower == yes) {
      out = true;
      return true;
    }
    if (lower == no) {
      out = false;
      return true;
    }
  }
  return false;
}

}  // namespace svcproxy::watch::detail
