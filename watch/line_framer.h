// Splits a watch body into lines (one JSON event each) whatever the chunk
// boundaries: an event may span chunks, a chunk may hold many events. Each
// byte is looked at once (memchr from where the previous search stopped),
// and a completed line is handed out without copying when it lies within one
// chunk. Blank lines and a trailing '\r' are dropped.
#pragma once

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

namespace svcproxy::watch {

class LineFramer {
 public:
  explicit LineFramer(size_t max_line = size_t{256} << 20) : max_line_(max_line) {}

  // Calls on_line(std::string_view) for every line completed by `chunk`.
  // Returns false (and stops) if a line exceeds max_line: the stream is not
  // what we expect and must be dropped.
  template <class OnLine>
  bool feed(std::string_view chunk, OnLine&& on_line) {
    while (!chunk.empty()) {
      const void* found = std::memchr(chunk.data(), '\n', chunk.size());
      if (found == nullptr) {
        if (partial_.size() + chunk.size() > max_line_) return fail();
        partial_.append(chunk);
        return true;
      }
      const size_t length = static_cast<size_t>(static_cast<const char*>(found) - chunk.data());
      if (partial_.empty()) {
        emit(chunk.substr(0, length), on_line);
      } else {
        if (partial_.size() + length > max_line_) return fail();
        partial_.append(chunk.substr(0, length));
        emit(partial_, on_line);
        partial_.clear();
      }
      chunk.remove_prefix(length + 1);
    }
    return true;
  }

  // Bytes of an unfinished line (an event cut off when the stream ends).
  size_t pending() const { return partial_.size(); }
  void reset() { partial_.clear(); }

 private:
  template <class OnLine>
  static void emit(std::string_view line, OnLine& on_line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) return;
    on_line(line);
  }
  bool fail() {
    partial_.clear();
    return false;
  }

  size_t max_line_;
  std::string partial_;
};

}  // namespace svcproxy::watch
