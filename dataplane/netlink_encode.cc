#include "dataplane/netlink_encode.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/common.h>
#include <libnftnl/expr.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <libnftnl/udata.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <type_traits>

#include "dataplane/netlink_types.h"
#include "dataplane/render.h"

namespace svcproxy::dataplane {
namespace {

using ir::KeyField;
using model::IPFamily;
using namespace nl;

// ---- naming objects in error messages ---------------------------------------

std::string table_id(const ir::Table& t) {
  return std::string(ir::family_keyword(t.family)) + " " + t.name;
}

std::string set_id_text(const ir::Table& t, const ir::Set& s) {
  return std::string(s.is_map() ? "map " : "set ") + table_id(t) + " " + s.name;
}

// Index of the nested attribute of `list_type` that contains byte `offset`
// of the message, and the attribute itself.
std::optional<std::pair<size_t, const nlattr*>> locate_in_list(const nlmsghdr* nlh, uint16_t list_type,
                                                               uint32_t offset) {
  if (offset == 0) return std::nullopt;
  const char* base = reinterpret_cast<const char*>(nlh);
  const char* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  const auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)));
  while (mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr)))) {
    if (mnl_attr_get_type(attr) == list_type) {
      const char* end = reinterpret_cast<const char*>(attr) + attr->nla_len;
      const auto* item = static_cast<const nlattr*>(mnl_attr_get_payload(attr));
      size_t index = 0;
      while (mnl_attr_ok(item, static_cast<int>(end - reinterpret_cast<const char*>(item)))) {
        const char* start = reinterpret_cast<const char*>(item);
        if (base + offset >= start && base + offset < start + item->nla_len) return std::pair{index, item};
        item = mnl_attr_next(item);
        ++index;
      }
    }
    attr = mnl_attr_next(attr);
  }
  return std::nullopt;
}

// "expression 3 (immediate)" for the expression of a rule message the kernel blamed.
std::string blamed_expression(const nlmsghdr* nlh, uint32_t offset) {
  auto found = locate_in_list(nlh, NFTA_RULE_EXPRESSIONS, offset);
  if (!found) return {};
  std::string name;
  const auto* attr = static_cast<const nlattr*>(mnl_attr_get_payload(found->second));
  const char* end = reinterpret_cast<const char*>(found->second) + found->second->nla_len;
  while (mnl_attr_ok(attr, static_cast<int>(end - reinterpret_cast<const char*>(attr)))) {
    if (mnl_attr_get_type(attr) == NFTA_EXPR_NAME) name = mnl_attr_get_str(attr);
    attr = mnl_attr_next(attr);
  }
  return ", expression " + std::to_string(found->first + 1) + (name.empty() ? "" : " (" + name + ")");
}

// ---- expressions ----------------------------------------------------------------

// Makes the IR visitors below exhaustive: an alternative added to ir::Match
// or ir::Statement fails to compile here instead of being silently dropped.
template <typename>
struct NotEncoded : std::false_type {};

void put(nftnl_rule* rule, ExprPtr expr) { nftnl_rule_add_expr(rule, expr.release()); }

ExprPtr payload(uint32_t dreg, uint32_t base, uint32_t offset, uint32_t len) {
  auto e = make_expr("payload");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_DREG, dreg);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_BASE, base);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_OFFSET, offset);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_PAYLOAD_LEN, len);
  return e;
}

ExprPtr meta_load(uint32_t key, uint32_t dreg) {
  auto e = make_expr("meta");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_DREG, dreg);
  return e;
}

ExprPtr meta_set(uint32_t key, uint32_t sreg) {
  auto e = make_expr("meta");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_KEY, key);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_META_SREG, sreg);
  return e;
}

ExprPtr cmp(uint32_t sreg, uint32_t op, const void* data, size_t len) {
  auto e = make_expr("cmp");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CMP_SREG, sreg);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CMP_OP, op);
  nftnl_expr_set(e.get(), NFTNL_EXPR_CMP_DATA, data, static_cast<uint32_t>(len));
  return e;
}

ExprPtr cmp_u32(uint32_t sreg, uint32_t op, uint32_t host_value) { return cmp(sreg, op, &host_value, 4); }

// reg = (reg & mask) ^ xor
ExprPtr bitwise(uint32_t reg, const void* mask, const void* xor_bits, size_t len) {
  auto e = make_expr("bitwise");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BITWISE_SREG, reg);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BITWISE_DREG, reg);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_BITWISE_LEN, static_cast<uint32_t>(len));
  nftnl_expr_set(e.get(), NFTNL_EXPR_BITWISE_MASK, mask, static_cast<uint32_t>(len));
  nftnl_expr_set(e.get(), NFTNL_EXPR_BITWISE_XOR, xor_bits, static_cast<uint32_t>(len));
  return e;
}

ExprPtr bitwise_u32(uint32_t reg, uint32_t mask, uint32_t xor_bits) { return bitwise(reg, &mask, &xor_bits, 4); }

// A lookup in a named set (or, with set_id, an anonymous one of this
// transaction); dreg: NFT_REG_VERDICT for verdict maps, a data register for
// data maps, none for plain sets.
ExprPtr lookup(uint32_t sreg, const std::string& set, std::optional<uint32_t> dreg, bool invert,
               uint32_t set_id = 0) {
  auto e = make_expr("lookup");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_SREG, sreg);
  nftnl_expr_set_str(e.get(), NFTNL_EXPR_LOOKUP_SET, set.c_str());
  if (set_id) nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_SET_ID, set_id);
  if (dreg) nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_DREG, *dreg);
  if (invert) nftnl_expr_set_u32(e.get(), NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
  return e;
}

