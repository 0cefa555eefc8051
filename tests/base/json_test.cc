#include "base/json.h"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

#include <string>

namespace svcproxy::base {
namespace {

using namespace std::string_literals;

// What the hand-written escapers this replaced printed, byte for byte.
struct Same {
  std::string text;
  std::string json;
};

TEST(JsonStringTest, PrintsWhatTheOldEscapersPrinted) {
  const Same cases[] = {
      {"", R"("")"},
      {"plain text 10.0.0.1:80", R"("plain text 10.0.0.1:80")"},
      {R"(say "hi")", R"("say \"hi\"")"},
      {R"(C:\path\)", R"("C:\\path\\")"},
      {R"(\")", R"("\\\"")"},
      {"ünïcødé → ✓ 🙂", "\"ünïcødé → ✓ 🙂\""},
      {"\xff\xfe not UTF-8", "\"\xff\xfe not UTF-8\""},  // copied, not validated
      {"del\x7f", "\"del\x7f\""},
      {"\x01\x1f", R"("\u0001\u001f")"},
      {"nul\0byte"s, R"("nul\u0000byte")"},
      {"bell\a", R"("bell\u0007")"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(json_string(c.text), c.json) << c.text;
    std::string appended = "x:";
    append_json_string(appended, c.text);
    EXPECT_EQ(appended, "x:" + c.json);
  }
}

TEST(JsonStringTest, TabNewlineReturnInShortForm) {
  // As trace --json and the JSON log printed them.
  EXPECT_EQ(json_string("a\nb\tc\rd"), R"("a\nb\tc\rd")");
}

// Where the old escapers differed from each other (and so from the one
// that replaces them all): the same JSON string, another spelling.
TEST(JsonStringTest, OtherSpellingsOfTheOldOnesParseToTheSameString) {
  struct Respelled {
    std::string text;
    std::string json;  // Boost.JSON's spelling
    std::string old;   // an old escaper's
  };
  const Respelled cases[] = {
      {"\b\f", R"("\b\f")", R"("\u0008\u000c")"},                        // all of them
      {"a\nb\tc\rd", R"("a\nb\tc\rd")", R"("a\nb\tc\u000dd")"},          // rules --json
      {"a\nb\tc\rd", R"("a\nb\tc\rd")", R"("a\u000ab\u0009c\u000dd")"},  // loadtest, healthz, exec plugin
  };
  for (const auto& c : cases) {
    EXPECT_EQ(json_string(c.text), c.json);
    EXPECT_EQ(boost::json::parse(c.old).as_string(), c.text);
    EXPECT_EQ(boost::json::parse(c.json).as_string(), c.text);
  }
}

TEST(JsonStringTest, LongStringWithEscapesIsComplete) {
  // More than the serializer's read buffer, every byte escaped.
  const std::string text(1000, '"');
  const std::string json = json_string(text);
  ASSERT_EQ(json.size(), 2 + 2 * text.size());
  EXPECT_EQ(boost::json::parse(json).as_string(), text);
}

}  // namespace
}  // namespace svcproxy::base
