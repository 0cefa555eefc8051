#include "dataplane/conntrack.h"

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string>

namespace svcproxy::dataplane {
namespace {

struct CtDeleter {
  void operator()(nf_conntrack* ct) const { nfct_destroy(ct); }
};
using CtPtr = std::unique_ptr<nf_conntrack, CtDeleter>;

model::IPAddress address_of(const nf_conntrack* ct, bool ipv4, nf_conntrack_attr v4, nf_conntrack_attr v6) {
  model::IPAddress ip;
  if (ipv4) {
    ip.family = model::IPFamily::V4;
    std::memcpy(ip.bytes.data(), nfct_get_attr(ct, v4), 4);
  } else {
    ip.family = model::IPFamily::V6;
    std::memcpy(ip.bytes.data(), nfct_get_attr(ct, v6), 16);
  }
  return ip;
}

bool matches(const StaleUdpFlow& flow, const model::IPAddress& dst, uint16_t dport, const model::IPAddress& reply_src,
             uint16_t reply_sport) {
  if (flow.port != dport) return false;
  if (flow.destination && *flow.destination != dst) return false;
  if (flow.endpoint && (flow.endpoint->ip != reply_src || flow.endpoint->port != reply_sport)) return false;
  return true;
}

// One UDP entry as the cleaner sees it.
struct UdpEntry {
  model::IPAddress dst;
  uint16_t dport = 0;
  model::IPAddress reply_src;
  uint16_t reply_sport = 0;
};

struct DumpState {
  bool ipv4 = true;
  std::function<bool(const UdpEntry&)> doomed;
  std::vector<CtPtr> entries;
};

int on_entry(enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) {
  auto* state = static_cast<DumpState*>(data);
  if (nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO) != IPPROTO_UDP) return NFCT_CB_CONTINUE;
  UdpEntry entry;
  entry.dst = address_of(ct, state->ipv4, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST);
  entry.dport = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST));
  entry.reply_src = address_of(ct, state->ipv4, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC);
  entry.reply_sport = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC));
  if (state->doomed(entry)) state->entries.emplace_back(nfct_clone(ct));
  return NFCT_CB_CONTINUE;
}

}  // namespace

void ConntrackCleaner::HandleDeleter::operator()(nfct_handle* h) const { nfct_close(h); }

ConntrackCleaner::ConntrackCleaner() : handle_(nfct_open(CONNTRACK, 0)) {
  if (!handle_) throw ConntrackError(std::string("conntrack: cannot open netlink socket: ") + std::strerror(errno));
}

ConntrackCleaner::~ConntrackCleaner() = default;

template <typename Predicate>
size_t ConntrackCleaner::delete_matching(model::IPFamily family, Predicate doomed) {
  DumpState state;
  state.ipv4 = family == model::IPFamily::V4;
  state.doomed = doomed;
  nfct_callback_register(handle_.get(), NFCT_T_ALL, on_entry, &state);
  // The kernel filters by family only (libnetfilter-conntrack 1.0.9 has no
  // protocol filter): a cleanup costs one pass over this family's entries.
  std::unique_ptr<nfct_filter_dump, decltype(&nfct_filter_dump_destroy)> filter(nfct_filter_dump_create(),
                                                                                 nfct_filter_dump_destroy);
  nfct_filter_dump_set_attr_u8(filter.get(), NFCT_FILTER_DUMP_L3NUM, state.ipv4 ? AF_INET : AF_INET6);
  const int rc = nfct_query(handle_.get(), NFCT_Q_DUMP_FILTER, filter.get());
  nfct_callback_unregister(handle_.get());
  if (rc < 0) throw ConntrackError(std::string("conntrack: dump failed: ") + std::strerror(errno));
  size_t deleted = 0;
  for (const auto& ct : state.entries) {
    // An entry may expire between dump and delete: ENOENT is success.
    if (nfct_query(handle_.get(), NFCT_Q_DESTROY, ct.get()) == 0) {
      ++deleted;
    } else if (errno != ENOENT) {
      throw ConntrackError(std::string("conntrack: delete failed: ") + std::strerror(errno));
    }
  }
  return deleted;
}

size_t ConntrackCleaner::delete_stale(const std::vector<StaleUdpFlow>& flows) {
  size_t deleted = 0;
  for (const auto family : {model::IPFamily::V4, model::IPFamily::V6}) {
    std::vector<StaleUdpFlow> mine;
    for (const auto& f : flows)
      if (f.family == family) mine.push_back(f);
    if (mine.empty()) continue;
    deleted += delete_matching(family, [&](const UdpEntry& e) {
      for (const auto& flow : mine)
        if (matches(flow, e.dst, e.dport, e.reply_src, e.reply_sport)) return true;
      return false;
    });
  }
  return deleted;
}