ExprPtr numgen(uint32_t dreg, uint32_t modulus) {
  if (modulus == 0) throw std::invalid_argument("numgen modulus 0");
  auto e = make_expr("numgen");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NG_DREG, dreg);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NG_TYPE, NFT_NG_RANDOM);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NG_MODULUS, modulus);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NG_OFFSET, 0);
  return e;
}

ExprPtr immediate_data(uint32_t dreg, const void* data, size_t len) {
  auto e = make_expr("immediate");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_IMM_DREG, dreg);
  nftnl_expr_set(e.get(), NFTNL_EXPR_IMM_DATA, data, static_cast<uint32_t>(len));
  return e;
}

int verdict_code(ir::VerdictKind kind) {
  switch (kind) {
    case ir::VerdictKind::Accept: return NF_ACCEPT;
    case ir::VerdictKind::Drop: return NF_DROP;
    case ir::VerdictKind::Return: return NFT_RETURN;
    case ir::VerdictKind::Jump: return NFT_JUMP;
    case ir::VerdictKind::Goto: return NFT_GOTO;
  }
  return NF_ACCEPT;
}

bool has_chain(ir::VerdictKind kind) { return kind == ir::VerdictKind::Jump || kind == ir::VerdictKind::Goto; }

ExprPtr immediate_verdict(const ir::Verdict& v) {
  auto e = make_expr("immediate");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_IMM_DREG, NFT_REG_VERDICT);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_IMM_VERDICT, static_cast<uint32_t>(verdict_code(v.kind)));
  if (has_chain(v.kind)) nftnl_expr_set_str(e.get(), NFTNL_EXPR_IMM_CHAIN, v.chain.c_str());
  return e;
}

ExprPtr dnat(IPFamily family, uint32_t reg_addr, uint32_t reg_proto, std::optional<uint32_t> flags) {
  auto e = make_expr("nat");
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NAT_TYPE, NFT_NAT_DNAT);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NAT_FAMILY, nfproto(family));
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NAT_REG_ADDR_MIN, reg_addr);
  nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NAT_REG_PROTO_MIN, reg_proto);
  if (flags) nftnl_expr_set_u32(e.get(), NFTNL_EXPR_NAT_FLAGS, *flags);
  return e;
}

// ---- keys ---------------------------------------------------------------------

void load_field(nftnl_rule* rule, KeyField field, IPFamily family, uint32_t modulus, uint32_t reg) {
  switch (field) {
    case KeyField::SrcAddr:
    case KeyField::DstAddr:
      put(rule, payload(reg, NFT_PAYLOAD_NETWORK_HEADER, addr_offset(field, family),
                        static_cast<uint32_t>(addr_len(family))));
      break;
    case KeyField::L4Proto: put(rule, meta_load(NFT_META_L4PROTO, reg)); break;
    case KeyField::DstPort: put(rule, payload(reg, NFT_PAYLOAD_TRANSPORT_HEADER, 2, 2)); break;
    case KeyField::Numgen: put(rule, numgen(reg, modulus)); break;
  }
}

// Loads a (concatenated) key into consecutive registers from NFT_REG_1, as
// nft linearizes a concatenation.
void load_key(nftnl_rule* rule, const std::vector<KeyField>& key, IPFamily family, uint32_t modulus) {
  if (key.empty()) throw std::invalid_argument("empty key");
  uint32_t word = 0;
  for (auto field : key) {
    load_field(rule, field, family, modulus, register_at(word));
    word += field_words(field, family);
  }
}

// ip saddr/daddr [!=] prefix: nft loads only the whole bytes of a
// byte-aligned prefix and compares them; any other prefix (and /0) is
// masked with a bitwise over the full address.
void match_cidr(nftnl_rule* rule, const ir::AddrMatch& m, IPFamily family) {
  const model::CIDR& cidr = *m.cidr;
  if (cidr.family() != family) throw std::invalid_argument("prefix of the other family: " + cidr.str());
  const uint32_t len = static_cast<uint32_t>(addr_len(family));
  const uint32_t offset = addr_offset(m.field, family);
  const uint32_t op = m.negate ? NFT_CMP_NEQ : NFT_CMP_EQ;
  const uint8_t* addr = cidr.address.bytes.data();
  if (cidr.prefix % 8 == 0 && cidr.prefix != 0) {
    const uint32_t bytes = cidr.prefix / 8u;
    put(rule, payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, offset, bytes));
    put(rule, cmp(NFT_REG_1, op, addr, bytes));
    return;
  }
  uint8_t mask[16] = {};
  const uint8_t zero[16] = {};
  for (uint32_t bit = 0; bit < cidr.prefix; ++bit) mask[bit / 8] |= static_cast<uint8_t>(0x80u >> (bit % 8));
  put(rule, payload(NFT_REG_1, NFT_PAYLOAD_NETWORK_HEADER, offset, len));
  put(rule, bitwise(NFT_REG_1, mask, zero, len));
  put(rule, cmp(NFT_REG_1, op, addr, len));
}

