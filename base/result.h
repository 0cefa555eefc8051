// The error convention for code that can fail in an ordinary way (a file
// that cannot be read, an address that does not parse, a port already in
// use): return base::Result<T>, a value or an error message that names what
// failed and why ("bind 10.0.0.1:80: Address already in use"), ready for a
// log line or a warning. It replaces bool + `std::string& error` out
// parameters and functions whose "" meant success.
//
// Exceptions stay where they are the convention of a layer today, because a
// failure there ends the whole operation and one catch at its top reports it:
// - the kernel side (dataplane's netlink: TransactionError, NetlinkError):
//   a refused batch unwinds out of the commit, the sync loop catches it once
//   and falls back to a full sync;
// - flag and config validation at the edge (proxy's FlagError): main prints
//   it and exits;
// - a constructor that acquires a resource it cannot work without
//   (std::system_error, as base::adopt_or_throw).
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace svcproxy::base {

// The error side of a Result: its message says what failed and why.
struct Error {
  std::string message;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  // Only when ok().
  T& value() & { return std::get<0>(state_); }
  const T& value() const& { return std::get<0>(state_); }
  T&& value() && { return std::get<0>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  // Only when !ok().
  const std::string& error() const { return std::get<1>(state_).message; }

 private:
  std::variant<T, Error> state_;
};

// Success or an error, nothing to return: `return {};` on success.
template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error.message)), failed_(true) {}  // NOLINT: implicit by design

  bool ok() const { return !failed_; }
  explicit operator bool() const { return ok(); }
  // Only when !ok().
  const std::string& error() const { return error_; }

 private:
  std::string error_;
  bool failed_ = false;
};

}  // namespace svcproxy::base
