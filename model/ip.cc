#include "model/ip.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cstring>

namespace svcproxy::model {

namespace {

constexpr size_t kMaxAddressText = INET6_ADDRSTRLEN;  // includes the NUL

uint8_t max_prefix(IPFamily family) { return family == IPFamily::V4 ? 32 : 128; }

// ::ffff:0:0/96, the IPv4-mapped IPv6 range.
bool is_v4_mapped(const IPAddress& ip) {
  if (ip.family != IPFamily::V6) return false;
  for (size_t i = 0; i < 10; ++i) {
    if (ip.bytes[i] != 0) return false;
  }
  return ip.bytes[10] == 0xff && ip.bytes[11] == 0xff;
}

// Sets every bit at or after `prefix` to `one` (host part).
IPAddress with_host_bits(IPAddress ip, uint8_t prefix, bool one) {
  const size_t size = ip.size();
  for (size_t i = 0; i < size; ++i) {
    const int bits_in_prefix = std::clamp(static_cast<int>(prefix) - static_cast<int>(i) * 8, 0, 8);
    const auto network_mask = static_cast<uint8_t>(bits_in_prefix == 0 ? 0 : 0xff << (8 - bits_in_prefix));
    if (one) {
      ip.bytes[i] = static_cast<uint8_t>(ip.bytes[i] | ~network_mask);
    } else {
      ip.bytes[i] = static_cast<uint8_t>(ip.bytes[i] & network_mask);
    }
  }
  return ip;
}

}  // namespace

std::string_view to_string(IPFamily family) {
  return family == IPFamily::V4 ? "IPv4" : "IPv6";
}

std::optional<IPAddress> IPAddress::parse(std::string_view text) {
  // inet_pton needs a NUL-terminated string; an embedded NUL would silently
  // truncate the input, so reject it (and anything too long to be an address).
  if (text.empty() || text.size() >= kMaxAddressText ||
      text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  char buffer[kMaxAddressText] = {};
  std::copy(text.begin(), text.end(), buffer);

  IPAddress ip;
  if (inet_pton(AF_INET, buffer, ip.bytes.data()) == 1) {
    ip.family = IPFamily::V4;
    return ip;
  }
  ip.bytes = {};
  if (inet_pton(AF_INET6, buffer, ip.bytes.data()) == 1) {
    ip.family = IPFamily::V6;
    return ip;
  }
  return std::nullopt;
}

IPAddress IPAddress::v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IPAddress ip;
  ip.family = IPFamily::V4;
  ip.bytes[0] = a;
  ip.bytes[1] = b;
  ip.bytes[2] = c;
  ip.bytes[3] = d;
  return ip;
}

bool IPAddress::is_loopback() const {
  if (family == IPFamily::V4) return bytes[0] == 127;
  // An IPv4-mapped loopback (::ffff:127.0.0.1) reaches the host too.
  if (is_v4_mapped(*this)) return bytes[12] == 127;
  for (size_t i = 0; i < 15; ++i) {
    if (bytes[i] != 0) return false;
  }
  return bytes[15] == 1;
}

bool IPAddress::is_unspecified() const {
  return std::all_of(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(size()),
                     [](uint8_t b) { return b == 0; });
}

// glibc's inet_ntop formats through sprintf, which dominated rendering
// time; this writes digits directly. Output is identical (tested against
// inet_ntop).
void IPAddress::append_to(std::string& out) const {
  char buffer[kMaxAddressText];
  char* p = buffer;
  auto decimal = [&p](unsigned v) {
    if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
    if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
    *p++ = static_cast<char>('0' + v % 10);
  };
  if (family == IPFamily::V4) {
    for (int i = 0; i < 4; ++i) {
      if (i) *p++ = '.';
      decimal(bytes[i]);
    }
    out.append(buffer, static_cast<size_t>(p - buffer));
    return;
  }
  uint16_t groups[8];
  for (int i = 0; i < 8; ++i) groups[i] = static_cast<uint16_t>(bytes[2 * i] << 8 | bytes[2 * i + 1]);
  // IPv4-mapped and IPv4-compatible forms print their tail dotted, as inet_ntop.
  const bool zero5 = groups[0] == 0 && groups[1] == 0 && groups[2] == 0 && groups[3] == 0 && groups[4] == 0;
  const bool mapped = zero5 && (groups[5] == 0xffff || (groups[5] == 0 && groups[6] != 0));
  // The longest run of two or more zero groups (leftmost on ties) becomes "::".
  int best = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (groups[i] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < 8 && groups[j] == 0) ++j;
    if (j - i > best_len) best = i, best_len = j - i;
    i = j;
  }
  if (best_len < 2) best = -1;
  static constexpr char kHex[] = "0123456789abcdef";
  const int last = mapped ? 6 : 8;
  for (int i = 0; i < last; ++i) {
    if (i == best) {
      *p++ = ':';
      if (i + best_len == 8) *p++ = ':';
      i += best_len - 1;
      continue;
    }
    if (i) *p++ = ':';
    const unsigned g = groups[i];
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
      const unsigned digit = (g >> shift) & 0xf;
      if (digit || started || shift == 0) {
        *p++ = kHex[digit];
        started = true;
      }
    }
  }
  if (mapped) {
    *p++ = ':';
    for (int i = 12; i < 16; ++i) {
      if (i > 12) *p++ = '.';
      decimal(bytes[i]);
    }
  }
  out.append(buffer, static_cast<size_t>(p - buffer));
}

