// IP addresses and prefixes as plain values. Parsing is strict (inet_pton) so
// that malformed input is caught at the edge, never deep in the compiler.
#pragma once

#include <sys/socket.h>

#include <array>
#include <bit>
#include <compare>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace svcproxy::model {

enum class IPFamily : uint8_t { V4, V6 };

std::string_view to_string(IPFamily family);

struct IPAddress {
  IPFamily family = IPFamily::V4;
  // Network byte order; IPv4 uses the first 4 bytes, the rest stay zero.
  std::array<uint8_t, 16> bytes{};

  static std::optional<IPAddress> parse(std::string_view text);
  static IPAddress v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d);

  size_t size() const { return family == IPFamily::V4 ? 4 : 16; }
  bool is_loopback() const;
  bool is_unspecified() const;
  std::string str() const;
  // Appends the canonical text (RFC 5952 for IPv6, as inet_ntop) without
  // allocating a temporary: renderers format 100k+ addresses per ruleset.
  void append_to(std::string& out) const;

  // The order of (family, bytes) as a defaulted <=> would give, but on two
  // big-endian words instead of a memcmp call: compiler maps keyed by
  // address compare millions of times at 1M endpoints (perf: 5.6% of
  // `run --once` at 100k x 10 in memcmp under operator<=>).
  std::strong_ordering operator<=>(const IPAddress& other) const {
    if (family != other.family) return family <=> other.family;
    const auto [a_high, a_low] = words();
    const auto [b_high, b_low] = other.words();
    if (a_high != b_high) return a_high <=> b_high;
    return a_low <=> b_low;
  }
  bool operator==(const IPAddress& other) const { return family == other.family && words() == other.words(); }

 private:
  std::pair<uint64_t, uint64_t> words() const {
    uint64_t high, low;
    std::memcpy(&high, bytes.data(), 8);
    std::memcpy(&low, bytes.data() + 8, 8);
    if constexpr (std::endian::native == std::endian::little) {
      high = __builtin_bswap64(high);
      low = __builtin_bswap64(low);
    }
    return {high, low};
  }
};

struct CIDR {
  IPAddress address;  // always masked to the prefix
  uint8_t prefix = 0;

  // Accepts "10.0.0.0/8", "fd00::/48"; a bare address is a host prefix.
  static std::optional<CIDR> parse(std::string_view text);
  static CIDR host(const IPAddress& address);

  IPFamily family() const { return address.family; }
  bool contains(const IPAddress& ip) const;
  // Last address of the prefix (inclusive), used for interval sets.
  IPAddress last() const;
  std::string str() const;

  auto operator<=>(const CIDR&) const = default;
};

// "10.1.2.3:80" or "[fd00::1]:80", as kubectl and kube-proxy print them.
std::string format_endpoint(const IPAddress& ip, uint16_t port);

// A socket address for bind, connect or sendto: sockaddr_in or sockaddr_in6
// in `storage`, `length` bytes of it.
struct SocketAddress {
  sockaddr_storage storage{};
  socklen_t length = 0;

  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&storage); }
  int family() const { return storage.ss_family; }
};

SocketAddress to_sockaddr(const IPAddress& ip, uint16_t port);

}  // namespace svcproxy::model
