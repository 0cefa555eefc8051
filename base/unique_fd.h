// One owned file descriptor: closed when the owner goes, moved never copied.
#pragma once

#include <unistd.h>

#include <utility>

namespace svcproxy::base {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  // Gives the descriptor up without closing it (for an owner that closes it
  // itself, as an Asio socket's assign()).
  [[nodiscard]] int release() { return std::exchange(fd_, -1); }
  // Closes the held descriptor, if any, and holds `fd` instead.
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// `fd` owned, or std::system_error(errno, what) when it is negative: for the
// result of a call that makes a descriptor (socket, eventfd, inotify_init1...)
// where failing is the caller's end too.
UniqueFd adopt_or_throw(int fd, const char* what);

}  // namespace svcproxy::base