std::string IPAddress::str() const {
  std::string out;
  append_to(out);
  return out;
}

std::optional<CIDR> CIDR::parse(std::string_view text) {
  const size_t slash = text.find('/');
  const auto address = IPAddress::parse(text.substr(0, slash));
  if (!address) return std::nullopt;
  if (slash == std::string_view::npos) return host(*address);

  // Decimal digits only: no sign, no whitespace, no leading zeros ("/08").
  const std::string_view digits = text.substr(slash + 1);
  if (digits.empty() || digits.size() > 3 || (digits.size() > 1 && digits[0] == '0') ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  unsigned prefix = 0;
  std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
  if (prefix > max_prefix(address->family)) return std::nullopt;

  CIDR cidr;
  cidr.prefix = static_cast<uint8_t>(prefix);
  cidr.address = with_host_bits(*address, cidr.prefix, false);
  return cidr;
}

CIDR CIDR::host(const IPAddress& address) {
  CIDR cidr;
  cidr.address = address;
  cidr.prefix = max_prefix(address.family);
  return cidr;
}

bool CIDR::contains(const IPAddress& ip) const {
  if (ip.family != address.family) return false;
  // Mask both sides: a CIDR built by hand may carry host bits.
  return with_host_bits(ip, prefix, false) == with_host_bits(address, prefix, false);
}

IPAddress CIDR::last() const { return with_host_bits(address, prefix, true); }

// Built with append(): `"[" + std::string` trips GCC 12 PR 105651 (-Wrestrict).
std::string CIDR::str() const {
  std::string text = address.str();
  text.append("/").append(std::to_string(prefix));
  return text;
}

std::string format_endpoint(const IPAddress& ip, uint16_t port) {
  std::string text;
  if (ip.family == IPFamily::V6) {
    text.append("[").append(ip.str()).append("]");
  } else {
    text.append(ip.str());
  }
  text.append(":").append(std::to_string(port));
  return text;
}

SocketAddress to_sockaddr(const IPAddress& ip, uint16_t port) {
  SocketAddress out;
  if (ip.family == IPFamily::V4) {
    sockaddr_in v4{};
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    std::memcpy(&v4.sin_addr, ip.bytes.data(), 4);
    std::memcpy(&out.storage, &v4, sizeof v4);
    out.length = sizeof v4;
  } else {
    sockaddr_in6 v6{};
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    std::memcpy(&v6.sin6_addr, ip.bytes.data(), 16);
    std::memcpy(&out.storage, &v6, sizeof v6);
    out.length = sizeof v6;
  }
  return out;
}

}  // namespace svcproxy::model
