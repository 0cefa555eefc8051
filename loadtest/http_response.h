// Just enough HTTP/1.1 response parsing for the load generator: is the
// response complete, its status, may the connection be kept, and which
// server answered (a header naming it).
#pragma once

#include <string>
#include <string_view>

namespace svcproxy::loadtest {

struct HttpResponse {
  bool complete = false;
  int status = 0;
  bool keep_alive = false;
  std::string endpoint;  // the endpoint header's value, empty if absent
};

// `data` is everything received so far on the connection for this request;
// `eof`: the server closed its side (ends a body without a length).
HttpResponse parse_http_response(std::string_view data, std::string_view endpoint_header, bool eof);

}  // namespace svcproxy::loadtest
