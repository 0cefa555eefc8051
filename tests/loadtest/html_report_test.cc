#include "loadtest/html_report.h"

#include <gtest/gtest.h>

#include <regex>
#include <string>

#include "loadtest/svg_plot.h"
#include "sample_report.h"

namespace svcproxy::loadtest {
namespace {

size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Nothing that would load something from elsewhere, or run something. Text
// (escaped, so free of '<') may say "src="; a tag may not.
void expect_self_contained(const std::string& html) {
  for (const char* bad : {"<script", "<link", "<iframe", "<object", "<embed", "<img", "url(", "@import"}) {
    EXPECT_EQ(html.find(bad), std::string::npos) << bad;
  }
  const std::regex tag("<[a-zA-Z][^>]*>");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), tag); it != std::sregex_iterator(); ++it) {
    // The one "http://" allowed: the SVG namespace name, which is never fetched.
    const std::string t = std::regex_replace(it->str(), std::regex("xmlns=\"http://www.w3.org/2000/svg\""), "");
    for (const char* bad : {"src=", "href=", "http:", "https:"}) EXPECT_EQ(t.find(bad), std::string::npos) << t;
    EXPECT_FALSE(std::regex_search(t, std::regex("\\son[a-z]+=", std::regex::icase))) << t;  // event handlers
  }
}

