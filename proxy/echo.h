// `svcproxy echo`: a tiny backend for tests, demos and benchmarks. It tells
// the client who answered and which client address it saw, so a test can
// tell which endpoint a service address led to and whether the packet was
// masqueraded on the way.
//
//   TCP:  every line received      -> "<id> <client-ip>:<client-port>\n"
//         first line "GET ..."     -> read the request head, answer
//                                     HTTP/1.0 200 with that line as body, close
//   UDP:  every datagram           -> one datagram "<id> <client>\n"
//
// IPv6 clients are written "[addr]:port"; IPv4 clients reaching a dual-stack
// "[::]" listener are written as plain IPv4.
#pragma once

#include <string>

namespace svcproxy::proxy {

struct EchoOptions {
  std::string listen;  // "ADDR:PORT" or "[v6]:PORT"; port 0 picks a free one
  bool udp = false;
  std::string id;      // empty: the hostname
};

// Binds, prints "listening on ADDR:PORT" to stdout (flushed) once ready,
// serves until SIGTERM or SIGINT, then returns 0. Setup errors are printed
// to stderr as one line and return 1.
int run_echo(const EchoOptions& options);

}  // namespace svcproxy::proxy