void encode_match(nftnl_rule* rule, const ir::Match& match, IPFamily family) {
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, ir::AddrMatch>) {
          if (m.field != KeyField::SrcAddr && m.field != KeyField::DstAddr) {
            throw std::invalid_argument("address match on a non-address field");
          }
          if (m.cidr) {
            match_cidr(rule, m, family);
          } else {
            load_field(rule, m.field, family, 0, NFT_REG_1);
            put(rule, lookup(NFT_REG_1, m.set, std::nullopt, m.negate));
          }
        } else if constexpr (std::is_same_v<T, ir::SetMatch>) {
          load_key(rule, m.key, family, 0);
          put(rule, lookup(NFT_REG_1, m.set, std::nullopt, false));
        } else if constexpr (std::is_same_v<T, ir::FibLocalMatch>) {
          auto e = make_expr("fib");
          nftnl_expr_set_u32(e.get(), NFTNL_EXPR_FIB_FLAGS,
                             m.field == KeyField::SrcAddr ? NFTA_FIB_F_SADDR : NFTA_FIB_F_DADDR);
          nftnl_expr_set_u32(e.get(), NFTNL_EXPR_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
          nftnl_expr_set_u32(e.get(), NFTNL_EXPR_FIB_DREG, NFT_REG_1);
          put(rule, std::move(e));
          put(rule, cmp_u32(NFT_REG_1, NFT_CMP_EQ, RTN_LOCAL));
        } else if constexpr (std::is_same_v<T, ir::MarkMatch>) {
          put(rule, meta_load(NFT_META_MARK, NFT_REG_1));
          put(rule, bitwise_u32(NFT_REG_1, m.bits, 0));
          put(rule, cmp_u32(NFT_REG_1, m.is_zero ? NFT_CMP_EQ : NFT_CMP_NEQ, 0));
        } else if constexpr (std::is_same_v<T, ir::CtDnatMatch>) {
          auto e = make_expr("ct");
          nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CT_KEY, NFT_CT_STATUS);
          nftnl_expr_set_u32(e.get(), NFTNL_EXPR_CT_DREG, NFT_REG_1);
          put(rule, std::move(e));
          put(rule, bitwise_u32(NFT_REG_1, IPS_DST_NAT, 0));
          put(rule, cmp_u32(NFT_REG_1, NFT_CMP_NEQ, 0));
        } else if constexpr (std::is_same_v<T, ir::ProtoMatch>) {
          const uint8_t proto = static_cast<uint8_t>(m.protocol);
          put(rule, meta_load(NFT_META_L4PROTO, NFT_REG_1));
          put(rule, cmp(NFT_REG_1, NFT_CMP_EQ, &proto, 1));
        } else if constexpr (std::is_same_v<T, ir::IifnameMatch>) {
          // As nft encodes it: the whole name padded with NULs to IFNAMSIZ
          // (so "cbr0" does not match "cbr01"); a prefix compares only its
          // own bytes.
          constexpr size_t kIfNameSize = 16;  // IFNAMSIZ
          // nft's text form takes at most 15 characters with the '*'.
          if (m.name.empty() || m.name.size() >= kIfNameSize - (m.prefix ? 1 : 0) ||
              m.name.find('\0') != std::string::npos)
            throw std::invalid_argument("iifname: bad interface name \"" + m.name + "\"");
          char name[kIfNameSize] = {};
          std::memcpy(name, m.name.data(), m.name.size());
          put(rule, meta_load(NFT_META_IIFNAME, NFT_REG_1));
          put(rule, cmp(NFT_REG_1, m.negate ? NFT_CMP_NEQ : NFT_CMP_EQ, name, m.prefix ? m.name.size() : kIfNameSize));
        } else {
          static_assert(NotEncoded<T>::value, "a new ir::Match needs an encoding (and a decoding)");
        }
      },
      match);
}

void encode_statement(nftnl_rule* rule, const ir::Statement& statement, IPFamily family, uint32_t anon_set_id) {
  std::visit(
      [&](const auto& s) {
        using T = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<T, ir::VmapStmt>) {
          load_key(rule, s.key, family, s.numgen_modulus);
          put(rule, lookup(NFT_REG_1, s.map, NFT_REG_VERDICT, false));
        } else if constexpr (std::is_same_v<T, ir::NumgenVmapStmt>) {
          put(rule, numgen(NFT_REG_1, static_cast<uint32_t>(s.chains.size())));
          put(rule, lookup(NFT_REG_1, "__map%d", NFT_REG_VERDICT, false, anon_set_id));
        } else if constexpr (std::is_same_v<T, ir::DnatMapStmt>) {
          // The map's data is address . port: the port follows the address
          // in the next 32-bit register.
          load_key(rule, s.key, family, s.numgen_modulus);
          put(rule, lookup(NFT_REG_1, s.map, NFT_REG_1, false));
          put(rule, dnat(family, NFT_REG_1, register_at(field_words(KeyField::DstAddr, family)), std::nullopt));
        } else if constexpr (std::is_same_v<T, ir::DnatStmt>) {
          if (s.address.family != family) throw std::invalid_argument("dnat to the other family");
          const uint16_t port = htons(s.port);
          put(rule, immediate_data(NFT_REG_1, s.address.bytes.data(), addr_len(family)));
          put(rule, immediate_data(NFT_REG_2, &port, sizeof port));
          put(rule, dnat(family, NFT_REG_1, NFT_REG_2, NF_NAT_RANGE_PROTO_SPECIFIED));
        } else if constexpr (std::is_same_v<T, ir::MarkStmt>) {
          put(rule, meta_load(NFT_META_MARK, NFT_REG_1));
          // mark | bits is (mark & ~bits) ^ bits; mark ^ bits keeps every bit.
          put(rule, bitwise_u32(NFT_REG_1, s.xor_bits ? 0xffffffffu : ~s.bits, s.bits));
          put(rule, meta_set(NFT_META_MARK, NFT_REG_1));
        } else if constexpr (std::is_same_v<T, ir::SetUpdateStmt>) {
          load_field(rule, KeyField::SrcAddr, family, 0, NFT_REG_1);
          auto e = make_expr("dynset");
          nftnl_expr_set_u32(e.get(), NFTNL_EXPR_DYNSET_OP, NFT_DYNSET_OP_UPDATE);
          nftnl_expr_set_u32(e.get(), NFTNL_EXPR_DYNSET_SREG_KEY, NFT_REG_1);
          nftnl_expr_set_str(e.get(), NFTNL_EXPR_DYNSET_SET_NAME, s.set.c_str());
          put(rule, std::move(e));
        } else if constexpr (std::is_same_v<T, ir::MasqueradeStmt>) {
          auto e = make_expr("masq");
          nftnl_expr_set_u32(e.get(), NFTNL_EXPR_MASQ_FLAGS, NF_NAT_RANGE_PROTO_RANDOM_FULLY);
          put(rule, std::move(e));
        } else if constexpr (std::is_same_v<T, ir::RejectStmt>) {
          auto e = make_expr("reject");
          if (s.tcp_reset) {
            nftnl_expr_set_u32(e.get(), NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_TCP_RST);
          } else {
            // Plain `reject` in an ip/ip6 table: ICMP(v6) port unreachable.
            nftnl_expr_set_u32(e.get(), NFTNL_EXPR_REJECT_TYPE, NFT_REJECT_ICMP_UNREACH);
            nftnl_expr_set_u8(e.get(), NFTNL_EXPR_REJECT_CODE,
                              family == IPFamily::V4 ? 3 /*ICMP_PORT_UNREACH*/ : 4 /*ICMPV6_PORT_UNREACH*/);
          }
          put(rule, std::move(e));
        } else if constexpr (std::is_same_v<T, ir::CounterStmt>) {
          auto e = make_expr("objref");
          nftnl_expr_set_u32(e.get(), NFTNL_EXPR_OBJREF_IMM_TYPE, NFT_OBJECT_COUNTER);
          nftnl_expr_set_str(e.get(), NFTNL_EXPR_OBJREF_IMM_NAME, s.name.c_str());
          put(rule, std::move(e));
        } else if constexpr (std::is_same_v<T, ir::CounterMapStmt>) {
          load_key(rule, s.key, family, 0);
          auto e = make_expr("objref");
          nftnl_expr_set_u32(e.get(), NFTNL_EXPR_OBJREF_SET_SREG, NFT_REG_1);
          nftnl_expr_set_str(e.get(), NFTNL_EXPR_OBJREF_SET_NAME, s.map.c_str());
          put(rule, std::move(e));
        } else if constexpr (std::is_same_v<T, ir::Verdict>) {
          put(rule, immediate_verdict(s));
        } else {
          static_assert(NotEncoded<T>::value, "a new ir::Statement needs an encoding (and a decoding)");
        }
      },
      statement);
}

