#include "proxy/log.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <regex>
#include <sstream>

namespace svcproxy::proxy {
namespace {

TEST(Log, TextLineHasKlogsShapeWithCallerAndQuotedStrings) {
  std::ostringstream out;
  Log log(out);
  const int call_line = __LINE__ + 1;
  log.info("sync done", {{"reason", "start"}, {"mode", std::string("full")}, {"operations", 12}, {"ok", true}});
  const std::string line = out.str();
  // The caller's file and line, not the logger's.
  EXPECT_NE(line.find(" log_test.cc:" + std::to_string(call_line) + "] "), std::string::npos) << line;
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

// klog's header: the date and time in UTC to the microsecond, then the
// process id right-aligned in 7 columns.
TEST(Log, TextHeaderIsUtcTimeAndTheProcessId) {
  auto stamp = [] {
    const time_t now = time(nullptr);
    tm parts;
    gmtime_r(&now, &parts);
    char text[32];
    std::snprintf(text, sizeof text, "%02d%02d %02d:%02d", parts.tm_mon + 1, parts.tm_mday, parts.tm_hour,
                  parts.tm_min);
    return std::string(text);
  };
  std::ostringstream out;
  Log log(out);
  const std::string before = stamp();
  log.info("m");
  const std::string after = stamp();
  const std::string line = out.str();
  const std::string minute = line.substr(1, 10);  // MMDD hh:mm
  EXPECT_TRUE(minute == before || minute == after) << line << " vs " << before;
  char pid[16];
  std::snprintf(pid, sizeof pid, " %7d ", static_cast<int>(getpid()));
  EXPECT_EQ(line.substr(21, 9), pid) << line;
}

TEST(Log, NumbersAreWrittenBare) {
  std::ostringstream out;
  Log log(out);
  log.info("m", {{"i", -7}, {"u", uint64_t{18446744073709551615u}}, {"d", 1.5}, {"small", 0.000123456789}});
  EXPECT_NE(out.str().find("] m i=-7 u=18446744073709551615 d=1.5 small=0.000123457\n"), std::string::npos)
      << out.str();
}

TEST(Log, JsonCarriesTheVerbosityLevelAndNoSeverityForInfo) {
  std::ostringstream out;
  Log log(out, 2, LogFormat::Json);
  log.v(2, "detail");
  EXPECT_NE(out.str().find(R"(,"v":2,"msg":"detail"})"), std::string::npos) << out.str();
  EXPECT_EQ(out.str().find("severity"), std::string::npos) << out.str();
}

TEST(Log, KlogQuotingEscapesControlCharactersAsHex) {
  EXPECT_EQ(log_quote(std::string("a\x01"
                                  "b\r")),
            R"("a\x01b\x0d")");
  EXPECT_EQ(log_quote("tab\tnew\nline"), R"("tab\tnew\nline")");
}

}  // namespace
}  // namespace svcproxy::proxy