TEST(HtmlEscape, EscapesMarkupAndQuotesAndControls) {
  EXPECT_EQ(html_escape("<a href='x'>&\"</a>"), "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;");
  EXPECT_EQ(html_escape(std::string("a\0b\x1b" "c\x7f", 6)), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD" "c\xEF\xBF\xBD");
  EXPECT_EQ(html_escape("10.0.0.1:80\tµ\n"), "10.0.0.1:80\tµ\n");
}

TEST(HtmlReport, HostileEndpointNameIsEscapedEverywhere) {
  const std::string html = render_html(testing::sample_report());
  EXPECT_EQ(html.find(testing::kHostileName), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  // It is shown, escaped: in the table, the violations box, the bar chart and the change.
  EXPECT_GE(occurrences(html, "&lt;img src=x onerror=alert(1)&gt;&quot;&#39;&amp;:80"), 4u);
  expect_self_contained(html);
}

TEST(HtmlReport, HasTheChartsAndTheirElements) {
  const std::string html = render_html(testing::sample_report());
  EXPECT_TRUE(html.starts_with("<!DOCTYPE html>"));
  for (const char* id : {"latency-curve", "endpoint-bars", "timeline"}) {
    EXPECT_NE(html.find("<svg id=\"" + std::string(id) + "\""), std::string::npos) << id;
  }
  EXPECT_EQ(occurrences(html, "<svg "), 3u);
  EXPECT_EQ(occurrences(html, "</svg>"), 3u);
  EXPECT_EQ(occurrences(html, "<polyline class=\"curve\""), 1u);
  EXPECT_EQ(occurrences(html, "<polyline class=\"rps\""), 1u);
  EXPECT_EQ(occurrences(html, "<polyline class=\"p99\""), 1u);
  EXPECT_EQ(occurrences(html, "<g class=\"endpoint\">"), 4u);
  EXPECT_EQ(occurrences(html, "class=\"bar violation\""), 2u);  // the violating endpoint + the legend
  EXPECT_EQ(occurrences(html, "class=\"expected\""), 4u + 1u);  // one tick per endpoint + the legend
  EXPECT_EQ(occurrences(html, "<g class=\"change\">"), 2u);
  EXPECT_EQ(occurrences(html, "class=\"errors\""), 1u);  // the one interval with errors
  // Headline numbers, corrected next to uncorrected.
  EXPECT_NE(html.find("120,000"), std::string::npos);
  EXPECT_NE(html.find("48.0 ms"), std::string::npos);
  EXPECT_NE(html.find("uncorrected 2.10 ms"), std::string::npos);
  EXPECT_NE(html.find("open loop at 2000 requests/s"), std::string::npos);
  EXPECT_NE(html.find("id=\"violations\""), std::string::npos);
  EXPECT_NE(html.find("id=\"changes\""), std::string::npos);
  EXPECT_NE(html.find("missed its schedule 12 times"), std::string::npos);
  EXPECT_EQ(html.find("nan"), std::string::npos);
  EXPECT_EQ(html.find("inf"), std::string::npos);
}

TEST(HtmlReport, CurveXAxisIsInNines) {
  const std::string html = render_html(testing::sample_report());
  for (const char* label : {">0%<", ">90%<", ">99%<", ">99.9%<", ">99.99%<", ">99.999%<"}) {
    EXPECT_NE(html.find(label), std::string::npos) << label;
  }
  EXPECT_EQ(html.find(">99.9999%<"), std::string::npos);  // the curve stops at 99.999%
}

TEST(HtmlReport, EmptyReportStillRendersEveryFrame) {
  const std::string html = render_html(Report{});
  for (const char* id : {"latency-curve", "endpoint-bars", "timeline"}) {
    EXPECT_NE(html.find("<svg id=\"" + std::string(id) + "\""), std::string::npos) << id;
  }
  EXPECT_EQ(occurrences(html, "class=\"nodata\""), 3u);
  EXPECT_EQ(html.find("<polyline"), std::string::npos);
  EXPECT_EQ(html.find("id=\"violations\""), std::string::npos);
  EXPECT_EQ(html.find("id=\"warnings\""), std::string::npos);
  EXPECT_EQ(html.find("nan"), std::string::npos);
  expect_self_contained(html);
}

TEST(HtmlReport, NonFiniteNumbersNeverReachAnAttribute) {
  Report r = testing::sample_report();
  r.endpoints[0].share = std::nan("");
  r.endpoints[1].expected_share = std::numeric_limits<double>::infinity();
  r.timeline[3].requests_per_s = std::nan("");
  r.fairness.chi2_p = std::nan("");
  r.duration_s = -1;
  const std::string html = render_html(r);
  EXPECT_EQ(html.find("nan"), std::string::npos);
  EXPECT_EQ(html.find("inf"), std::string::npos);
}

TEST(HtmlReport, ErrorAxisWithoutErrorsHasWholeTicks) {
  Report r = testing::sample_report();
  for (auto& p : r.timeline) p.errors = 0;
  const std::string html = render_html(r);
  const std::string timeline = html.substr(html.find("<svg id=\"timeline\""));
  const size_t errors = timeline.find(">errors<");
  const std::string panel = timeline.substr(errors, timeline.find(">p99<") - errors);
  EXPECT_EQ(occurrences(panel, "class=\"grid\"/><text"), 2u) << panel;  // 0 and 1, nothing between
}

TEST(HtmlReport, ManyEndpointsAreCappedInTheChartNotTheTable) {
  Report r;
  for (int i = 0; i < 100; ++i) {
    EndpointStats e;
    e.endpoint = "10.0.0." + std::to_string(i) + ":80";
    e.count = 10;
    e.share = 0.01;
    r.endpoints.push_back(e);
  }
  const std::string html = render_html(r);
  EXPECT_EQ(occurrences(html, "<g class=\"endpoint\">"), 40u);
  EXPECT_NE(html.find("and 60 more endpoints"), std::string::npos);
  EXPECT_NE(html.find("10.0.0.99:80"), std::string::npos);
}

TEST(SvgPlot, NumbersAndTicks) {
  EXPECT_EQ(svg::count(1234567), "1,234,567");
  EXPECT_EQ(svg::count(999), "999");
  EXPECT_EQ(svg::latency(850), "850 µs");
  EXPECT_EQ(svg::latency(1250), "1.25 ms");
  EXPECT_EQ(svg::latency(12500000), "12.5 s");
  EXPECT_EQ(svg::fixed(std::nan(""), 1), "0");
  EXPECT_EQ(svg::fixed(-0.01, 1), "0.0");
  const svg::Ticks t = svg::round_ticks(930, 5);
  EXPECT_DOUBLE_EQ(t.step, 200);
  EXPECT_DOUBLE_EQ(t.top, 1000);
  EXPECT_EQ(t.values().size(), 6u);
  EXPECT_EQ(svg::truncate("ab\xC2\xB5" "cd", 3), "ab…");  // never half of "µ"
}

}  // namespace
}  // namespace svcproxy::loadtest