size_t ConntrackCleaner::delete_orphans(const std::vector<model::ServicePortState>& ports,
                                        const std::vector<model::IPAddress>& nodeport_ips) {
  // (destination, port) -> live endpoints; NodePorts keyed by each node IP.
  std::map<std::pair<model::IPAddress, uint16_t>, std::set<model::EndpointAddress>> live;
  for (const auto& sp : ports) {
    if (sp.name.protocol != model::Protocol::UDP) continue;
    std::set<model::EndpointAddress> endpoints(sp.cluster_endpoints.begin(), sp.cluster_endpoints.end());
    endpoints.insert(sp.local_endpoints.begin(), sp.local_endpoints.end());
    auto add = [&](const model::IPAddress& ip, uint16_t port) { live[{ip, port}].insert(endpoints.begin(), endpoints.end()); };
    add(sp.cluster_ip, sp.port);
    for (const auto& ip : sp.external_ips) add(ip, sp.port);
    for (const auto& ip : sp.load_balancer_ips) add(ip, sp.port);
    if (sp.node_port)
      for (const auto& ip : nodeport_ips)
        if (ip.family == sp.name.family) add(ip, sp.node_port);
  }
  if (live.empty()) return 0;
  size_t deleted = 0;
  for (const auto family : {model::IPFamily::V4, model::IPFamily::V6}) {
    // No service address of this family: nothing to dump it for.
    if (std::none_of(live.begin(), live.end(), [&](const auto& kv) { return kv.first.first.family == family; }))
      continue;
    deleted += delete_matching(family, [&](const UdpEntry& e) {
      // Only DNATed entries (the reply comes from elsewhere) to a service
      // address whose endpoint is gone.
      if (e.reply_src == e.dst && e.reply_sport == e.dport) return false;
      auto it = live.find({e.dst, e.dport});
      return it != live.end() && !it->second.contains(model::EndpointAddress{e.reply_src, e.reply_sport});
    });
  }
  return deleted;
}

void ConntrackLookup::HandleDeleter::operator()(nfct_handle* h) const { nfct_close(h); }

namespace {

int on_lookup(enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) {
  auto* found = static_cast<std::optional<model::EndpointAddress>*>(data);
  const bool ipv4 = nfct_get_attr_u8(ct, ATTR_L3PROTO) == AF_INET;
  *found = model::EndpointAddress{address_of(ct, ipv4, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC),
                                  ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC))};
  // CONTINUE, not STOP: stopping leaves the kernel's ACK unread on the
  // socket, and the next query would read it as its (empty) answer.
  return NFCT_CB_CONTINUE;
}

}  // namespace

ConntrackLookup::ConntrackLookup() : handle_(nfct_open(CONNTRACK, 0)) {
  if (!handle_) throw ConntrackError(std::string("conntrack: cannot open netlink socket: ") + std::strerror(errno));
  nfct_callback_register(handle_.get(), NFCT_T_ALL, on_lookup, &found_);
}

ConntrackLookup::~ConntrackLookup() = default;

std::optional<model::EndpointAddress> ConntrackLookup::reply_source(const Tuple& original) {
  CtPtr ct(nfct_new());
  if (!ct) throw ConntrackError("conntrack: out of memory");
  const bool ipv4 = original.src.family == model::IPFamily::V4;
  nfct_set_attr_u8(ct.get(), ATTR_L3PROTO, ipv4 ? AF_INET : AF_INET6);
  nfct_set_attr(ct.get(), ipv4 ? ATTR_IPV4_SRC : ATTR_IPV6_SRC, original.src.bytes.data());
  nfct_set_attr(ct.get(), ipv4 ? ATTR_IPV4_DST : ATTR_IPV6_DST, original.dst.bytes.data());
  nfct_set_attr_u8(ct.get(), ATTR_L4PROTO, static_cast<uint8_t>(original.protocol));
  nfct_set_attr_u16(ct.get(), ATTR_PORT_SRC, htons(original.sport));
  nfct_set_attr_u16(ct.get(), ATTR_PORT_DST, htons(original.dport));
  found_.reset();
  if (nfct_query(handle_.get(), NFCT_Q_GET, ct.get()) < 0) {
    if (errno == ENOENT) return std::nullopt;
    throw ConntrackError(std::string("conntrack: lookup failed: ") + std::strerror(errno));
  }
  return found_;
}

}  // namespace svcproxy::dataplane
