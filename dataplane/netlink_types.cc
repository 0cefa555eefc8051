#include "dataplane/netlink_types.h"

#include <arpa/inet.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>

#include <cstring>
#include <new>
#include <stdexcept>

namespace svcproxy::dataplane::nl {

using ir::KeyField;
using ir::KeyType;
using model::IPFamily;

void NftnlDeleter::operator()(nftnl_table* p) const { nftnl_table_free(p); }
void NftnlDeleter::operator()(nftnl_chain* p) const { nftnl_chain_free(p); }
void NftnlDeleter::operator()(nftnl_set* p) const { nftnl_set_free(p); }
void NftnlDeleter::operator()(nftnl_set_elem* p) const { nftnl_set_elem_free(p); }
void NftnlDeleter::operator()(nftnl_rule* p) const { nftnl_rule_free(p); }
void NftnlDeleter::operator()(nftnl_expr* p) const { nftnl_expr_free(p); }
void NftnlDeleter::operator()(nftnl_udata_buf* p) const { nftnl_udata_buf_free(p); }

namespace {
template <typename Ptr, typename T>
Ptr checked(T* p) {
  if (!p) throw std::bad_alloc();
  return Ptr(p);
}
}  // namespace

TablePtr make_table() { return checked<TablePtr>(nftnl_table_alloc()); }
ChainPtr make_chain() { return checked<ChainPtr>(nftnl_chain_alloc()); }
SetPtr make_set() { return checked<SetPtr>(nftnl_set_alloc()); }
ElemPtr make_elem() { return checked<ElemPtr>(nftnl_set_elem_alloc()); }
RulePtr make_rule() { return checked<RulePtr>(nftnl_rule_alloc()); }
ExprPtr make_expr(const char* name) { return checked<ExprPtr>(nftnl_expr_alloc(name)); }
// nft's NFT_USERDATA_MAXLEN.
UdataPtr make_udata() { return checked<UdataPtr>(nftnl_udata_buf_alloc(256)); }

uint32_t nfproto(IPFamily family) { return family == IPFamily::V4 ? NFPROTO_IPV4 : NFPROTO_IPV6; }
size_t addr_len(IPFamily family) { return family == IPFamily::V4 ? 4 : 16; }

bool uses_typeof(const ir::Set& set) {
  for (auto t : set.key)
    if (t == KeyType::Slot) return true;
  return false;
}

uint32_t type_id(KeyType type, IPFamily family) {
  switch (type) {
    case KeyType::Addr: return family == IPFamily::V4 ? kTypeIPv4Addr : kTypeIPv6Addr;
    case KeyType::Proto: return kTypeInetProto;
    case KeyType::Port: return kTypeInetService;
    case KeyType::Slot: return kTypeInteger;  // numgen's datatype
  }
  return 0;
}

uint32_t key_type_id(const std::vector<KeyType>& types, IPFamily family) {
  uint32_t id = 0;
  for (auto t : types) id = (id << kTypeBits) | type_id(t, family);
  return id;
}

std::vector<KeyType> split_key_type(uint32_t id) {
  std::vector<KeyType> types;
  while (id != 0) {
    switch (id & ((1u << kTypeBits) - 1)) {
      case kTypeIPv4Addr:
      case kTypeIPv6Addr: types.insert(types.begin(), KeyType::Addr); break;
      case kTypeInetProto: types.insert(types.begin(), KeyType::Proto); break;
      case kTypeInetService: types.insert(types.begin(), KeyType::Port); break;
      case kTypeInteger: types.insert(types.begin(), KeyType::Slot); break;
      default: return {};
    }
    id >>= kTypeBits;
  }
  return types;
}

size_t value_len(KeyType type, IPFamily family) {
  switch (type) {
    case KeyType::Addr: return addr_len(family);
    case KeyType::Proto: return 1;
    case KeyType::Port: return 2;
    case KeyType::Slot: return 4;
  }
  return 0;
}

namespace {
size_t padded(size_t len) { return (len + 3) & ~size_t{3}; }
}  // namespace

size_t key_len(const std::vector<KeyType>& types, IPFamily family) {
  if (types.size() == 1) return value_len(types[0], family);
  size_t len = 0;
  for (auto t : types) len += padded(value_len(t, family));
  return len;
}

void append_values(std::string& out, std::span<const ir::Value> values, const std::vector<KeyType>& types,
                   IPFamily family) {
  if (values.size() != types.size()) throw std::invalid_argument("value tuple does not match the set's type");
  const bool concat = types.size() > 1;
  for (size_t i = 0; i < values.size(); ++i) {
    const size_t start = out.size();
    const KeyType type = types[i];
    const ir::Value& v = values[i];
    if (type == KeyType::Addr && std::holds_alternative<model::IPAddress>(v)) {
      const auto& ip = std::get<model::IPAddress>(v);
      if (ip.family != family) throw std::invalid_argument("address of the other family: " + ip.str());
      out.append(reinterpret_cast<const char*>(ip.bytes.data()), addr_len(family));
    } else if (type == KeyType::Proto && std::holds_alternative<model::Protocol>(v)) {
      out.push_back(static_cast<char>(std::get<model::Protocol>(v)));
    } else if (type == KeyType::Port && std::holds_alternative<uint16_t>(v)) {
      const uint16_t port = htons(std::get<uint16_t>(v));
      out.append(reinterpret_cast<const char*>(&port), sizeof port);
    } else if (type == KeyType::Slot && std::holds_alternative<uint32_t>(v)) {
      // numgen writes its result in host byte order.
      const uint32_t slot = std::get<uint32_t>(v);
      out.append(reinterpret_cast<const char*>(&slot), sizeof slot);
    } else {
      throw std::invalid_argument("value of the wrong type for the set's key or data");
    }
    if (concat) out.resize(start + padded(out.size() - start), '\0');
  }
}

void parse_values(const void* data, size_t len, const std::vector<KeyType>& types, IPFamily family,
                  std::span<ir::Value> out) {
  if (out.size() < types.size()) throw std::runtime_error("too many components");
  if (len != key_len(types, family)) {
    throw std::runtime_error("value of " + std::to_string(len) + " bytes where " +
                             std::to_string(key_len(types, family)) + " were expected");
  }
  const auto* p = static_cast<const uint8_t*>(data);
  const bool concat = types.size() > 1;
  ir::Value* values = out.data();
  for (auto type : types) {
    const size_t n = value_len(type, family);
    switch (type) {
      case KeyType::Addr: {
        model::IPAddress ip;
        ip.family = family;
        std::memcpy(ip.bytes.data(), p, n);
        *values++ = ip;
        break;
      }
      case KeyType::Proto: {
        const uint8_t proto = p[0];
        if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP) {
          throw std::runtime_error("unknown protocol " + std::to_string(proto));
        }
        *values++ = static_cast<model::Protocol>(proto);
        break;
      }
      case KeyType::Port: {
        uint16_t port;
        std::memcpy(&port, p, sizeof port);
        *values++ = static_cast<uint16_t>(ntohs(port));
        break;
      }
      case KeyType::Slot: {
        uint32_t slot;
        std::memcpy(&slot, p, sizeof slot);
        *values++ = slot;
        break;
      }
    }
    p += concat ? padded(n) : n;
  }
}

