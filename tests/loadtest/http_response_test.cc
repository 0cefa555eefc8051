#include "loadtest/http_response.h"

#include <gtest/gtest.h>

namespace svcproxy::loadtest {
namespace {

TEST(HttpResponse, ContentLengthAndEndpointHeader) {
  const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nx-endpoint: 10.0.0.1:80\r\n\r\n";
  EXPECT_FALSE(parse_http_response(head, "X-Endpoint", false).complete);
  EXPECT_FALSE(parse_http_response(head + "hell", "X-Endpoint", false).complete);
  auto r = parse_http_response(head + "hello", "X-Endpoint", false);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.keep_alive);
  EXPECT_EQ(r.endpoint, "10.0.0.1:80");
}

TEST(HttpResponse, Chunked) {
  const std::string head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_FALSE(parse_http_response(head + "5\r\nhello\r\n", "", false).complete);
  EXPECT_TRUE(parse_http_response(head + "5\r\nhello\r\n0\r\n\r\n", "", false).complete);
}

TEST(HttpResponse, CloseAndHttp10) {
  auto r = parse_http_response("HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", "", false);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.status, 503);
  EXPECT_FALSE(r.keep_alive);
  // No length: the body ends when the server closes.
  const std::string no_length = "HTTP/1.0 200 OK\r\n\r\nbody";
  EXPECT_FALSE(parse_http_response(no_length, "", false).complete);
  EXPECT_TRUE(parse_http_response(no_length, "", true).complete);
  EXPECT_FALSE(parse_http_response(no_length, "", true).keep_alive);
  EXPECT_TRUE(parse_http_response("HTTP/1.1 204 No Content\r\n\r\n", "", false).complete);
}

}  // namespace
}  // namespace svcproxy::loadtest