constexpr size_t kMaxElementList = 0xffff;  // an attribute's length is 16 bits

// Bytes of the (still open) nest `list` at the end of `nlh`.
size_t list_bytes(const nlmsghdr* nlh, const nlattr* list) {
  return nlh->nlmsg_len - static_cast<size_t>(reinterpret_cast<const char*>(list) - reinterpret_cast<const char*>(nlh));
}

uint32_t hook_number(ir::Hook hook) {
  switch (hook) {
    case ir::Hook::Prerouting: return NF_INET_PRE_ROUTING;
    case ir::Hook::Output: return NF_INET_LOCAL_OUT;
    case ir::Hook::Postrouting: return NF_INET_POST_ROUTING;
    case ir::Hook::Input:
      return NF_INET_LOCAL_IN;
  }
  return NF_INET_PRE_ROUTING;
}

// One kernel element of an interval set: a range start, or the first
// address past a range (NFT_SET_ELEM_INTERVAL_END).
struct IntervalBound {
  model::IPAddress key;
  bool end = false;
  bool open = false;  // start of a range reaching the last address
  uint32_t ir_index = 0;
};

model::IPAddress next_address(const model::IPAddress& ip, bool* overflow) {
  model::IPAddress next = ip;
  for (size_t i = ip.size(); i-- > 0;) {
    if (++next.bytes[i] != 0) {
      *overflow = false;
      return next;
    }
  }
  *overflow = true;
  return next;
}

// nft's interval encoding: a leading end bound at address zero unless the
// first range starts there, then each range's start and, unless it runs to
// the last address (then flagged open in its userdata), the end bound past it.
std::vector<IntervalBound> interval_bounds(std::span<const ir::Element> elements, IPFamily family) {
  std::vector<std::pair<model::CIDR, uint32_t>> ranges;
  for (size_t i = 0; i < elements.size(); ++i) {
    const auto& key = elements[i].key;
    const ir::Value first = key.empty() ? ir::Value{} : key[0];
    if (key.size() != 1 || !std::holds_alternative<model::CIDR>(first)) {
      throw std::invalid_argument("interval set element is not a prefix");
    }
    const auto& cidr = std::get<model::CIDR>(first);
    if (cidr.family() != family) throw std::invalid_argument("prefix of the other family: " + cidr.str());
    ranges.emplace_back(cidr, static_cast<uint32_t>(i));
  }
  std::sort(ranges.begin(), ranges.end());
  std::vector<IntervalBound> bounds;
  if (ranges.empty()) return bounds;
  model::IPAddress zero;
  zero.family = family;
  if (ranges.front().first.address != zero) bounds.push_back({zero, true, false, ranges.front().second});
  for (const auto& [cidr, index] : ranges) {
    bool overflow = false;
    const model::IPAddress end = next_address(cidr.last(), &overflow);
    bounds.push_back({cidr.address, false, overflow, index});
    if (!overflow) bounds.push_back({end, true, false, index});
  }
  return bounds;
}

}  // namespace

// ---- tables -------------------------------------------------------------------------

void NetlinkEncoder::add_table(const ir::Table& table, bool with_comment) {
  auto t = make_table();
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, nfproto(table.family));
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.name.c_str());
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FLAGS, 0);
  if (with_comment) {
    auto ud = make_udata();
    nftnl_udata_put_strz(ud.get(), NFTNL_UDATA_TABLE_COMMENT, kTableComment);
    nftnl_table_set_data(t.get(), NFTNL_TABLE_USERDATA, nftnl_udata_buf_data(ud.get()),
                         nftnl_udata_buf_len(ud.get()));
  }
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(batch_.next_message(), NFT_MSG_NEWTABLE,
                                        static_cast<uint16_t>(nfproto(table.family)), NLM_F_CREATE, 0);
  nftnl_table_nlmsg_build_payload(nlh, t.get());
  batch_.commit([&table](const nlmsghdr*, uint32_t) { return "table " + table_id(table); });
}

