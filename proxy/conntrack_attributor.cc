#include "proxy/conntrack_attributor.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <iostream>

namespace svcproxy::proxy {

std::optional<model::EndpointAddress> endpoint_of_sockaddr(const sockaddr_storage& address) {
  model::EndpointAddress out;
  if (address.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(address);
    out.ip.family = model::IPFamily::V4;
    std::memcpy(out.ip.bytes.data(), &in.sin_addr, 4);
    out.port = ntohs(in.sin_port);
    return out;
  }
  if (address.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
    out.port = ntohs(in6.sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
      out.ip.family = model::IPFamily::V4;
      std::memcpy(out.ip.bytes.data(), in6.sin6_addr.s6_addr + 12, 4);
    } else {
      out.ip.family = model::IPFamily::V6;
      std::memcpy(out.ip.bytes.data(), in6.sin6_addr.s6_addr, 16);
    }
    return out;
  }
  return std::nullopt;
}

ConntrackAttributor::ConntrackAttributor(uint64_t give_up_after) : give_up_after_(give_up_after) {
  idle_.push_back(std::make_unique<dataplane::ConntrackLookup>());
}

void ConntrackAttributor::note_miss() {
  if (give_up_after_ == 0 || hit_.load(std::memory_order_relaxed)) return;
  if (misses_.fetch_add(1, std::memory_order_relaxed) + 1 < give_up_after_) return;
  if (!gave_up_.exchange(true))
    std::cerr << "svcproxy: loadtest: --attribute auto: none of " << give_up_after_
              << " connections was DNATed in this namespace's conntrack (not run on the node that does the DNAT); "
                 "attributing by the answers only\n";
}

std::unique_ptr<dataplane::ConntrackLookup> ConntrackAttributor::borrow() {
  {
    std::lock_guard lock(mutex_);
    if (!idle_.empty()) {
      auto lookup = std::move(idle_.back());
      idle_.pop_back();
      return lookup;
    }
  }
  return std::make_unique<dataplane::ConntrackLookup>();  // outside the lock: opening a socket is a syscall or two
}

void ConntrackAttributor::give_back(std::unique_ptr<dataplane::ConntrackLookup> lookup) {
  std::lock_guard lock(mutex_);
  idle_.push_back(std::move(lookup));
}

std::optional<std::string> ConntrackAttributor::endpoint_of(const sockaddr_storage& local,
                                                            const sockaddr_storage& remote, int protocol) {
  if (gave_up_.load(std::memory_order_relaxed)) return std::nullopt;
  const auto src = endpoint_of_sockaddr(local);
  const auto dst = endpoint_of_sockaddr(remote);
  if (!src || !dst || src->ip.family != dst->ip.family) return std::nullopt;
  dataplane::ConntrackLookup::Tuple tuple{.src = src->ip,
                                          .sport = src->port,
                                          .dst = dst->ip,
                                          .dport = dst->port,
                                          .protocol = protocol == IPPROTO_UDP ? model::Protocol::UDP
                                                                              : model::Protocol::TCP};
  auto lookup = borrow();
  std::optional<model::EndpointAddress> reply;
  try {
    reply = lookup->reply_source(tuple);
  } catch (const dataplane::ConntrackError&) {
    // A failed lookup leaves this request unattributed ("?"), it does not
    // end the run; the socket is dropped in case it is what failed.
    return std::nullopt;
  }
  give_back(std::move(lookup));
  // Not DNATed (the reply comes from where the client sent it): no endpoint.
  if (!reply || (reply->ip == dst->ip && reply->port == dst->port)) {
    note_miss();
    return std::nullopt;
  }
  hit_.store(true, std::memory_order_relaxed);
  return reply->str();
}

}  // namespace svcproxy::proxy
