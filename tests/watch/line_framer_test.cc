#include "watch/line_framer.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace svcproxy::watch {
namespace {

std::vector<std::string> frame(const std::string& stream, const std::vector<size_t>& cuts) {
  LineFramer framer;
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t cut : cuts) {
    EXPECT_TRUE(framer.feed(std::string_view(stream).substr(start, cut - start),
                            [&](std::string_view line) { lines.emplace_back(line); }));
    start = cut;
  }
  EXPECT_TRUE(framer.feed(std::string_view(stream).substr(start), [&](std::string_view line) { lines.emplace_back(line); }));
  return lines;
}

TEST(LineFramer, EventsSpanningAndSharingChunksAtEveryBoundary) {
  const std::vector<std::string> events = {R"({"type":"ADDED","object":{"a":1}})", R"({"type":"BOOKMARK"})",
                                           R"({"type":"DELETED","object":{"b":"x\ny"}})"};
  std::string stream;
  for (const auto& e : events) stream += e + "\n";
  // Every single cut point, and every pair of cut points.
  for (size_t i = 0; i <= stream.size(); ++i) {
    EXPECT_EQ(frame(stream, {i}), events) << i;
    for (size_t j = i; j <= stream.size(); j += 3) EXPECT_EQ(frame(stream, {i, j}), events) << i << "," << j;
  }
}

TEST(LineFramer, RandomChunkingOfManyEvents) {
  std::mt19937 rng(7);
  std::vector<std::string> events;
  std::string stream;
  for (int i = 0; i < 2000; ++i) {
    events.push_back(R"({"type":"MODIFIED","object":{"n":)" + std::to_string(i) + std::string(rng() % 300, 'x') + "}}");
    stream += events.back() + (i % 7 == 0 ? "\r\n" : "\n");
  }
  for (int round = 0; round < 20; ++round) {
    std::vector<size_t> cuts;
    for (size_t at = 0; at < stream.size(); at += 1 + rng() % 5000) cuts.push_back(at);
    EXPECT_EQ(frame(stream, cuts), events);
  }
}

TEST(LineFramer, BlankLinesAreSkippedAndAnUnfinishedLineIsPending) {
  LineFramer framer;
  std::vector<std::string> lines;
  auto add = [&](std::string_view line) { lines.emplace_back(line); };
  EXPECT_TRUE(framer.feed("\n\r\n  \n{\"a\":1}\n{\"b\"", add));
  EXPECT_EQ(lines, std::vector<std::string>{"{\"a\":1}"});
  EXPECT_EQ(framer.pending(), 4u);
  framer.reset();
  EXPECT_EQ(framer.pending(), 0u);
}

TEST(LineFramer, ALineOverTheLimitFails) {
  LineFramer framer(10);
  EXPECT_FALSE(framer.feed("0123456789abc", [](std::string_view) {}));
  LineFramer framer2(10);
  EXPECT_TRUE(framer2.feed("01234", [](std::string_view) {}));
  EXPECT_FALSE(framer2.feed("56789abc\n", [](std::string_view) {}));
}

TEST(LineFramer, LinearInTheStreamSize) {
  // One byte at a time through a 4 MB line: quadratic rescanning would take
  // minutes; this is milliseconds.
  LineFramer framer;
  const std::string big(4 << 20, 'x');
  size_t got = 0;
  for (char c : big) framer.feed(std::string_view(&c, 1), [&](std::string_view line) { got = line.size(); });
  framer.feed("\n", [&](std::string_view line) { got = line.size(); });
  EXPECT_EQ(got, big.size());
}

}  // namespace
}  // namespace svcproxy::watch
