#include "loadtest/json_report.h"

#include <gtest/gtest.h>

#include <limits>

namespace svcproxy::loadtest {
namespace {

Report sample() {
  Report r;
  r.target = "default/web";
  r.address = "10.96.0.10:80";
  r.requests = 3;
  r.answers = 2;
  r.errors.refused = 1;
  r.latency = {100, 200, 300, 400, 500};
  EndpointStats e;
  e.endpoint = "10.0.0.1:8080";
  e.count = 2;
  e.share = 1;
  e.latency.p99_us = 321;
  e.first_at_us = 5;
  r.endpoints.push_back(e);
  r.fairness.max_min_ratio = std::numeric_limits<double>::infinity();
  r.violations.push_back({"10.0.0.9:8080", 1, "say \"unready\""});
  EndpointChange c;
  c.at_us = 1000;
  c.removed = {"10.0.0.9:8080"};
  c.drain_us = -20;
  r.changes.push_back(c);
  return r;
}

TEST(JsonReport, HasTheDocumentedFields) {
  const std::string json = render_json(sample());
  for (const char* field :
       {"\"requests\":3", "\"errors\":{\"refused\":1,\"timeout\":0,\"reset\":0,\"other\":0,\"udp_lost\":0}",
        "\"latency_us\":{\"p50\":100,\"p90\":200,\"p99\":300,\"p999\":400,\"max\":500}", "\"latency_uncorrected_us\":{",
        "\"endpoints\":{\"10.0.0.1:8080\":{\"count\":2,\"share\":1,\"p99_us\":321,", "\"first_at_us\":5,\"last_at_us\":null",
        "\"fairness\":{\"chi2_p\":1,\"max_min_ratio\":null,", "\"mode\":\"request\"", "\"open_loop\":false,\"rate\":null",
        "\"changes\":[{\"at_us\":1000,\"removed\":[\"10.0.0.9:8080\"],\"added\":[],\"drain_us\":-20,\"first_answer_us\":null}]",
        "\"timeline\":[]", "\"warnings\":[]"}) {
    EXPECT_NE(json.find(field), std::string::npos) << field << " in " << json;
  }
  EXPECT_EQ(json.front(), '{');
  EXPECT_EQ(json.back(), '}');
}

TEST(JsonReport, EscapesStrings) {
  const std::string json = render_json(sample());
  EXPECT_NE(json.find("\"reason\":\"say \\\"unready\\\"\""), std::string::npos) << json;
  Report r;
  r.target = std::string("a\nb\x01");
  // A newline in its short form since base/json.h (see base/README.md).
  EXPECT_NE(render_json(r).find("\"target\":\"a\\nb\\u0001\""), std::string::npos) << render_json(r);
}

}  // namespace
}  // namespace svcproxy::loadtest
