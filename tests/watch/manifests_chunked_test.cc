// JSON manifests read piece by piece (ReadOptions::json_buffer_bytes): items
// cut by the buffer's end anywhere, an item larger than the buffer, CRLF, a
// byte order mark, truncated files and the fallbacks decode exactly as the
// whole text in memory does, diagnostics and their lines included.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "tests/watch/manifests_test_util.h"
#include "watch/json_node.h"

namespace svcproxy::watch {
namespace {

using testing::all_diagnostics;

constexpr size_t kBufferSizes[] = {1, 2, 3, 5, 8, 13, 64, 257, 4096};

// The reference: the whole text in memory, no buffer in between.
DecodeResult decode_whole(std::string_view text) {
  std::string padded(text);
  padded.reserve(padded.size() + 64);
  DecodeResult result;
  decode_manifests_json_padded(padded, testing::kOrigin, result);
  return result;
}

DecodeResult decode_chunked(std::string_view text, size_t buffer_bytes) {
  DecodeResult result;
  decode_manifests(text, testing::kOrigin, result, ManifestFormat::Json, {.json_buffer_bytes = buffer_bytes});
  return result;
}

void expect_same(const DecodeResult& got, const DecodeResult& want, const std::string& what) {
  EXPECT_EQ(all_diagnostics(got), all_diagnostics(want)) << what;
  EXPECT_EQ(got.state, want.state) << what;
}

// Every buffer size decodes `text` as the whole text does; returns that.
DecodeResult expect_any_buffer_agrees(std::string_view text) {
  const DecodeResult whole = decode_whole(text);
  for (const size_t bytes : kBufferSizes) {
    expect_same(decode_chunked(text, bytes), whole, "buffer of " + std::to_string(bytes) + " bytes");
  }
  return whole;
}

struct ListShape {
  int services = 3;
  std::string newline = "\n";
  bool byte_order_mark = false;
  bool typed_without_kind = false;  // a ServiceList whose items omit kind and apiVersion
  int bad_item = -1;                // this item's targetPort is out of range
  size_t annotation_bytes = 0;      // an annotation this long in item 0
};

// A kubectl-shaped (4-space indented) List of Services.
std::string service_list(const ListShape& shape) {
  std::string out = shape.byte_order_mark ? "\xEF\xBB\xBF" : "";
  const std::string& nl = shape.newline;
  out += "{" + nl + "    \"apiVersion\": \"v1\"," + nl + "    \"items\": [" + nl;
  for (int i = 0; i < shape.services; ++i) {
    out += "        {" + nl;
    if (!shape.typed_without_kind) out += "            \"apiVersion\": \"v1\"," + nl + "            \"kind\": \"Service\"," + nl;
    out += "            \"metadata\": {" + nl;
    if (i == 0 && shape.annotation_bytes > 0) {
      out += "                \"annotations\": {" + nl + "                    \"big\": \"" +
             std::string(shape.annotation_bytes, 'x') + "\"" + nl + "                }," + nl;
    }
    out += "                \"name\": \"svc-" + std::to_string(i) + "\"," + nl;
    out += "                \"namespace\": \"default\"" + nl + "            }," + nl;
    out += "            \"spec\": {" + nl + "                \"clusterIP\": \"10.96.0." + std::to_string(i + 1) + "\"," + nl;
    out += "                \"ports\": [" + nl + "                    {" + nl;
    out += "                        \"port\": 80," + nl + "                        \"protocol\": \"TCP\"," + nl;
    out += "                        \"targetPort\": " + std::string(i == shape.bad_item ? "123456" : "8080") + nl;
    out += "                    }" + nl + "                ]" + nl + "            }" + nl;
    out += std::string("        }") + (i + 1 < shape.services ? "," : "") + nl;
  }
  out += "    ]," + nl + "    \"kind\": \"" + (shape.typed_without_kind ? "ServiceList" : "List") + "\"," + nl;
  out += "    \"metadata\": {" + nl + "        \"resourceVersion\": \"\"" + nl + "    }" + nl + "}" + nl;
  return out;
}

// The 1-based line of the first occurrence of `needle`.
int line_of(std::string_view text, std::string_view needle) {
  const size_t at = text.find(needle);
  EXPECT_NE(at, std::string_view::npos) << needle;
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n'));
}

std::string bad_port_diagnostic(int item, int line) {
  return std::string(testing::kOrigin) + ": skipped Service default/svc-" + std::to_string(item) +
         ": spec.ports[0].targetPort: 123456 is out of range 1..65535 (line " + std::to_string(line) + ")\n";
}

TEST(ManifestsChunked, ItemsCutAnywhereDecodeAsTheWholeText) {
  const std::string text = service_list({.services = 4, .bad_item = 2});
  const DecodeResult whole = expect_any_buffer_agrees(text);
  EXPECT_EQ(whole.state.services.size(), 3u);
  EXPECT_EQ(all_diagnostics(whole), bad_port_diagnostic(2, line_of(text, "123456")));
  testing::decode(text);  // and as the YAML reader does, lines included
}

TEST(ManifestsChunked, CRLFAndByteOrderMark) {
  const std::string text = service_list({.services = 3, .newline = "\r\n", .byte_order_mark = true, .bad_item = 1});
  const DecodeResult whole = expect_any_buffer_agrees(text);
  EXPECT_EQ(whole.state.services.size(), 2u);
  EXPECT_EQ(all_diagnostics(whole), bad_port_diagnostic(1, line_of(text, "123456")));
  testing::decode(text);
}

TEST(ManifestsChunked, TypedListItemsWaitForTheEnvelopesKind) {
  const std::string text = service_list({.services = 3, .typed_without_kind = true, .bad_item = 2});
  const DecodeResult whole = expect_any_buffer_agrees(text);
  EXPECT_EQ(whole.state.services.size(), 2u);
  EXPECT_EQ(all_diagnostics(whole), bad_port_diagnostic(2, line_of(text, "123456")));
  testing::decode(text);
}

TEST(ManifestsChunked, AnItemLargerThanTheBufferGrowsIt) {
  const std::string text = service_list({.services = 3, .bad_item = 0, .annotation_bytes = 300000});
  for (const size_t bytes : {size_t{1}, size_t{4096}, size_t{65536}}) {
    const DecodeResult result = decode_chunked(text, bytes);
    EXPECT_EQ(result.state.services.size(), 2u) << bytes;
    EXPECT_EQ(all_diagnostics(result), bad_port_diagnostic(0, line_of(text, "123456"))) << bytes;
  }
}

TEST(ManifestsChunked, TruncatedAnywhereDecodesAsTheWholeTruncatedText) {
  const std::string text = service_list({.services = 2, .bad_item = 1});
  for (size_t size = 0; size <= text.size(); ++size) {
    const std::string_view prefix(text.data(), size);
    const DecodeResult whole = decode_whole(prefix);
    for (const size_t bytes : {size_t{1}, size_t{7}, size_t{64}}) {
      expect_same(decode_chunked(prefix, bytes), whole,
                  "first " + std::to_string(size) + " bytes, buffer of " + std::to_string(bytes));
    }
  }
  // Cut inside the second item, the document is not valid JSON: the YAML
  // reader reports it with its line, and nothing of it is decoded.
  const DecodeResult cut = decode_chunked(std::string_view(text).substr(0, text.find("123456")), 5);
  EXPECT_TRUE(cut.state.services.empty());
  ASSERT_EQ(cut.diagnostics.size(), 1u);
  EXPECT_NE(cut.diagnostics[0].message.find("malformed YAML at line"), std::string::npos) << cut.diagnostics[0].message;
}

TEST(ManifestsChunked, DocumentsThatAreNotListsFallBackToTheWholeText) {
  const std::string inputs[] = {
      R"({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "one"}, "spec": {"clusterIP": "10.96.0.9", "ports": [{"port": 70000}]}})",
      R"({"apiVersion": "v1", "kind": "Service", "items": [{"kind": "Node"}], "metadata": {"name": "x"}})",
      R"({"kind": "List", "items": [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}, {"bad": tru}]})",
      R"({"kind": "List", "items": [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}}]} trailing)",
      R"({"kind": "List", "items": [7]})",
      R"({"kind": "List", "items": []})",
      "{}",
      "null",
      "",
      "  \n ",
      "\xFF\xFE{}",
      "\xEF\xBB\xBF{\"apiVersion\": \"v1\", \"kind\": \"Node\", \"metadata\": {\"name\": \"bom\"}}",
      "{\"kind\": \"List\", \"items\": [{\"apiVersion\": \"v1\", \"kind\": \"Node\", \"metadata\": {\"name\": \"n\\\"q\"}}]}",
  };
  for (const std::string& text : inputs) {
    SCOPED_TRACE(text);
    expect_any_buffer_agrees(text);
  }
}

// A random JSON value: nesting, and strings full of what the splitter must
// not mistake for structure (brackets, escaped quotes and backslashes), some
// longer than its 64-byte blocks.
void random_value(std::mt19937& rng, int depth, std::string& out) {
  const auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  const auto space = [&] { out += std::string(static_cast<size_t>(pick(3)), pick(2) ? ' ' : '\n'); };
  const auto string = [&] {
    static constexpr std::string_view kPieces[] = {"a", "{", "}", "[", "]", "\\\"", "\\\\", "\\n", ",", ":", " ", "xyz"};
    out += '"';
    const int pieces = pick(4) == 0 ? 40 + pick(40) : pick(8);
    for (int i = 0; i < pieces; ++i) out += kPieces[pick(static_cast<int>(std::size(kPieces)))];
    out += '"';
  };
  switch (depth > 3 ? pick(3) : pick(5)) {
    case 0:
      string();
      return;
    case 1:
      out += std::to_string(pick(100000));
      return;
    case 2:
      out += pick(2) ? "true" : "null";
      return;
    case 3: {
      out += '[';
      const int n = pick(4);
      for (int i = 0; i < n; ++i) {
        if (i > 0) out += ',';
        space();
        random_value(rng, depth + 1, out);
      }
      out += ']';
      return;
    }
    default:
      break;
  }
  out += '{';
  const int n = pick(5);
  for (int i = 0; i < n; ++i) {
    if (i > 0) out += ',';
    space();
    string();
    out += ':';
    space();
    random_value(rng, depth + 1, out);
  }
  out += '}';
}

TEST(ManifestsChunked, SplitterFindsExactlyTheItemsOfRandomLists) {
  std::mt19937 rng(20261128);
  for (int round = 0; round < 300; ++round) {
    std::vector<std::string> items;
    std::string text = "{\"apiVersion\": \"v1\", \"items\": [";
    const int n = 1 + static_cast<int>(rng() % 6);
    for (int i = 0; i < n; ++i) {
      std::string item = "{\"k\": ";
      random_value(rng, 0, item);
      item += ", \"s\": \"}\\\"{\"}";
      text += (i > 0 ? ",\n  " : "\n  ") + item;
      items.push_back(std::move(item));
    }
    text += "\n], \"kind\": \"List\"}\n";
    detail::JsonListView whole;
    ASSERT_TRUE(detail::split_json_list(text, whole)) << text;
    EXPECT_EQ(std::vector<std::string>(whole.items.begin(), whole.items.end()), items) << text;
    EXPECT_EQ(whole.kind, "List");
    // The same items when the text arrives a few bytes at a time.
    for (const size_t step : {size_t{1}, size_t{7}, size_t{61}}) {
      detail::JsonListSplitter splitter;
      std::vector<std::string> found;
      std::string pending;
      size_t fed = 0;
      for (bool end = false; !end;) {
        size_t consumed = 0;
        std::string_view item;
        pending.reserve(pending.size() + 64);
        switch (splitter.next(pending, fed == text.size(), consumed, item)) {
          case detail::JsonListSplitter::Step::Item:
            found.emplace_back(item);
            break;
          case detail::JsonListSplitter::Step::NeedMore: {
            const size_t more = std::min(step, text.size() - fed);
            pending.append(text, fed, more);
            fed += more;
            break;
          }
          case detail::JsonListSplitter::Step::End:
            end = true;
            break;
          case detail::JsonListSplitter::Step::Malformed:
            ADD_FAILURE() << "malformed at " << fed << ": " << text;
            end = true;
            break;
        }
        pending.erase(0, consumed);
      }
      EXPECT_EQ(found, items) << "step " << step << ": " << text;
    }
  }
}

class ManifestsChunkedFile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("svcproxy-chunked-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
    return (dir_ / name).string();
  }

