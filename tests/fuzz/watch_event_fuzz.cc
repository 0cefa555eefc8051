// libFuzzer target: a watch body as the server might send it, cut into
// chunks at fuzzer-chosen sizes, through the line framer and the event
// decoder for every resource; the whole input also through the LIST decoder.
// Nothing may crash, hang or trip ASan/UBSan.
//
// Build and run: ./dev fuzz (clang-14, 60 s, seeds in tests/fuzz/watch_events).
#include <cstddef>
#include <cstdint>
#include <string>

#include "watch/api_objects.h"
#include "watch/line_framer.h"

using svcproxy::watch::ApiDecoder;
using svcproxy::watch::LineFramer;
using svcproxy::watch::ListPage;
using svcproxy::watch::Resource;
using svcproxy::watch::WatchEvent;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static ApiDecoder decoder;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // The first byte picks the chunk size pattern.
  const size_t step = size > 0 ? 1 + data[0] % 97 : 1;
  LineFramer framer(1 << 20);
  size_t lines = 0;
  for (size_t at = 0; at < input.size(); at += step) {
    const bool ok = framer.feed(input.substr(at, step), [&](std::string_view line) {
      ++lines;
      WatchEvent event;
      std::string error;
      const auto resource = static_cast<Resource>(lines % 4);
      if (decoder.decode_event(line, resource, event, error)) {
        if (event.object) (void)svcproxy::watch::object_key(*event.object);
        if (event.bad) (void)event.bad->str();
      }
    });
    if (!ok) break;
  }
  std::string padded(input);
  padded.reserve(padded.size() + ApiDecoder::kPadding);
  ListPage page;
  std::string error;
  decoder.decode_list(padded, static_cast<Resource>(size % 4), page, error);
  for (const auto& bad : page.bad) (void)bad.str();
  return 0;
}