void NetlinkEncoder::delete_table(const ir::Table& table) {
  auto t = make_table();
  nftnl_table_set_u32(t.get(), NFTNL_TABLE_FAMILY, nfproto(table.family));
  nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, table.name.c_str());
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(batch_.next_message(), NFT_MSG_DELTABLE,
                                        static_cast<uint16_t>(nfproto(table.family)), 0, 0);
  nftnl_table_nlmsg_build_payload(nlh, t.get());
  batch_.commit([&table](const nlmsghdr*, uint32_t) { return "delete table " + table_id(table); });
}

// ---- chains ---------------------------------------------------------------------------

void NetlinkEncoder::add_chain(const ir::Table& table, const ir::Chain& chain) {
  auto c = make_chain();
  nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_FAMILY, nfproto(table.family));
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, table.name.c_str());
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_NAME, chain.name.c_str());
  if (chain.base) {
    nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_HOOKNUM, hook_number(chain.base->hook));
    nftnl_chain_set_s32(c.get(), NFTNL_CHAIN_PRIO, chain.base->priority);
    nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TYPE, "nat");
    nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_POLICY, NF_ACCEPT);
  }
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(batch_.next_message(), NFT_MSG_NEWCHAIN,
                                        static_cast<uint16_t>(nfproto(table.family)), NLM_F_CREATE, 0);
  nftnl_chain_nlmsg_build_payload(nlh, c.get());
  batch_.commit([&table, &chain](const nlmsghdr*, uint32_t) { return "chain " + table_id(table) + " " + chain.name; });
}

void NetlinkEncoder::delete_chain(const ir::Table& table, const ir::Chain& chain) {
  auto c = make_chain();
  nftnl_chain_set_u32(c.get(), NFTNL_CHAIN_FAMILY, nfproto(table.family));
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_TABLE, table.name.c_str());
  nftnl_chain_set_str(c.get(), NFTNL_CHAIN_NAME, chain.name.c_str());
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(batch_.next_message(), NFT_MSG_DELCHAIN,
                                        static_cast<uint16_t>(nfproto(table.family)), 0, 0);
  nftnl_chain_nlmsg_build_payload(nlh, c.get());
  batch_.commit(
      [&table, &chain](const nlmsghdr*, uint32_t) { return "delete chain " + table_id(table) + " " + chain.name; });
}

void NetlinkEncoder::flush_chain(const ir::Table& table, const ir::Chain& chain) {
  auto r = make_rule();
  nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, nfproto(table.family));
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.name.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain.name.c_str());
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(batch_.next_message(), NFT_MSG_DELRULE,
                                        static_cast<uint16_t>(nfproto(table.family)), 0, 0);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  batch_.commit(
      [&table, &chain](const nlmsghdr*, uint32_t) { return "flush chain " + table_id(table) + " " + chain.name; });
}

// ---- rules ------------------------------------------------------------------------------

void NetlinkEncoder::add_rules(const ir::Table& table, const ir::Chain& chain) {
  for (size_t i = 0; i < chain.rules.size(); ++i) add_rule(table, chain, i);
}

void NetlinkEncoder::add_rule(const ir::Table& table, const ir::Chain& chain, size_t rule_index) {
  const ir::Rule& ir_rule = chain.rules.at(rule_index);
  uint32_t anon_set_id = 0;
  for (const auto& s : ir_rule.statements) {
    if (const auto* vmap = std::get_if<ir::NumgenVmapStmt>(&s)) {
      anon_set_id = add_anonymous_vmap(table, chain, rule_index, *vmap);
    }
  }
  auto r = make_rule();
  nftnl_rule_set_u32(r.get(), NFTNL_RULE_FAMILY, nfproto(table.family));
  nftnl_rule_set_str(r.get(), NFTNL_RULE_TABLE, table.name.c_str());
  nftnl_rule_set_str(r.get(), NFTNL_RULE_CHAIN, chain.name.c_str());
  try {
    for (const auto& m : ir_rule.matches) encode_match(r.get(), m, table.family);
    for (const auto& s : ir_rule.statements) encode_statement(r.get(), s, table.family, anon_set_id);
  } catch (const std::invalid_argument& e) {
    throw EncodeError("rule " + std::to_string(rule_index + 1) + " of chain " + table_id(table) + " " + chain.name +
                      ": " + e.what());
  }
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(batch_.next_message(), NFT_MSG_NEWRULE,
                                        static_cast<uint16_t>(nfproto(table.family)), NLM_F_CREATE | NLM_F_APPEND, 0);
  nftnl_rule_nlmsg_build_payload(nlh, r.get());
  batch_.commit([&table, &chain, rule_index](const nlmsghdr* msg, uint32_t offset) {
    return "rule " + std::to_string(rule_index + 1) + " of chain " + table_id(table) + " " + chain.name + " (" +
           render_rule(chain.rules[rule_index], table.family) + ")" + blamed_expression(msg, offset);
  });
}

