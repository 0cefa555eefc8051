// Helpers shared by the manifests tests.
#pragma once

#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include <regex>
#include <string>
#include <string_view>

#include "model/objects.h"
#include "tests/support/ip.h"
#include "watch/manifests.h"

namespace svcproxy::watch::testing {

inline constexpr const char* kOrigin = "test.yaml";

inline std::string all_diagnostics(const DecodeResult& result);

// A YAML node as JSON text, plain scalars typed as YAML 1.2 core would
// (numbers, true/false, null), quoted scalars as strings.
inline void to_json(const YAML::Node& node, std::string& out) {
  auto string = [&](const std::string& text) {
    out += '"';
    for (char c : text) {
      if (c == '"' || c == '\\') out += '\\';
      if (c == '\n') {
        out += "\\n";
        continue;
      }
      out += c;
    }
    out += '"';
  };
  switch (node.Type()) {
    case YAML::NodeType::Map: {
      out += '{';
      bool first = true;
      for (const auto& kv : node) {
        if (!first) out += ',';
        first = false;
        string(kv.first.Scalar());
        out += ':';
        to_json(kv.second, out);
      }
      out += '}';
      return;
    }
    case YAML::NodeType::Sequence: {
      out += '[';
      bool first = true;
      for (const auto& item : node) {
        if (!first) out += ',';
        first = false;
        to_json(item, out);
      }
      out += ']';
      return;
    }
    case YAML::NodeType::Scalar: {
      static const std::regex kNumber(R"(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?)");
      const std::string& text = node.Scalar();
      if (node.Tag() == "?" && (text == "true" || text == "false" || std::regex_match(text, kNumber))) {
        out += text;
      } else {
        string(text);
      }
      return;
    }
    default:
      out += "null";
  }
}

inline std::string without_lines(std::string text) {
  return std::regex_replace(text, std::regex(R"( \(line [0-9]+\))"), "");
}

// Runs a single-document YAML input through the JSON reader too (as JSON
// text): the readers must agree on objects and diagnostics (but lines).
inline void expect_json_agrees(std::string_view text, const DecodeResult& yaml) {
  std::vector<YAML::Node> documents;
  try {
    documents = YAML::LoadAll(std::string(text));
  } catch (const std::exception&) {
    return;  // malformed YAML: nothing to compare
  }
  if (text.starts_with("\xFF\xFE") || text.starts_with("\xFE\xFF")) return;  // UTF-16: no JSON form
  if (documents.size() != 1 || documents[0].IsNull() || text.find("\n---") != std::string_view::npos) return;
  std::string json;
  to_json(documents[0], json);
  DecodeResult result;
  decode_manifests(json, kOrigin, result, ManifestFormat::Json);
  EXPECT_EQ(result.state, yaml.state) << "the JSON reader disagrees on " << json;
  EXPECT_EQ(without_lines(all_diagnostics(result)), without_lines(all_diagnostics(yaml)))
      << "the JSON reader disagrees on " << json;
}

// Decodes with the YAML reader; a stream that starts like JSON is also
// decoded with the simdjson reader, which must agree exactly (objects and
// every diagnostic, lines included).
inline DecodeResult decode(std::string_view text) {
  DecodeResult result;
  decode_manifests(text, kOrigin, result, ManifestFormat::Yaml);
  const size_t start = text.find_first_not_of(" \t\r\n");
  if (start != std::string_view::npos && text[start] == '{') {
    DecodeResult json;
    decode_manifests(text, kOrigin, json, ManifestFormat::Json);
    EXPECT_EQ(json.state, result.state) << "the JSON reader disagrees with the YAML reader";
    EXPECT_EQ(all_diagnostics(json), all_diagnostics(result)) << "the JSON reader disagrees";
  } else {
    expect_json_agrees(text, result);
  }
  return result;
}

inline std::string fixture(std::string_view name) {
  return std::string(SVCPROXY_TEST_DATA) + "/manifests/" + std::string(name);
}

using test_support::ip;

using test_support::cidr;

inline std::string all_diagnostics(const DecodeResult& result) {
  std::string out;
  for (const Diagnostic& d : result.diagnostics) out += d.str() + "\n";
  return out;
}

}  // namespace svcproxy::watch::testing