// ---- set userdata ------------------------------------------------------------

namespace {

// nft's byte order enum and expression type ids (nftables include/datatype.h,
// include/expression.h), and the userdata it attaches to `typeof` keys.
constexpr uint32_t kByteorderInvalid = 0;
constexpr uint32_t kByteorderHost = 1;
constexpr uint32_t kByteorderBig = 2;
constexpr uint32_t kExprVerdict = 1;
constexpr uint32_t kExprPayload = 7;
constexpr uint32_t kExprMeta = 9;
constexpr uint32_t kExprConcat = 13;
constexpr uint32_t kExprNumgen = 23;
// nft's protocol description ids and header field indexes for payload udata.
constexpr uint32_t kProtoDescTransport = 11;  // "th"
constexpr uint32_t kProtoDescIPv4 = 12;
constexpr uint32_t kProtoDescIPv6 = 13;
constexpr uint32_t kIPv4FieldDaddr = 12;
constexpr uint32_t kIPv6FieldDaddr = 9;
constexpr uint32_t kTransportFieldDport = 2;

uint32_t byteorder(KeyType type) { return type == KeyType::Slot ? kByteorderHost : kByteorderBig; }

// One `typeof` expression: {TYPEOF_EXPR: etype, TYPEOF_DATA: {expr fields}}.
// These are the expressions render_nft names in `typeof` declarations.
void put_typeof_expr(nftnl_udata_buf* buf, KeyType type, IPFamily family) {
  uint32_t etype = 0;
  std::vector<uint32_t> fields;
  switch (type) {
    case KeyType::Addr:  // ip daddr / ip6 daddr
      etype = kExprPayload;
      fields = family == IPFamily::V4 ? std::vector<uint32_t>{kProtoDescIPv4, kIPv4FieldDaddr}
                                      : std::vector<uint32_t>{kProtoDescIPv6, kIPv6FieldDaddr};
      break;
    case KeyType::Proto:  // meta l4proto
      etype = kExprMeta;
      fields = {NFT_META_L4PROTO};
      break;
    case KeyType::Port:  // th dport
      etype = kExprPayload;
      fields = {kProtoDescTransport, kTransportFieldDport};
      break;
    case KeyType::Slot:  // numgen random mod 1 (type, modulus, offset)
      etype = kExprNumgen;
      fields = {NFT_NG_RANDOM, 1, 0};
      break;
  }
  nftnl_udata_put_u32(buf, NFTNL_UDATA_SET_TYPEOF_EXPR, etype);
  nftnl_udata* data = nftnl_udata_nest_start(buf, NFTNL_UDATA_SET_TYPEOF_DATA);
  for (size_t i = 0; i < fields.size(); ++i) nftnl_udata_put_u32(buf, static_cast<uint8_t>(i), fields[i]);
  nftnl_udata_nest_end(buf, data);
}

// KEY_TYPEOF / DATA_TYPEOF. With `type` declarations nft records only that a
// concatenation is there (an empty concat); with `typeof` every component.
void put_typeof(nftnl_udata_buf* buf, uint8_t attr, const std::vector<KeyType>& types, IPFamily family,
                bool with_components) {
  nftnl_udata* outer = nftnl_udata_nest_start(buf, attr);
  if (types.size() == 1) {
    put_typeof_expr(buf, types[0], family);
  } else {
    nftnl_udata_put_u32(buf, NFTNL_UDATA_SET_TYPEOF_EXPR, kExprConcat);
    nftnl_udata* list = nftnl_udata_nest_start(buf, NFTNL_UDATA_SET_TYPEOF_DATA);
    if (with_components) {
      for (size_t i = 0; i < types.size(); ++i) {
        nftnl_udata* component = nftnl_udata_nest_start(buf, static_cast<uint8_t>(i));
        put_typeof_expr(buf, types[i], family);
        nftnl_udata_nest_end(buf, component);
      }
    }
    nftnl_udata_nest_end(buf, list);
  }
  nftnl_udata_nest_end(buf, outer);
}

std::string bytes_of(nftnl_udata_buf* buf) {
  return std::string(static_cast<const char*>(nftnl_udata_buf_data(buf)), nftnl_udata_buf_len(buf));
}

}  // namespace