// `numgen random mod N vmap { 0 : goto c0, ... }`: nft creates an anonymous
// constant map named by the kernel from "__map%d" just before the rule that
// binds it, and refers to it by its transaction-local id.
uint32_t NetlinkEncoder::add_anonymous_vmap(const ir::Table& table, const ir::Chain& chain, size_t rule_index,
                                            const ir::NumgenVmapStmt& vmap) {
  if (vmap.chains.empty()) {
    throw EncodeError("rule " + std::to_string(rule_index + 1) + " of chain " + table_id(table) + " " + chain.name +
                      ": numgen vmap without targets");
  }
  const uint32_t id = next_set_id_++;
  const uint16_t family = static_cast<uint16_t>(nfproto(table.family));
  auto s = make_set();
  nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, family);
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.name.c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, "__map%d");
  nftnl_set_set_u32(s.get(), NFTNL_SET_ID, id);
  nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_MAP);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, kTypeInteger);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, 4);
  nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
  nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_LEN, 16);  // sizeof(struct nft_verdict) as nft declares it
  nftnl_set_set_u32(s.get(), NFTNL_SET_DESC_SIZE, static_cast<uint32_t>(vmap.chains.size()));
  const std::string udata = anonymous_vmap_userdata();
  nftnl_set_set_data(s.get(), NFTNL_SET_USERDATA, udata.data(), static_cast<uint32_t>(udata.size()));
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(batch_.next_message(), NFT_MSG_NEWSET, family, NLM_F_CREATE, 0);
  nftnl_set_nlmsg_build_payload(nlh, s.get());
  auto describe = [&table, &chain, rule_index](const nlmsghdr*, uint32_t) {
    return "anonymous vmap of rule " + std::to_string(rule_index + 1) + " of chain " + table_id(table) + " " +
           chain.name;
  };
  batch_.commit(describe);

  // Elements: slot i -> goto chains[i], split like any element list.
  auto elem = make_elem();
  size_t i = 0;
  while (i < vmap.chains.size()) {
    nlh = nftnl_nlmsg_build_hdr(batch_.next_message(), NFT_MSG_NEWSETELEM, family, NLM_F_CREATE, 0);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, table.name.c_str());
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, "__map%d");
    mnl_attr_put_u32(nlh, NFTA_SET_ELEM_LIST_SET_ID, htonl(id));
    nlattr* list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    const size_t first = i;
    for (int n = 1; i < vmap.chains.size(); ++i, ++n) {
      const uint32_t before = nlh->nlmsg_len;
      const uint32_t slot = static_cast<uint32_t>(i);
      nftnl_set_elem_set(elem.get(), NFTNL_SET_ELEM_KEY, &slot, sizeof slot);
      nftnl_set_elem_set_u32(elem.get(), NFTNL_SET_ELEM_VERDICT, static_cast<uint32_t>(NFT_GOTO));
      nftnl_set_elem_set_str(elem.get(), NFTNL_SET_ELEM_CHAIN, vmap.chains[i].c_str());
      nftnl_set_elem_nlmsg_build(nlh, elem.get(), n);
      if (list_bytes(nlh, list) > kMaxElementList) {
        if (i == first) throw EncodeError("numgen vmap target too long: " + vmap.chains[i]);
        nlh->nlmsg_len = before;
        break;
      }
    }
    mnl_attr_nest_end(nlh, list);
    batch_.commit(describe);
  }
  return id;
}

// ---- counters -----------------------------------------------------------------------------

namespace {

void build_counter(NetlinkBatch& batch, const ir::Table& table, const ir::Counter& counter, bool add) {
  std::unique_ptr<nftnl_obj, decltype(&nftnl_obj_free)> o(nftnl_obj_alloc(), &nftnl_obj_free);
  if (!o) throw std::bad_alloc();
  nftnl_obj_set_u32(o.get(), NFTNL_OBJ_FAMILY, nfproto(table.family));
  nftnl_obj_set_str(o.get(), NFTNL_OBJ_TABLE, table.name.c_str());
  nftnl_obj_set_str(o.get(), NFTNL_OBJ_NAME, counter.name.c_str());
  nftnl_obj_set_u32(o.get(), NFTNL_OBJ_TYPE, NFT_OBJECT_COUNTER);
  if (add) {
    nftnl_obj_set_u64(o.get(), NFTNL_OBJ_CTR_PKTS, 0);
    nftnl_obj_set_u64(o.get(), NFTNL_OBJ_CTR_BYTES, 0);
  }
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(batch.next_message(), add ? NFT_MSG_NEWOBJ : NFT_MSG_DELOBJ,
                                        static_cast<uint16_t>(nfproto(table.family)), add ? NLM_F_CREATE : 0, 0);
  nftnl_obj_nlmsg_build_payload(nlh, o.get());
  batch.commit([&table, &counter, add](const nlmsghdr*, uint32_t) {
    return std::string(add ? "" : "delete ") + "counter " + table_id(table) + " " + counter.name;
  });
}

}  // namespace

void NetlinkEncoder::add_counter(const ir::Table& table, const ir::Counter& counter) {
  build_counter(batch_, table, counter, true);
}

void NetlinkEncoder::delete_counter(const ir::Table& table, const ir::Counter& counter) {
  build_counter(batch_, table, counter, false);
}

// ---- sets ---------------------------------------------------------------------------------

void NetlinkEncoder::add_set(const ir::Table& table, const ir::Set& set) {
  add_set_definition(table, set);
  if (!set.elements.empty()) elements(table, set, {set.elements, {}}, true);
}

void NetlinkEncoder::add_set(const ir::Table& table, const ir::RulesetRef::SetRef& ref) {
  add_set_definition(table, *ref.set);
  if (ref.size() != 0) elements(table, *ref.set, {ref.set->elements, ref.extra}, true);
}

