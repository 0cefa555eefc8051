#include "proxy/local_addresses.h"

#include <ifaddrs.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <memory>

namespace svcproxy::proxy {

using model::IPAddress;
using model::IPFamily;

std::vector<IPAddress> InterfaceAddresses::list() const {
  std::vector<IPAddress> out;
  ifaddrs* raw = nullptr;
  if (getifaddrs(&raw) != 0) return out;
  std::unique_ptr<ifaddrs, decltype(&freeifaddrs)> list(raw, freeifaddrs);
  for (ifaddrs* ifa = raw; ifa; ifa = ifa->ifa_next) {
    if (!ifa->ifa_addr) continue;
    IPAddress ip;
    if (ifa->ifa_addr->sa_family == AF_INET) {
      ip.family = IPFamily::V4;
      std::memcpy(ip.bytes.data(), &reinterpret_cast<sockaddr_in*>(ifa->ifa_addr)->sin_addr, 4);
    } else if (ifa->ifa_addr->sa_family == AF_INET6) {
      const auto* sin6 = reinterpret_cast<sockaddr_in6*>(ifa->ifa_addr);
      if (IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr)) continue;
      ip.family = IPFamily::V6;
      std::memcpy(ip.bytes.data(), &sin6->sin6_addr, 16);
    } else {
      continue;
    }
    out.push_back(ip);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

FixedAddresses::FixedAddresses(std::vector<IPAddress> addresses, std::string origin)
    : addresses_(std::move(addresses)), origin_(std::move(origin)) {
  std::sort(addresses_.begin(), addresses_.end());
  addresses_.erase(std::unique(addresses_.begin(), addresses_.end()), addresses_.end());
}

}  // namespace svcproxy::proxy