std::string set_userdata(const ir::Set& set, IPFamily family) {
  auto buf = make_udata();
  const bool typeof_decl = uses_typeof(set);
  const bool concat = set.key.size() > 1;
  nftnl_udata_put_u32(buf.get(), NFTNL_UDATA_SET_KEYBYTEORDER, concat ? kByteorderInvalid : byteorder(set.key[0]));
  // An objref map (counter) has no data byte order, as nft writes it.
  if (set.is_map() && !set.is_counter_map) {
    const bool data_order = set.is_verdict_map || set.data.size() > 1;
    nftnl_udata_put_u32(buf.get(), NFTNL_UDATA_SET_DATABYTEORDER,
                        data_order ? kByteorderInvalid : byteorder(set.data[0]));
  }
  // A single `type` key is a constant expression: nft records no typeof.
  if (typeof_decl || concat) put_typeof(buf.get(), NFTNL_UDATA_SET_KEY_TYPEOF, set.key, family, typeof_decl);
  if (set.is_map()) {
    if (!set.is_verdict_map && (typeof_decl || set.data.size() > 1)) {
      put_typeof(buf.get(), NFTNL_UDATA_SET_DATA_TYPEOF, set.data, family, typeof_decl);
    }
    nftnl_udata_put_u32(buf.get(), NFTNL_UDATA_SET_DATA_INTERVAL, 0);
  }
  return bytes_of(buf.get());
}

std::string anonymous_vmap_userdata() {
  auto buf = make_udata();
  nftnl_udata_put_u32(buf.get(), NFTNL_UDATA_SET_KEYBYTEORDER, kByteorderHost);
  nftnl_udata_put_u32(buf.get(), NFTNL_UDATA_SET_DATABYTEORDER, kByteorderInvalid);
  nftnl_udata* data = nftnl_udata_nest_start(buf.get(), NFTNL_UDATA_SET_DATA_TYPEOF);
  nftnl_udata_put_u32(buf.get(), NFTNL_UDATA_SET_TYPEOF_EXPR, kExprVerdict);
  nftnl_udata* fields = nftnl_udata_nest_start(buf.get(), NFTNL_UDATA_SET_TYPEOF_DATA);
  nftnl_udata_nest_end(buf.get(), fields);
  nftnl_udata_nest_end(buf.get(), data);
  nftnl_udata_put_u32(buf.get(), NFTNL_UDATA_SET_DATA_INTERVAL, 0);
  return bytes_of(buf.get());
}

// ---- fields and registers ------------------------------------------------------

uint32_t field_words(KeyField field, IPFamily family) {
  switch (field) {
    case KeyField::SrcAddr:
    case KeyField::DstAddr: return family == IPFamily::V4 ? 1 : 4;
    case KeyField::L4Proto:
    case KeyField::DstPort:
    case KeyField::Numgen: return 1;
  }
  return 1;
}

uint32_t register_at(uint32_t word) {
  constexpr uint32_t kWordsPerRegister = NFT_REG_SIZE / NFT_REG32_SIZE;
  if (word % kWordsPerRegister == 0) return NFT_REG_1 + word / kWordsPerRegister;
  return NFT_REG32_00 + word;
}

uint32_t addr_offset(KeyField field, IPFamily family) {
  const bool src = field == KeyField::SrcAddr;
  if (family == IPFamily::V4) return src ? 12 : 16;  // struct iphdr saddr / daddr
  return src ? 8 : 24;                               // struct ipv6hdr saddr / daddr
}

}  // namespace svcproxy::dataplane::nl