void NetlinkEncoder::add_set_definition(const ir::Table& table, const ir::Set& set) {
  if (set.key.empty()) throw EncodeError(set_id_text(table, set) + ": empty key");
  if (int(set.is_verdict_map) + int(set.is_counter_map) + int(!set.data.empty()) > 1) {
    throw EncodeError(set_id_text(table, set) + ": more than one kind of map");
  }
  const uint16_t family = static_cast<uint16_t>(nfproto(table.family));
  auto s = make_set();
  nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, family);
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.name.c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set.name.c_str());
  nftnl_set_set_u32(s.get(), NFTNL_SET_ID, next_set_id_++);
  uint32_t flags = 0;
  // An objref map is NFT_SET_OBJECT, not NFT_SET_MAP (as nft sends it).
  if (set.is_counter_map) {
    flags |= NFT_SET_OBJECT;
  } else if (set.is_map()) {
    flags |= NFT_SET_MAP;
  }
  if (set.interval) flags |= NFT_SET_INTERVAL;
  if (set.timeout_seconds) flags |= NFT_SET_TIMEOUT;
  if (set.dynamic) flags |= NFT_SET_EVAL;
  nftnl_set_set_u32(s.get(), NFTNL_SET_FLAGS, flags);
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_TYPE, key_type_id(set.key, table.family));
  nftnl_set_set_u32(s.get(), NFTNL_SET_KEY_LEN, static_cast<uint32_t>(key_len(set.key, table.family)));
  if (set.is_verdict_map) {
    nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, NFT_DATA_VERDICT);
    nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_LEN, 16);
  } else if (!set.data.empty()) {
    nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_TYPE, key_type_id(set.data, table.family));
    nftnl_set_set_u32(s.get(), NFTNL_SET_DATA_LEN, static_cast<uint32_t>(key_len(set.data, table.family)));
  }
  if (set.is_counter_map) nftnl_set_set_u32(s.get(), NFTNL_SET_OBJ_TYPE, NFT_OBJECT_COUNTER);
  if (set.timeout_seconds) nftnl_set_set_u64(s.get(), NFTNL_SET_TIMEOUT, uint64_t{set.timeout_seconds} * 1000);
  // No NFTNL_SET_DESC_CONCAT: nft sends field lengths only for interval
  // concatenations (pipapo), and svcproxy's concatenated sets are hashes.
  const std::string udata = set_userdata(set, table.family);
  nftnl_set_set_data(s.get(), NFTNL_SET_USERDATA, udata.data(), static_cast<uint32_t>(udata.size()));
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(batch_.next_message(), NFT_MSG_NEWSET, family, NLM_F_CREATE, 0);
  nftnl_set_nlmsg_build_payload(nlh, s.get());
  batch_.commit([&table, &set](const nlmsghdr*, uint32_t) { return set_id_text(table, set); });
}

void NetlinkEncoder::delete_set(const ir::Table& table, const ir::Set& set) {
  auto s = make_set();
  nftnl_set_set_u32(s.get(), NFTNL_SET_FAMILY, nfproto(table.family));
  nftnl_set_set_str(s.get(), NFTNL_SET_TABLE, table.name.c_str());
  nftnl_set_set_str(s.get(), NFTNL_SET_NAME, set.name.c_str());
  nlmsghdr* nlh = nftnl_nlmsg_build_hdr(batch_.next_message(), NFT_MSG_DELSET,
                                        static_cast<uint16_t>(nfproto(table.family)), 0, 0);
  nftnl_set_nlmsg_build_payload(nlh, s.get());
  batch_.commit([&table, &set](const nlmsghdr*, uint32_t) { return "delete " + set_id_text(table, set); });
}

// An interval set's kernel elements depend on all its ranges (the leading
// zero bound, adjacent ranges sharing a bound), so a subset cannot be added
// or removed on its own: such sets are rewritten whole.
void NetlinkEncoder::add_elements(const ir::Table& table, const ir::Set& set, std::span<const ir::Element> elems) {
  if (set.interval) throw EncodeError(set_id_text(table, set) + ": interval sets are replaced whole");
  elements(table, set, {elems, {}}, true);
}

void NetlinkEncoder::delete_elements(const ir::Table& table, const ir::Set& set,
                                     std::span<const ir::Element> elems) {
  if (set.interval) throw EncodeError(set_id_text(table, set) + ": interval sets are replaced whole");
  elements(table, set, {elems, {}}, false);
}

// ---- set elements ---------------------------------------------------------------------------

namespace {

// One element of a value set or map into `elem`: its key (into `key`) and,
// when adding, what it maps to. Throws std::invalid_argument for an element
// that does not fit its set.
void encode_element(nftnl_set_elem* elem, const ir::Element& e, const ir::Set& set, IPFamily family, bool add,
                    std::string& key, std::string& data) {
  append_values(key, e.key, set.key, family);
  if (!add) return;
  if (set.is_verdict_map) {
    if (!e.verdict) throw std::invalid_argument("verdict map element without a verdict");
    nftnl_set_elem_set_u32(elem, NFTNL_SET_ELEM_VERDICT, static_cast<uint32_t>(verdict_code(e.verdict->kind)));
    if (has_chain(e.verdict->kind)) {
      nftnl_set_elem_set_str(elem, NFTNL_SET_ELEM_CHAIN, e.verdict->chain.c_str());
    } else {
      nftnl_set_elem_unset(elem, NFTNL_SET_ELEM_CHAIN);
    }
  } else if (set.is_counter_map) {
    if (!e.object) throw std::invalid_argument("counter map element without a counter");
    nftnl_set_elem_set_str(elem, NFTNL_SET_ELEM_OBJREF, e.object->c_str());
  } else if (!set.data.empty()) {
    data.clear();
    append_values(data, e.data, set.data, family);
    nftnl_set_elem_set(elem, NFTNL_SET_ELEM_DATA, data.data(), static_cast<uint32_t>(data.size()));
  }
}

}  // namespace

