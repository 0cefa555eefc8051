#include "dataplane/conntrack.h"

#include <arpa/inet.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
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

struct DumpState {
  const std::vector<StaleUdpFlow>* flows;
  bool ipv4;
  std::vector<CtPtr> doomed;
};

int on_entry(enum nf_conntrack_msg_type, struct nf_conntrack* ct, void* data) {
  auto* state = static_cast<DumpState*>(data);
  if (nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO) != IPPROTO_UDP) return NFCT_CB_CONTINUE;
  const auto dst = address_of(ct, state->ipv4, ATTR_ORIG_IPV4_DST, ATTR_ORIG_IPV6_DST);
  const uint16_t dport = ntohs(nfct_get_attr_u16(ct, ATTR_ORIG_PORT_DST));
  const auto reply_src = address_of(ct, state->ipv4, ATTR_REPL_IPV4_SRC, ATTR_REPL_IPV6_SRC);
  const uint16_t reply_sport = ntohs(nfct_get_attr_u16(ct, ATTR_REPL_PORT_SRC));
  for (const auto& flow : *state->flows) {
    if (matches(flow, dst, dport, reply_src, reply_sport)) {
      state->doomed.emplace_back(nfct_clone(ct));
      break;
    }
  }
  return NFCT_CB_CONTINUE;
}

}  // namespace

void ConntrackCleaner::HandleDeleter::operator()(nfct_handle* h) const { nfct_close(h); }

ConntrackCleaner::ConntrackCleaner() : handle_(nfct_open(CONNTRACK, 0)) {
  if (!handle_) throw ConntrackError(std::string("conntrack: cannot open netlink socket: ") + std::strerror(errno));
}

ConntrackCleaner::~ConntrackCleaner() = default;

size_t ConntrackCleaner::delete_stale(const std::vector<StaleUdpFlow>& flows) {
  size_t deleted = 0;
  for (const auto family : {model::IPFamily::V4, model::IPFamily::V6}) {
    std::vector<StaleUdpFlow> mine;
    for (const auto& f : flows)
      if (f.family == family) mine.push_back(f);
    if (mine.empty()) continue;
    DumpState state{&mine, family == model::IPFamily::V4, {}};
    nfct_callback_register(handle_.get(), NFCT_T_ALL, on_entry, &state);
    // Only UDP entries of this family are dumped (kernel-side filter).
    std::unique_ptr<nfct_filter_dump, decltype(&nfct_filter_dump_destroy)> filter(nfct_filter_dump_create(),
                                                                                   nfct_filter_dump_destroy);
    nfct_filter_dump_set_attr_u8(filter.get(), NFCT_FILTER_DUMP_L3NUM,
                                 family == model::IPFamily::V4 ? AF_INET : AF_INET6);
    const int rc = nfct_query(handle_.get(), NFCT_Q_DUMP_FILTER, filter.get());
    nfct_callback_unregister(handle_.get());
    if (rc < 0) throw ConntrackError(std::string("conntrack: dump failed: ") + std::strerror(errno));
    for (const auto& ct : state.doomed) {
      // An entry may expire between dump and delete: ENOENT is success.
      if (nfct_query(handle_.get(), NFCT_Q_DESTROY, ct.get()) == 0) {
        ++deleted;
      } else if (errno != ENOENT) {
        throw ConntrackError(std::string("conntrack: delete failed: ") + std::strerror(errno));
      }
    }
  }
  return deleted;
}

}  // namespace svcproxy::dataplane
