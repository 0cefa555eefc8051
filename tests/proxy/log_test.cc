#include "proxy/log.h"

#include <gtest/gtest.h>

#include <regex>
#include <sstream>

namespace svcproxy::proxy {
namespace {

TEST(Log, TextLineHasKlogsShapeWithCallerAndQuotedStrings) {
  std::ostringstream out;
  Log log(out);
  log.info("sync done", {{"reason", "start"}, {"mode", std::string("full")}, {"operations", 12}, {"ok", true}});
  const std::string line = out.str();
  // I1128 06:13:21.123456    1234 log_test.cc:16] sync done reason="start" ...
  const std::regex klog(R"(^I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ log_test\.cc:\d+\] sync done reason="start" mode="full" operations=12 ok=true\n$)");
  EXPECT_TRUE(std::regex_match(line, klog)) << line;
}

TEST(Log, SeverityLetters) {
  std::ostringstream out;
  Log log(out);
  log.warning("w");
  log.error("e");
  EXPECT_EQ(out.str()[0], 'W');
  EXPECT_EQ(out.str()[out.str().find('\n') + 1], 'E');
}

TEST(Log, ValuesAreEscapedAndMessagesStayOnOneLine) {
  std::ostringstream out;
  Log log(out);
  log.info("two\nlines", {{"error", "say \"no\"\\\n"}});
  const std::string line = out.str();
  EXPECT_EQ(std::count(line.begin(), line.end(), '\n'), 1) << line;
  EXPECT_NE(line.find(R"(two lines error="say \"no\"\\\n")"), std::string::npos) << line;
}

TEST(Log, VerbosityDropsDetailedLines) {
  std::ostringstream quiet, chatty;
  Log q(quiet, 0), c(chatty, 2);
  q.v(2, "detail");
  c.v(2, "detail");
  c.v(3, "more detail");
  EXPECT_EQ(quiet.str(), "");
  EXPECT_NE(chatty.str().find("detail"), std::string::npos);
  EXPECT_EQ(chatty.str().find("more detail"), std::string::npos);
}

TEST(Log, JsonLineIsOneObjectWithTypedFields) {
  std::ostringstream out;
  Log log(out, 0, LogFormat::Json);
  log.warning("sync failed", {{"reason", "a\"b"}, {"retry_in_ms", 1000}, {"full", false}});
  const std::string line = out.str();
  const std::regex shape(
      R"(^\{"ts":\d+\.\d{6},"caller":"log_test\.cc:\d+","severity":"warning","v":0,"msg":"sync failed","reason":"a\\"b","retry_in_ms":1000,"full":false\}\n$)");
  EXPECT_TRUE(std::regex_match(line, shape)) << line;
}

TEST(Log, JsonEscapesControlCharacters) {
  std::ostringstream out;
  Log log(out, 0, LogFormat::Json);
  log.info(std::string("bell\x07"), {{"k", "tab\there"}});
  EXPECT_NE(out.str().find(R"("msg":"bell\u0007")"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find(R"("k":"tab\there")"), std::string::npos) << out.str();
}

TEST(Log, NonFiniteNumbersStayValidJson) {
  std::ostringstream out;
  Log log(out, 0, LogFormat::Json);
  log.info("m", {{"x", 0.0 / 0.0}, {"y", 1.5}});
  EXPECT_NE(out.str().find(R"("x":"NaN","y":1.5)"), std::string::npos) << out.str();
}

}  // namespace
}  // namespace svcproxy::proxy