void NetlinkEncoder::elements(const ir::Table& table, const ir::Set& set, ElementList elems, bool add) {
  const IPFamily family = table.family;
  const uint16_t nfamily = static_cast<uint16_t>(nfproto(family));
  // Kernel elements in order, each with the IR element it comes from.
  std::vector<IntervalBound> bounds;
  if (set.interval) {
    try {
      if (!elems.pointers.empty()) throw std::invalid_argument("interval elements must be values");
      bounds = interval_bounds(elems.values, family);
    } catch (const std::invalid_argument& error) {
      throw EncodeError(set_id_text(table, set) + ": " + error.what());
    }
  }
  const size_t total = set.interval ? bounds.size() : elems.size();

  auto elem = make_elem();
  std::string key;
  std::string data;
  std::string open_udata;
  {
    auto ud = make_udata();
    nftnl_udata_put_u32(ud.get(), kElemUdataFlags, kElemIntervalOpen);
    open_udata.assign(static_cast<const char*>(nftnl_udata_buf_data(ud.get())), nftnl_udata_buf_len(ud.get()));
  }
  size_t i = 0;
  while (i < total) {
    nlmsghdr* nlh = nftnl_nlmsg_build_hdr(batch_.next_message(), add ? NFT_MSG_NEWSETELEM : NFT_MSG_DELSETELEM,
                                          nfamily, add ? NLM_F_CREATE : 0, 0);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, table.name.c_str());
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, set.name.c_str());
    nlattr* list = mnl_attr_nest_start(nlh, NFTA_SET_ELEM_LIST_ELEMENTS);
    const size_t first = i;
    std::vector<uint32_t> ir_index;  // per kernel element of this message
    for (int n = 1; i < total; ++i, ++n) {
      const uint32_t before = nlh->nlmsg_len;
      key.clear();
      nftnl_set_elem_unset(elem.get(), NFTNL_SET_ELEM_FLAGS);
      nftnl_set_elem_unset(elem.get(), NFTNL_SET_ELEM_USERDATA);
      uint32_t index = static_cast<uint32_t>(i);
      if (set.interval) {
        const IntervalBound& b = bounds[i];
        index = b.ir_index;
        key.assign(reinterpret_cast<const char*>(b.key.bytes.data()), addr_len(family));
        if (b.end) nftnl_set_elem_set_u32(elem.get(), NFTNL_SET_ELEM_FLAGS, NFT_SET_ELEM_INTERVAL_END);
        if (b.open) {
          nftnl_set_elem_set(elem.get(), NFTNL_SET_ELEM_USERDATA, open_udata.data(),
                             static_cast<uint32_t>(open_udata.size()));
        }
      } else {
        try {
          encode_element(elem.get(), elems[i], set, family, add, key, data);
        } catch (const std::invalid_argument& error) {
          throw EncodeError(set_id_text(table, set) + ": element " + std::to_string(i + 1) + ": " + error.what());
        }
      }
      nftnl_set_elem_set(elem.get(), NFTNL_SET_ELEM_KEY, key.data(), static_cast<uint32_t>(key.size()));
      nftnl_set_elem_nlmsg_build(nlh, elem.get(), n);
      if (list_bytes(nlh, list) > kMaxElementList) {
        if (i == first) throw EncodeError(set_id_text(table, set) + ": element too large");
        nlh->nlmsg_len = before;
        break;
      }
      ir_index.push_back(index);
    }
    mnl_attr_nest_end(nlh, list);
    batch_.commit([&table, &set, elems, ir_index = std::move(ir_index), add](const nlmsghdr* msg, uint32_t offset) {
      std::string text = std::string(add ? "" : "delete ") + "elements " + std::to_string(ir_index.front() + 1) +
                         "-" + std::to_string(ir_index.back() + 1) + " of " + set_id_text(table, set);
      if (auto found = locate_in_list(msg, NFTA_SET_ELEM_LIST_ELEMENTS, offset); found && found->first < ir_index.size()) {
        const ir::Element& e = elems[ir_index[found->first]];
        text += ", element ";
        for (size_t k = 0; k < e.key.size(); ++k) text += (k ? " . " : "") + render_value(e.key[k]);
      }
      return text;
    });
  }
}

// ---- whole rulesets --------------------------------------------------------------------------

void encode_full_sync(const ir::Ruleset& ruleset, NetlinkBatch& batch) {
  NetlinkEncoder encoder(batch);
  // As the script: "table X; delete table X" for every table first (the add
  // makes the delete succeed when X does not exist yet), then each table.
  for (const auto& table : ruleset.tables) {
    encoder.add_table(table, false);
    encoder.delete_table(table);
  }
  for (const auto& table : ruleset.tables) {
    // nft's order within a table block: the table, its chains, its named
    // objects (counters), its sets with their elements, then the rules.
    encoder.add_table(table, true);
    for (const auto& chain : table.chains) encoder.add_chain(table, chain);
    for (const auto& counter : table.counters) encoder.add_counter(table, counter);
    for (const auto& set : table.sets) encoder.add_set(table, set);
    for (const auto& chain : table.chains) encoder.add_rules(table, chain);
  }
}

void encode_full_sync(const ir::RulesetRef& ruleset, NetlinkBatch& batch) {
  NetlinkEncoder encoder(batch);
  for (const auto& table : ruleset.tables) {
    encoder.add_table(table.header, false);
    encoder.delete_table(table.header);
  }
  for (const auto& table : ruleset.tables) {
    encoder.add_table(table.header, true);
    for (const auto* chain : table.chains) encoder.add_chain(table.header, *chain);
    for (const auto* counter : table.counters) encoder.add_counter(table.header, *counter);
    for (const auto& set : table.sets) encoder.add_set(table.header, set);
    for (const auto* chain : table.chains) encoder.add_rules(table.header, *chain);
  }
}

void encode_cleanup(const ir::Ruleset& tables, NetlinkBatch& batch) {
  NetlinkEncoder encoder(batch);
  for (const auto& table : tables.tables) {
    encoder.add_table(table, false);
    encoder.delete_table(table);
  }
}

}  // namespace svcproxy::dataplane