  static void expect_file_agrees(const std::string& path, const std::string& text) {
    DecodeResult whole;
    std::string padded = text;
    padded.reserve(padded.size() + 64);
    decode_manifests_json_padded(padded, path, whole);
    for (const size_t bytes : {size_t{1}, size_t{9}, size_t{1000}, size_t{1} << 20}) {
      expect_same(load_manifests(path, {.json_buffer_bytes = bytes}), whole,
                  path + ", buffer of " + std::to_string(bytes) + " bytes");
    }
  }

  std::filesystem::path dir_;
};

TEST_F(ManifestsChunkedFile, ListFileStreamsWithLinesOfTheWholeFile) {
  const std::string text = service_list({.services = 200, .bad_item = 150});
  const std::string path = write("cluster.json", text);
  expect_file_agrees(path, text);
  const DecodeResult result = load_manifests(path, {.json_buffer_bytes = 1000});
  EXPECT_EQ(result.state.services.size(), 199u);
  ASSERT_EQ(result.diagnostics.size(), 1u);
  EXPECT_EQ(result.diagnostics[0].str(), path + ": skipped Service default/svc-150: spec.ports[0].targetPort: "
                                                "123456 is out of range 1..65535 (line " +
                                                std::to_string(line_of(text, "123456")) + ")");
}

TEST_F(ManifestsChunkedFile, TruncatedAndMalformedFilesFallBackAsBefore) {
  const std::string text = service_list({.services = 20, .newline = "\r\n"});
  for (const size_t cut : {text.size() / 3, text.size() - 3, text.size() - 1}) {
    const std::string truncated = text.substr(0, cut);
    expect_file_agrees(write("cut-" + std::to_string(cut) + ".json", truncated), truncated);
  }
  const std::string single = R"({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}})";
  expect_file_agrees(write("node.json", single), single);
  const std::string yaml_in_json = "apiVersion: v1\nkind: Node\nmetadata:\n  name: n2\n";
  expect_file_agrees(write("yaml.json", yaml_in_json), yaml_in_json);
  EXPECT_EQ(load_manifests((dir_ / "yaml.json").string(), {.json_buffer_bytes = 4}).state.nodes.size(), 1u);
}

TEST_F(ManifestsChunkedFile, FixtureDecodesTheSameWithAnyBuffer) {
  std::ifstream in(testing::fixture("cluster.json"), std::ios::binary);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(text.empty());
  const std::string path = write("cluster.json", text);
  expect_file_agrees(path, text);
  EXPECT_TRUE(load_manifests(path, {.json_buffer_bytes = 3}).diagnostics.empty());
}

}  // namespace
}  // namespace svcproxy::watch
