#include "dataplane/netlink_decode.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <libnftnl/chain.h>
#include <libnftnl/expr.h>
#include <libnftnl/object.h>
#include <libnftnl/rule.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_nat.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/rtnetlink.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <map>
#include <optional>
#include <tuple>

#include "dataplane/netlink_types.h"

namespace svcproxy::dataplane {
namespace {

using ir::KeyField;
using ir::KeyType;
using model::IPFamily;
using namespace nl;

constexpr int kMaxAttempts = 8;

std::string table_text(IPFamily family, const std::string& name) {
  return std::string(ir::family_keyword(family)) + " " + name;
}

// ---- dumps ---------------------------------------------------------------------------

// Table name attribute of a chain message, without decoding the rest.
std::string chain_table(const nlmsghdr* nlh) {
  const auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)));
  const char* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  while (mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr)))) {
    if (mnl_attr_get_type(attr) == NFTA_CHAIN_TABLE && mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0) {
      return mnl_attr_get_str(attr);
    }
    attr = mnl_attr_next(attr);
  }
  return {};
}

// libnftnl foreach callback gathering pointers (never throws into C code).
template <typename T>
int collect(T* item, void* out) {
  try {
    static_cast<std::vector<T*>*>(out)->push_back(item);
    return 0;
  } catch (...) {
    return -1;
  }
}

// ---- expressions -------------------------------------------------------------------------

class RuleDecoder {
 public:
  RuleDecoder(IPFamily family, std::string where, std::vector<nftnl_expr*> exprs,
              const std::map<std::string, std::vector<std::pair<uint32_t, ir::Verdict>>>& anonymous)
      : family_(family), where_(std::move(where)), exprs_(std::move(exprs)), anonymous_(anonymous) {}

  ir::Rule decode() {
    while (i_ < exprs_.size()) step();
    return std::move(rule_);
  }

 private:
  [[noreturn]] void fail(size_t index, const std::string& why) const {
    std::string name = index < exprs_.size() ? name_of(index) : "end of rule";
    throw DecodeError(where_ + ": expression " + std::to_string(index + 1) + " (" + name + "): " + why +
                      " - svcproxy does not write this; was the table edited by hand?");
  }

  std::string name_of(size_t index) const {
    const char* n = nftnl_expr_get_str(exprs_[index], NFTNL_EXPR_NAME);
    return n ? n : "?";
  }
  bool is(size_t index, const char* name) const { return index < exprs_.size() && name_of(index) == name; }
  bool has(size_t index, uint16_t attr) const { return nftnl_expr_is_set(exprs_[index], attr); }
  uint32_t u32(size_t index, uint16_t attr) const {
    if (!has(index, attr)) fail(index, "attribute " + std::to_string(attr) + " missing");
    return nftnl_expr_get_u32(exprs_[index], attr);
  }
  uint32_t u32_or(size_t index, uint16_t attr, uint32_t fallback) const {
    return has(index, attr) ? nftnl_expr_get_u32(exprs_[index], attr) : fallback;
  }
  std::string_view bytes(size_t index, uint16_t attr) const {
    uint32_t len = 0;
    const void* p = nftnl_expr_get(exprs_[index], attr, &len);
    if (!p) fail(index, "attribute " + std::to_string(attr) + " missing");
    return {static_cast<const char*>(p), len};
  }
  std::string str(size_t index, uint16_t attr) const {
    const char* s = nftnl_expr_get_str(exprs_[index], attr);
    if (!s) fail(index, "attribute " + std::to_string(attr) + " missing");
    return s;
  }
  uint32_t bytes_u32(size_t index, uint16_t attr) const {
    const auto b = bytes(index, attr);
    if (b.size() != 4) fail(index, "expected 4 bytes");
    uint32_t v;
    std::memcpy(&v, b.data(), 4);
    return v;
  }

  void add_match(ir::Match m, size_t at) {
    if (!rule_.statements.empty()) fail(at, "a match after a statement");
    rule_.matches.push_back(std::move(m));
  }
  void add_statement(ir::Statement s) { rule_.statements.push_back(std::move(s)); }

  // Which address field, if expression `index` loads one (full or prefix).
  std::optional<KeyField> addr_field(size_t index) const {
    if (!is(index, "payload") || u32(index, NFTNL_EXPR_PAYLOAD_BASE) != NFT_PAYLOAD_NETWORK_HEADER) return {};
    const uint32_t offset = u32(index, NFTNL_EXPR_PAYLOAD_OFFSET);
    if (offset == addr_offset(KeyField::SrcAddr, family_)) return KeyField::SrcAddr;
    if (offset == addr_offset(KeyField::DstAddr, family_)) return KeyField::DstAddr;
    return {};
  }

  // A key field loaded into register `reg`, as load_key in the encoder does.
  std::optional<KeyField> key_field(size_t index, uint32_t reg, uint32_t* modulus) const {
    if (index >= exprs_.size()) return {};
    if (auto field = addr_field(index)) {
      if (u32(index, NFTNL_EXPR_PAYLOAD_LEN) == addr_len(family_) && u32(index, NFTNL_EXPR_PAYLOAD_DREG) == reg) {
        return field;
      }
      return {};
    }
    if (is(index, "payload")) {
      if (u32(index, NFTNL_EXPR_PAYLOAD_BASE) == NFT_PAYLOAD_TRANSPORT_HEADER &&
          u32(index, NFTNL_EXPR_PAYLOAD_OFFSET) == 2 && u32(index, NFTNL_EXPR_PAYLOAD_LEN) == 2 &&
          u32(index, NFTNL_EXPR_PAYLOAD_DREG) == reg) {
        return KeyField::DstPort;
      }
      return {};
    }
    if (is(index, "meta")) {
      if (u32(index, NFTNL_EXPR_META_KEY) == NFT_META_L4PROTO && u32_or(index, NFTNL_EXPR_META_DREG, 0) == reg) {
        return KeyField::L4Proto;
      }
      return {};
    }
    if (is(index, "numgen")) {
      if (u32(index, NFTNL_EXPR_NG_TYPE) == NFT_NG_RANDOM && u32_or(index, NFTNL_EXPR_NG_OFFSET, 0) == 0 &&
          u32(index, NFTNL_EXPR_NG_DREG) == reg) {
        const uint32_t m = u32(index, NFTNL_EXPR_NG_MODULUS);
        if (*modulus != 0 && *modulus != m) fail(index, "two numgen moduli in one key");
        *modulus = m;
        return KeyField::Numgen;
      }
      return {};
    }
    return {};
  }

  void step() {
    const size_t i = i_;
    const std::string name = name_of(i);
    if (name == "payload") {
      if (auto field = addr_field(i)) {
        const uint32_t len = u32(i, NFTNL_EXPR_PAYLOAD_LEN);
        if (u32(i, NFTNL_EXPR_PAYLOAD_DREG) != NFT_REG_1) fail(i, "unexpected register");
        if (len == addr_len(family_)) {
          if (is(i + 1, "bitwise")) return masked_prefix(*field);
          if (is(i + 1, "cmp")) return prefix(*field, static_cast<uint8_t>(len * 8));
          if (is(i + 1, "dynset")) return set_update(*field);
        } else if (len < addr_len(family_) && len > 0 && is(i + 1, "cmp")) {
          return prefix(*field, static_cast<uint8_t>(len * 8));
        }
      }
      return key_lookup();
    }
    if (name == "meta") {
      if (has(i, NFTNL_EXPR_META_SREG)) fail(i, "unexpected meta set");
      const uint32_t key = u32(i, NFTNL_EXPR_META_KEY);
      if (key == NFT_META_L4PROTO && is(i + 1, "cmp")) return proto_match();
      if (key == NFT_META_MARK) return mark();
      if (key == NFT_META_IIFNAME) return iifname();
      return key_lookup();
    }
    if (name == "numgen") return key_lookup();
    if (name == "fib") return fib();
    if (name == "ct") return ct_dnat();
    if (name == "immediate") return immediate();
    if (name == "objref") {
      if (u32_or(i, NFTNL_EXPR_OBJREF_IMM_TYPE, 0) != NFT_OBJECT_COUNTER) fail(i, "objref other than a counter");
      add_statement(ir::CounterStmt{str(i, NFTNL_EXPR_OBJREF_IMM_NAME)});
      i_ += 1;
      return;
    }
    if (name == "masq") {
      if (u32_or(i, NFTNL_EXPR_MASQ_FLAGS, 0) != NF_NAT_RANGE_PROTO_RANDOM_FULLY ||
          has(i, NFTNL_EXPR_MASQ_REG_PROTO_MIN)) {
        fail(i, "masquerade other than fully-random");
      }
      add_statement(ir::MasqueradeStmt{});
      i_ += 1;
      return;
    }
    if (name == "reject") {
      const uint32_t type = u32(i, NFTNL_EXPR_REJECT_TYPE);
      const uint32_t code = family_ == IPFamily::V4 ? 3 : 4;  // ICMP(v6) port unreachable
      if (type == NFT_REJECT_TCP_RST) {
        add_statement(ir::RejectStmt{true});
      } else if (type == NFT_REJECT_ICMP_UNREACH && nftnl_expr_get_u8(exprs_[i], NFTNL_EXPR_REJECT_CODE) == code) {
        add_statement(ir::RejectStmt{false});
      } else {
        fail(i, "reject other than port unreachable or tcp reset");
      }
      i_ += 1;
      return;
    }
    fail(i, "unsupported expression");
  }

  void expect_cmp(size_t index, uint32_t* op, std::string_view* data) const {
    if (!is(index, "cmp")) fail(index, "expected a comparison");
    if (u32(index, NFTNL_EXPR_CMP_SREG) != NFT_REG_1) fail(index, "unexpected register");
    *op = u32(index, NFTNL_EXPR_CMP_OP);
    if (*op != NFT_CMP_EQ && *op != NFT_CMP_NEQ) fail(index, "comparison other than == / !=");
    *data = bytes(index, NFTNL_EXPR_CMP_DATA);
  }

  void expect_bitwise(size_t index, uint32_t len, std::string_view* mask, std::string_view* xor_bits) const {
    if (!is(index, "bitwise")) fail(index, "expected a bitwise");
    if (u32(index, NFTNL_EXPR_BITWISE_SREG) != NFT_REG_1 || u32(index, NFTNL_EXPR_BITWISE_DREG) != NFT_REG_1 ||
        u32(index, NFTNL_EXPR_BITWISE_LEN) != len || u32_or(index, NFTNL_EXPR_BITWISE_OP, NFT_BITWISE_BOOL) != NFT_BITWISE_BOOL) {
      fail(index, "unexpected bitwise");
    }
    *mask = bytes(index, NFTNL_EXPR_BITWISE_MASK);
    *xor_bits = bytes(index, NFTNL_EXPR_BITWISE_XOR);
    if (mask->size() != len || xor_bits->size() != len) fail(index, "unexpected bitwise length");
  }

  // ip saddr [!=] a.b.c.d/prefix (prefix a whole number of bytes, or the full address)
  void prefix(KeyField field, uint8_t bits) {
    uint32_t op;
    std::string_view data;
    expect_cmp(i_ + 1, &op, &data);
    if (data.size() * 8 != bits) fail(i_ + 1, "comparison length differs from the load");
    model::CIDR cidr;
    cidr.address.family = family_;
    std::memcpy(cidr.address.bytes.data(), data.data(), data.size());
    cidr.prefix = bits;
    add_match(ir::AddrMatch{field, op == NFT_CMP_NEQ, cidr, {}}, i_);
    i_ += 2;
  }

  // ip saddr [!=] a.b.c.d/prefix through a mask
  void masked_prefix(KeyField field) {
    const uint32_t len = static_cast<uint32_t>(addr_len(family_));
    std::string_view mask, xor_bits, data;
    expect_bitwise(i_ + 1, len, &mask, &xor_bits);
    uint32_t op;
    expect_cmp(i_ + 2, &op, &data);
    if (data.size() != len) fail(i_ + 2, "comparison length differs from the load");
    uint8_t bits = 0;
    bool ended = false;
    for (size_t b = 0; b < len * 8; ++b) {
      const bool set = (static_cast<uint8_t>(mask[b / 8]) >> (7 - b % 8)) & 1;
      if (set && ended) fail(i_ + 1, "mask is not a prefix");
      if (set) ++bits;
      ended = ended || !set;
    }
    for (size_t b = 0; b < len; ++b) {
      if (xor_bits[b] != 0) fail(i_ + 1, "non-zero xor");
      if ((data[b] & ~mask[b]) != 0) fail(i_ + 2, "compared bits outside the mask");
    }
    // nft masks only prefixes it cannot express as a shorter load.
    if (bits % 8 == 0 && bits != 0) fail(i_ + 1, "byte-aligned prefix through a mask");
    model::CIDR cidr;
    cidr.address.family = family_;
    std::memcpy(cidr.address.bytes.data(), data.data(), len);
    cidr.prefix = bits;
    add_match(ir::AddrMatch{field, op == NFT_CMP_NEQ, cidr, {}}, i_);
    i_ += 3;
  }

  void set_update(KeyField field) {
    const size_t d = i_ + 1;
    if (field != KeyField::SrcAddr) fail(i_, "set update keyed by the destination");
    if (u32(d, NFTNL_EXPR_DYNSET_OP) != NFT_DYNSET_OP_UPDATE || u32(d, NFTNL_EXPR_DYNSET_SREG_KEY) != NFT_REG_1 ||
        has(d, NFTNL_EXPR_DYNSET_SREG_DATA) || u32_or(d, NFTNL_EXPR_DYNSET_TIMEOUT, 0) != 0 ||
        u32_or(d, NFTNL_EXPR_DYNSET_FLAGS, 0) != 0) {
      fail(d, "dynset other than update @set { saddr }");
    }
    add_statement(ir::SetUpdateStmt{str(d, NFTNL_EXPR_DYNSET_SET_NAME)});
    i_ += 2;
  }

  void proto_match() {
    if (u32(i_, NFTNL_EXPR_META_DREG) != NFT_REG_1) fail(i_, "unexpected register");
    uint32_t op;
    std::string_view data;
    expect_cmp(i_ + 1, &op, &data);
    if (op != NFT_CMP_EQ || data.size() != 1) fail(i_ + 1, "unexpected protocol comparison");
    const auto proto = static_cast<uint8_t>(data[0]);
    if (proto != IPPROTO_TCP && proto != IPPROTO_UDP && proto != IPPROTO_SCTP) fail(i_ + 1, "unknown protocol");
    add_match(ir::ProtoMatch{static_cast<model::Protocol>(proto)}, i_);
    i_ += 2;
  }

  // iifname [!=] "name" (the name NUL-padded to IFNAMSIZ) or "prefix*" (only
  // the prefix's bytes compared)
  void iifname() {
    constexpr size_t kIfNameSize = 16;  // IFNAMSIZ
    if (u32(i_, NFTNL_EXPR_META_DREG) != NFT_REG_1) fail(i_, "unexpected register");
    uint32_t op;
    std::string_view data;
    expect_cmp(i_ + 1, &op, &data);
    if (data.empty() || data.size() > kIfNameSize) fail(i_ + 1, "interface name comparison of unexpected length");
    ir::IifnameMatch m;
    m.negate = op == NFT_CMP_NEQ;
    const size_t nul = data.find('\0');
    if (data.size() == kIfNameSize && nul != std::string_view::npos) {
      m.name = std::string(data.substr(0, nul));
      if (data.find_first_not_of('\0', nul) != std::string_view::npos) fail(i_ + 1, "interface name after a NUL");
    } else {
      if (nul != std::string_view::npos || data.size() >= kIfNameSize - 1) fail(i_ + 1, "unexpected interface name");
      m.name = std::string(data);
      m.prefix = true;
    }
    if (m.name.empty()) fail(i_ + 1, "empty interface name");
    add_match(std::move(m), i_);
    i_ += 2;
  }

  // meta mark & bits ==/!= 0, or meta mark set meta mark |/^ bits
  void mark() {
    if (u32(i_, NFTNL_EXPR_META_DREG) != NFT_REG_1) fail(i_, "unexpected register");
    std::string_view mask_bytes, xor_bytes;
    expect_bitwise(i_ + 1, 4, &mask_bytes, &xor_bytes);
    uint32_t mask, xor_bits;
    std::memcpy(&mask, mask_bytes.data(), 4);
    std::memcpy(&xor_bits, xor_bytes.data(), 4);
    const size_t last = i_ + 2;
    if (is(last, "cmp")) {
      uint32_t op;
      std::string_view data;
      expect_cmp(last, &op, &data);
      if (xor_bits != 0 || bytes_u32(last, NFTNL_EXPR_CMP_DATA) != 0) fail(last, "unexpected mark comparison");
      add_match(ir::MarkMatch{mask, op == NFT_CMP_EQ}, i_);
    } else if (is(last, "meta") && has(last, NFTNL_EXPR_META_SREG)) {
      if (u32(last, NFTNL_EXPR_META_KEY) != NFT_META_MARK || u32(last, NFTNL_EXPR_META_SREG) != NFT_REG_1) {
        fail(last, "unexpected meta set");
      }
      if (mask == 0xffffffffu) {
        add_statement(ir::MarkStmt{xor_bits, true});
      } else if (mask == ~xor_bits) {
        add_statement(ir::MarkStmt{xor_bits, false});
      } else {
        fail(i_ + 1, "mark update other than | or ^");
      }
    } else {
      fail(last, "expected a comparison or a mark update");
    }
    i_ += 3;
  }

  void fib() {
    const uint32_t flags = u32(i_, NFTNL_EXPR_FIB_FLAGS);
    if (u32(i_, NFTNL_EXPR_FIB_RESULT) != NFT_FIB_RESULT_ADDRTYPE || u32(i_, NFTNL_EXPR_FIB_DREG) != NFT_REG_1 ||
        (flags != NFTA_FIB_F_SADDR && flags != NFTA_FIB_F_DADDR)) {
      fail(i_, "fib other than saddr/daddr type");
    }
    uint32_t op;
    std::string_view data;
    expect_cmp(i_ + 1, &op, &data);
    if (op != NFT_CMP_EQ || data.size() != 4 || bytes_u32(i_ + 1, NFTNL_EXPR_CMP_DATA) != RTN_LOCAL) {
      fail(i_ + 1, "fib type other than local");
    }
    add_match(ir::FibLocalMatch{flags == NFTA_FIB_F_SADDR ? KeyField::SrcAddr : KeyField::DstAddr}, i_);
    i_ += 2;
  }

  void ct_dnat() {
    if (u32(i_, NFTNL_EXPR_CT_KEY) != NFT_CT_STATUS || u32_or(i_, NFTNL_EXPR_CT_DREG, 0) != NFT_REG_1 ||
        has(i_, NFTNL_EXPR_CT_DIR)) {
      fail(i_, "ct other than status");
    }
    std::string_view mask, xor_bits;
    expect_bitwise(i_ + 1, 4, &mask, &xor_bits);
    uint32_t op;
    std::string_view data;
    expect_cmp(i_ + 2, &op, &data);
    if (bytes_u32(i_ + 1, NFTNL_EXPR_BITWISE_MASK) != IPS_DST_NAT || bytes_u32(i_ + 1, NFTNL_EXPR_BITWISE_XOR) != 0 ||
        op != NFT_CMP_NEQ || bytes_u32(i_ + 2, NFTNL_EXPR_CMP_DATA) != 0) {
      fail(i_, "ct status match other than dnat");
    }
    add_match(ir::CtDnatMatch{}, i_);
    i_ += 3;
  }

  void expect_dnat(size_t index, uint32_t proto_reg) const {
    if (!is(index, "nat")) fail(index, "expected dnat");
    if (u32(index, NFTNL_EXPR_NAT_TYPE) != NFT_NAT_DNAT || u32(index, NFTNL_EXPR_NAT_FAMILY) != nfproto(family_) ||
        u32(index, NFTNL_EXPR_NAT_REG_ADDR_MIN) != NFT_REG_1 ||
        u32_or(index, NFTNL_EXPR_NAT_REG_ADDR_MAX, NFT_REG_1) != NFT_REG_1 ||
        u32(index, NFTNL_EXPR_NAT_REG_PROTO_MIN) != proto_reg ||
        u32_or(index, NFTNL_EXPR_NAT_REG_PROTO_MAX, proto_reg) != proto_reg ||
        (u32_or(index, NFTNL_EXPR_NAT_FLAGS, 0) & ~uint32_t{NF_NAT_RANGE_PROTO_SPECIFIED | NF_NAT_RANGE_MAP_IPS}) != 0) {
      fail(index, "nat other than dnat to address and port");
    }
  }

  void immediate() {
    const uint32_t dreg = u32(i_, NFTNL_EXPR_IMM_DREG);
    if (dreg == NFT_REG_VERDICT) {
      ir::Verdict v;
      const auto code = static_cast<int32_t>(u32(i_, NFTNL_EXPR_IMM_VERDICT));
      switch (code) {
        case NF_ACCEPT: v.kind = ir::VerdictKind::Accept; break;
        case NF_DROP: v.kind = ir::VerdictKind::Drop; break;
        case NFT_RETURN: v.kind = ir::VerdictKind::Return; break;
        case NFT_JUMP: v.kind = ir::VerdictKind::Jump; break;
        case NFT_GOTO: v.kind = ir::VerdictKind::Goto; break;
        default: fail(i_, "unsupported verdict " + std::to_string(code));
      }
      if (v.kind == ir::VerdictKind::Jump || v.kind == ir::VerdictKind::Goto) v.chain = str(i_, NFTNL_EXPR_IMM_CHAIN);
      add_statement(std::move(v));
      i_ += 1;
      return;
    }
    // dnat ip to addr:port: address in reg 1, port in reg 2, then nat.
    const auto addr = bytes(i_, NFTNL_EXPR_IMM_DATA);
    if (dreg != NFT_REG_1 || addr.size() != addr_len(family_) || !is(i_ + 1, "immediate") ||
        u32(i_ + 1, NFTNL_EXPR_IMM_DREG) != NFT_REG_2 || bytes(i_ + 1, NFTNL_EXPR_IMM_DATA).size() != 2) {
      fail(i_, "immediate data other than a dnat address and port");
    }
    expect_dnat(i_ + 2, NFT_REG_2);
    ir::DnatStmt s;
    s.address.family = family_;
    std::memcpy(s.address.bytes.data(), addr.data(), addr.size());
    uint16_t port;
    std::memcpy(&port, bytes(i_ + 1, NFTNL_EXPR_IMM_DATA).data(), 2);
    s.port = ntohs(port);
    add_statement(s);
    i_ += 3;
  }

  // <key fields> then lookup: a set match, a vmap, or a dnat map.
  void key_lookup() {
    std::vector<KeyField> key;
    uint32_t modulus = 0;
    uint32_t word = 0;
    size_t j = i_;
    while (auto field = key_field(j, register_at(word), &modulus)) {
      key.push_back(*field);
      word += field_words(*field, family_);
      ++j;
    }
    if (key.empty()) fail(i_, "unexpected load");
    if (is(j, "objref")) return counter_map(std::move(key), modulus, j);
    if (!is(j, "lookup")) fail(j, "expected a set lookup after the key");
    if (u32(j, NFTNL_EXPR_LOOKUP_SREG) != NFT_REG_1) fail(j, "unexpected register");
    const std::string set = str(j, NFTNL_EXPR_LOOKUP_SET);
    const uint32_t flags = u32_or(j, NFTNL_EXPR_LOOKUP_FLAGS, 0);
    if (flags & ~uint32_t{NFT_LOOKUP_F_INV}) fail(j, "unexpected lookup flags");
    const bool invert = flags & NFT_LOOKUP_F_INV;
    const bool numgen = std::find(key.begin(), key.end(), KeyField::Numgen) != key.end();
    if (!has(j, NFTNL_EXPR_LOOKUP_DREG)) {
      if (numgen) fail(j, "numgen in a set match");
      if (key.size() == 1 && (key[0] == KeyField::SrcAddr || key[0] == KeyField::DstAddr)) {
        add_match(ir::AddrMatch{key[0], invert, std::nullopt, set}, i_);
      } else {
        if (invert) fail(j, "negated concatenated set match");
        add_match(ir::SetMatch{key, set}, i_);
      }
      i_ = j + 1;
      return;
    }
    if (invert) fail(j, "negated map lookup");
    const uint32_t dreg = u32(j, NFTNL_EXPR_LOOKUP_DREG);
    if (dreg == NFT_REG_VERDICT) {
      if (auto anon = anonymous_.find(set); anon != anonymous_.end()) {
        if (key != std::vector<KeyField>{KeyField::Numgen}) fail(j, "anonymous map not keyed by numgen alone");
        const auto& slots = anon->second;
        ir::NumgenVmapStmt s;
        for (size_t slot = 0; slot < slots.size(); ++slot) {
          const auto& [index, verdict] = slots[slot];
          if (index != slot || verdict.kind != ir::VerdictKind::Goto) fail(j, "anonymous map other than slot : goto");
          s.chains.push_back(verdict.chain);
        }
        if (s.chains.size() != modulus) fail(j, "anonymous map size differs from the numgen modulus");
        add_statement(std::move(s));
      } else {
        add_statement(ir::VmapStmt{key, set, modulus});
      }
      i_ = j + 1;
      return;
    }
    if (dreg != NFT_REG_1) fail(j, "unexpected map register");
    expect_dnat(j + 1, register_at(field_words(KeyField::DstAddr, family_)));
    add_statement(ir::DnatMapStmt{key, set, modulus});
    i_ = j + 2;
  }

  // <key> then objref with a set: `counter name <key> map @m`.
  void counter_map(std::vector<KeyField> key, uint32_t modulus, size_t j) {
    if (modulus != 0) fail(j, "numgen in a counter map key");
    if (has(j, NFTNL_EXPR_OBJREF_IMM_NAME) || u32(j, NFTNL_EXPR_OBJREF_SET_SREG) != NFT_REG_1) {
      fail(j, "unexpected objref");
    }
    add_statement(ir::CounterMapStmt{std::move(key), str(j, NFTNL_EXPR_OBJREF_SET_NAME)});
    i_ = j + 1;
  }

  IPFamily family_;
  std::string where_;
  std::vector<nftnl_expr*> exprs_;
  const std::map<std::string, std::vector<std::pair<uint32_t, ir::Verdict>>>& anonymous_;
  size_t i_ = 0;
  ir::Rule rule_;
};

// ---- one table -------------------------------------------------------------------------------

// One element as the kernel dumps it, parsed in place (a set dump can hold
// 100k+ elements: no allocation per element).
struct RawElement {
  std::string_view key;
  std::string_view data;  // data maps
  bool has_verdict = false;
  int32_t verdict = 0;
  std::string_view chain;
  std::string_view object;  // counter maps: the counter's name
  uint32_t flags = 0;
};

template <typename Fn>
void for_each_nested(const nlattr* nest, Fn&& fn) {
  const char* end = reinterpret_cast<const char*>(nest) + nest->nla_len;
  const auto* attr = static_cast<const nlattr*>(mnl_attr_get_payload(nest));
  while (mnl_attr_ok(attr, static_cast<int>(end - reinterpret_cast<const char*>(attr)))) {
    fn(attr);
    attr = mnl_attr_next(attr);
  }
}

std::string_view payload_of(const nlattr* attr) {
  return {static_cast<const char*>(mnl_attr_get_payload(attr)), mnl_attr_get_payload_len(attr)};
}

// NFTA_DATA_VALUE inside a NFTA_SET_ELEM_KEY / _DATA nest.
std::string_view data_value(const nlattr* nest) {
  std::string_view value;
  for_each_nested(nest, [&](const nlattr* a) {
    if (mnl_attr_get_type(a) == NFTA_DATA_VALUE) value = payload_of(a);
  });
  return value;
}

RawElement parse_element(const nlattr* elem) {
  RawElement e;
  for_each_nested(elem, [&](const nlattr* a) {
    switch (mnl_attr_get_type(a)) {
      case NFTA_SET_ELEM_KEY: e.key = data_value(a); break;
      case NFTA_SET_ELEM_OBJREF:
        e.object = payload_of(a);
        if (!e.object.empty() && e.object.back() == '\0') e.object.remove_suffix(1);
        break;
      case NFTA_SET_ELEM_FLAGS:
        if (mnl_attr_get_payload_len(a) == 4) e.flags = ntohl(mnl_attr_get_u32(a));
        break;
      case NFTA_SET_ELEM_DATA:
        for_each_nested(a, [&](const nlattr* d) {
          if (mnl_attr_get_type(d) == NFTA_DATA_VALUE) e.data = payload_of(d);
          if (mnl_attr_get_type(d) != NFTA_DATA_VERDICT) return;
          for_each_nested(d, [&](const nlattr* v) {
            if (mnl_attr_get_type(v) == NFTA_VERDICT_CODE && mnl_attr_get_payload_len(v) == 4) {
              e.has_verdict = true;
              e.verdict = static_cast<int32_t>(ntohl(mnl_attr_get_u32(v)));
            } else if (mnl_attr_get_type(v) == NFTA_VERDICT_CHAIN) {
              e.chain = payload_of(v);
              if (!e.chain.empty() && e.chain.back() == '\0') e.chain.remove_suffix(1);
            }
          });
        });
        break;
      default:
        break;
    }
  });
  return e;
}

ir::Verdict elem_verdict(const RawElement& e, const std::string& where) {
  if (!e.has_verdict) throw DecodeError(where + ": element without a verdict");
  ir::Verdict v;
  switch (e.verdict) {
    case NF_ACCEPT: v.kind = ir::VerdictKind::Accept; break;
    case NF_DROP: v.kind = ir::VerdictKind::Drop; break;
    case NFT_RETURN: v.kind = ir::VerdictKind::Return; break;
    case NFT_JUMP: v.kind = ir::VerdictKind::Jump; break;
    case NFT_GOTO: v.kind = ir::VerdictKind::Goto; break;
    default: throw DecodeError(where + ": unsupported verdict " + std::to_string(e.verdict));
  }
  if (v.kind == ir::VerdictKind::Jump || v.kind == ir::VerdictKind::Goto) {
    if (e.chain.empty()) throw DecodeError(where + ": verdict without a chain");
    v.chain = e.chain;
  }
  return v;
}

template <typename Values>
void assign_values(Values& out, std::string_view bytes, const std::vector<KeyType>& types, IPFamily family) {
  std::array<ir::Value, 8> values;
  parse_values(bytes.data(), bytes.size(), types, family, values);
  out.clear();
  for (size_t i = 0; i < types.size(); ++i) out.push_back(values[i]);
}

// An interval set's kernel elements: range starts and the end bounds past
// them (see interval_bounds in the encoder), back to prefixes.
std::vector<ir::Element> intervals_to_prefixes(std::vector<std::pair<model::IPAddress, bool>> bounds,
                                               IPFamily family, const std::string& where) {
  // End bounds first where a range ends exactly where the next one starts.
  std::sort(bounds.begin(), bounds.end(), [](const auto& a, const auto& b) {
    if (a.first != b.first) return a.first < b.first;
    return a.second > b.second;
  });
  std::vector<ir::Element> out;
  const size_t bits = addr_len(family) * 8;
  auto add_range = [&](const model::IPAddress& first, const model::IPAddress& last) {
    // [first, last] must be exactly one prefix.
    size_t host_bits = 0;
    bool seen_zero = false;
    for (size_t b = bits; b-- > 0;) {
      const bool f = (first.bytes[b / 8] >> (7 - b % 8)) & 1;
      const bool l = (last.bytes[b / 8] >> (7 - b % 8)) & 1;
      if (!seen_zero && !f && l) {
        ++host_bits;
        continue;
      }
      seen_zero = true;
      if (f != l) throw DecodeError(where + ": interval " + first.str() + "-" + last.str() + " is not a prefix");
    }
    model::CIDR cidr;
    cidr.address = first;
    cidr.prefix = static_cast<uint8_t>(bits - host_bits);
    out.push_back(ir::Element{{cidr}, std::nullopt, {}});
  };
  std::optional<model::IPAddress> start;
  for (size_t i = 0; i < bounds.size(); ++i) {
    const auto& [addr, end] = bounds[i];
    if (end) {
      if (start) {
        model::IPAddress last = addr;  // addr - 1
        for (size_t b = addr_len(family); b-- > 0;) {
          if (last.bytes[b]-- != 0) break;
        }
        add_range(*start, last);
        start.reset();
      } else if (!(i == 0 && addr == model::IPAddress{family, {}})) {
        throw DecodeError(where + ": interval end " + addr.str() + " without a start");
      }
    } else {
      if (start) throw DecodeError(where + ": interval starting at " + start->str() + " has no end");
      start = addr;
    }
  }
  if (start) {
    model::IPAddress last{family, {}};
    for (size_t b = 0; b < addr_len(family); ++b) last.bytes[b] = 0xff;
    add_range(*start, last);
  }
  return out;
}

// Calls fn(nftnl_obj*) for every counter object of table `ref`: one
// NFT_MSG_GETOBJ dump, filtered by table and type in the kernel. Objects of
// another type are svcproxy's to refuse.
// (family NFPROTO_UNSPEC: both families' tables of that name).
template <typename Fn>
void for_each_counter(NetlinkSocket& socket, const TableRef& ref, bool* changed, Fn&& fn, bool any_family = false) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  const auto family = static_cast<uint16_t>(any_family ? uint32_t{NFPROTO_UNSPEC} : nfproto(ref.family));
  nlmsghdr* nlh = socket.build_request(buf, NFT_MSG_GETOBJ, family, NLM_F_DUMP);
  std::unique_ptr<nftnl_obj, decltype(&nftnl_obj_free)> filter(nftnl_obj_alloc(), &nftnl_obj_free);
  if (!filter) throw std::bad_alloc();
  nftnl_obj_set_str(filter.get(), NFTNL_OBJ_TABLE, ref.name.c_str());
  nftnl_obj_nlmsg_build_payload(nlh, filter.get());
  const std::string where = table_text(ref.family, ref.name);
  bool interrupted = false;
  socket.request(
      nlh,
      [&](const nlmsghdr* reply) {
        std::unique_ptr<nftnl_obj, decltype(&nftnl_obj_free)> o(nftnl_obj_alloc(), &nftnl_obj_free);
        if (!o) throw std::bad_alloc();
        if (nftnl_obj_nlmsg_parse(reply, o.get()) < 0) throw DecodeError(where + ": unparsable object");
        const char* table = nftnl_obj_get_str(o.get(), NFTNL_OBJ_TABLE);
        if (!table || ref.name != table) return;  // kernels without the table filter
        if (nftnl_obj_get_u32(o.get(), NFTNL_OBJ_TYPE) != NFT_OBJECT_COUNTER) {
          throw DecodeError(where + ": object " + nftnl_obj_get_str(o.get(), NFTNL_OBJ_NAME) +
                            " is not a counter - svcproxy does not write this");
        }
        fn(o.get());
      },
      &interrupted);
  if (interrupted && changed) *changed = true;
}

class TableReader {
 public:
  TableReader(NetlinkSocket& socket, const TableRef& ref) : socket_(socket), ref_(ref) {
    where_ = table_text(ref.family, ref.name);
  }

  // Returns nullopt if the table does not exist.
  std::optional<ir::Table> read(bool* changed) {
    changed_ = changed;
    if (!exists()) return std::nullopt;
    ir::Table table;
    table.family = ref_.family;
    table.name = ref_.name;
    read_counters(table);
    read_chains(table);
    read_sets(table);
    read_rules(table);
    return table;
  }

 private:
  uint16_t family() const { return static_cast<uint16_t>(nfproto(ref_.family)); }

  bool request(nlmsghdr* nlh, const std::function<void(const nlmsghdr*)>& on_reply) {
    bool interrupted = false;
    const bool found = socket_.request(nlh, on_reply, &interrupted);
    if (interrupted) *changed_ = true;
    return found;
  }

  bool exists() {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = socket_.build_request(buf, NFT_MSG_GETTABLE, family(), NLM_F_ACK);
    auto t = make_table();
    nftnl_table_set_str(t.get(), NFTNL_TABLE_NAME, ref_.name.c_str());
    nftnl_table_nlmsg_build_payload(nlh, t.get());
    return request(nlh, [](const nlmsghdr*) {});
  }

  void read_counters(ir::Table& table) {
    for_each_counter(socket_, ref_, changed_, [&](nftnl_obj* o) {
      table.counters.push_back(ir::Counter{nftnl_obj_get_str(o, NFTNL_OBJ_NAME)});
    });
    std::sort(table.counters.begin(), table.counters.end());
  }

  void read_chains(ir::Table& table) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    // The kernel cannot filter chain dumps by table: look only at the table
    // name of other tables' chains.
    nlmsghdr* nlh = socket_.build_request(buf, NFT_MSG_GETCHAIN, family(), NLM_F_DUMP);
    request(nlh, [&](const nlmsghdr* reply) {
      if (chain_table(reply) != ref_.name) return;
      auto c = make_chain();
      if (nftnl_chain_nlmsg_parse(reply, c.get()) < 0) throw DecodeError(where_ + ": unparsable chain");
      ir::Chain chain;
      chain.name = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_NAME);
      const std::string what = "chain " + where_ + " " + chain.name;
      if (nftnl_chain_is_set(c.get(), NFTNL_CHAIN_HOOKNUM)) {
        ir::BaseChainSpec base;
        switch (nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_HOOKNUM)) {
          case NF_INET_PRE_ROUTING: base.hook = ir::Hook::Prerouting; break;
          case NF_INET_LOCAL_OUT: base.hook = ir::Hook::Output; break;
          case NF_INET_POST_ROUTING: base.hook = ir::Hook::Postrouting; break;
          case NF_INET_LOCAL_IN:
            base.hook = ir::Hook::Input;
            break;
          default: throw DecodeError(what + ": unsupported hook");
        }
        base.priority = nftnl_chain_get_s32(c.get(), NFTNL_CHAIN_PRIO);
        const char* type = nftnl_chain_get_str(c.get(), NFTNL_CHAIN_TYPE);
        if (!type || std::string_view(type) != "nat") throw DecodeError(what + ": base chain type is not nat");
        if (nftnl_chain_get_u32(c.get(), NFTNL_CHAIN_POLICY) != NF_ACCEPT) {
          throw DecodeError(what + ": base chain policy is not accept");
        }
        chain.base = base;
      }
      chain_index_[chain.name] = table.chains.size();
      table.chains.push_back(std::move(chain));
    });
  }

  void read_sets(ir::Table& table) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = socket_.build_request(buf, NFT_MSG_GETSET, family(), NLM_F_DUMP);
    auto filter = make_set();
    nftnl_set_set_str(filter.get(), NFTNL_SET_TABLE, ref_.name.c_str());
    nftnl_set_nlmsg_build_payload(nlh, filter.get());
    std::vector<SetPtr> raw;
    request(nlh, [&](const nlmsghdr* reply) {
      auto s = make_set();
      if (nftnl_set_nlmsg_parse(reply, s.get()) < 0) throw DecodeError(where_ + ": unparsable set");
      raw.push_back(std::move(s));
    });
    for (auto& s : raw) {
      const std::string name = nftnl_set_get_str(s.get(), NFTNL_SET_NAME);
      const uint32_t flags = nftnl_set_get_u32(s.get(), NFTNL_SET_FLAGS);
      if (flags & NFT_SET_ANONYMOUS) {
        read_anonymous(s.get(), name, flags);
        continue;
      }
      table.sets.push_back(decode_set(s.get(), name, flags));
    }
  }

  ir::Set decode_set(nftnl_set* s, const std::string& name, uint32_t flags) {
    const std::string what = "set " + where_ + " " + name;
    constexpr uint32_t kKnown = NFT_SET_MAP | NFT_SET_INTERVAL | NFT_SET_TIMEOUT | NFT_SET_EVAL | NFT_SET_OBJECT;
    if (flags & ~kKnown) throw DecodeError(what + ": unsupported flags " + std::to_string(flags));
    ir::Set set;
    set.name = name;
    set.interval = flags & NFT_SET_INTERVAL;
    set.dynamic = flags & NFT_SET_EVAL;
    set.key = split_key_type(nftnl_set_get_u32(s, NFTNL_SET_KEY_TYPE));
    check_types(set.key, nftnl_set_get_u32(s, NFTNL_SET_KEY_TYPE), what + ": key");
    if (nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN) != key_len(set.key, ref_.family)) {
      throw DecodeError(what + ": unexpected key length");
    }
    if (flags & NFT_SET_OBJECT) {
      if (flags & NFT_SET_MAP || nftnl_set_get_u32(s, NFTNL_SET_OBJ_TYPE) != NFT_OBJECT_COUNTER) {
        throw DecodeError(what + ": object map other than of counters");
      }
      set.is_counter_map = true;
    }
    if (flags & NFT_SET_MAP) {
      const uint32_t data_type = nftnl_set_get_u32(s, NFTNL_SET_DATA_TYPE);
      if (data_type == NFT_DATA_VERDICT) {
        set.is_verdict_map = true;
      } else {
        set.data = split_key_type(data_type);
        check_types(set.data, data_type, what + ": data");
        if (nftnl_set_get_u32(s, NFTNL_SET_DATA_LEN) != key_len(set.data, ref_.family)) {
          throw DecodeError(what + ": unexpected data length");
        }
      }
    }
    if (flags & NFT_SET_TIMEOUT) {
      const uint64_t ms = nftnl_set_is_set(s, NFTNL_SET_TIMEOUT) ? nftnl_set_get_u64(s, NFTNL_SET_TIMEOUT) : 0;
      if (ms == 0 || ms % 1000 != 0) throw DecodeError(what + ": timeout is not a whole number of seconds");
      set.timeout_seconds = static_cast<uint32_t>(ms / 1000);
    }
    // The userdata decides how nft prints the set (`type` or `typeof`): it
    // must be exactly what svcproxy writes.
    uint32_t ud_len = 0;
    const void* ud = nftnl_set_is_set(s, NFTNL_SET_USERDATA) ? nftnl_set_get_data(s, NFTNL_SET_USERDATA, &ud_len)
                                                            : nullptr;
    const std::string want = set_userdata(set, ref_.family);
    if (ud_len != want.size() || (ud_len && std::memcmp(ud, want.data(), ud_len) != 0)) {
      throw DecodeError(what + ": userdata differs from what svcproxy writes");
    }
    // Dynamic sets fill from the packet path; their elements are not IR.
    if (!set.dynamic) read_elements(set, what);
    return set;
  }

  void check_types(const std::vector<KeyType>& types, uint32_t id, const std::string& what) const {
    if (types.empty()) throw DecodeError(what + ": unsupported type " + std::to_string(id));
    if (key_type_id(types, ref_.family) != id) throw DecodeError(what + ": address type of the other family");
  }

  // Calls fn(RawElement) for every element of set `name`.
  template <typename Fn>
  void dump_elements(const std::string& name, Fn&& fn) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = socket_.build_request(buf, NFT_MSG_GETSETELEM, family(), NLM_F_DUMP);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, ref_.name.c_str());
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, name.c_str());
    const bool found = request(nlh, [&](const nlmsghdr* reply) {
      const auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(reply, sizeof(nfgenmsg)));
      const char* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(reply));
      while (mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr)))) {
        if (mnl_attr_get_type(attr) == NFTA_SET_ELEM_LIST_ELEMENTS) {
          for_each_nested(attr, [&](const nlattr* elem) { fn(parse_element(elem)); });
        }
        attr = mnl_attr_next(attr);
      }
    });
    if (!found) *changed_ = true;  // deleted since the set dump
  }

  void read_elements(ir::Set& set, const std::string& what) {
    const IPFamily family = ref_.family;
    if (set.interval) {
      if (set.key != std::vector<KeyType>{KeyType::Addr}) throw DecodeError(what + ": interval set not of addresses");
      std::vector<std::pair<model::IPAddress, bool>> bounds;
      dump_elements(set.name, [&](const RawElement& e) {
        if (e.key.size() != addr_len(family)) throw DecodeError(what + ": element of unexpected length");
        model::IPAddress addr{family, {}};
        std::memcpy(addr.bytes.data(), e.key.data(), e.key.size());
        bounds.emplace_back(addr, (e.flags & NFT_SET_ELEM_INTERVAL_END) != 0);
      });
      set.elements = intervals_to_prefixes(std::move(bounds), family, what);
      std::sort(set.elements.begin(), set.elements.end());
      return;
    }
    dump_elements(set.name, [&](const RawElement& e) {
      try {
        ir::Element element;
        assign_values(element.key, e.key, set.key, family);
        if (set.is_verdict_map) {
          element.verdict = elem_verdict(e, what);
        } else if (set.is_counter_map) {
          if (e.object.empty()) throw DecodeError(what + ": element without a counter");
          element.object = std::string(e.object);
        } else if (!set.data.empty()) {
          assign_values(element.data, e.data, set.data, family);
        }
        set.elements.push_back(std::move(element));
      } catch (const DecodeError&) {
        throw;
      } catch (const std::runtime_error& error) {
        throw DecodeError(what + ": " + error.what());
      }
    });
    std::sort(set.elements.begin(), set.elements.end());
    // A hash set's dump spans several messages, each resuming by skipping
    // the elements already sent; when the kernel resizes the table between
    // them (it does so in the background after a large transaction), the
    // order changes and the dump repeats some elements and misses as many.
    // A repeat is the visible half: read everything again.
    if (std::adjacent_find(set.elements.begin(), set.elements.end()) != set.elements.end()) *changed_ = true;
  }

  // `numgen random mod N vmap { ... }` maps: slot -> verdict, for the rule
  // that binds them.
  void read_anonymous(nftnl_set* s, const std::string& name, uint32_t flags) {
    const std::string what = "anonymous set " + where_ + " " + name;
    if (flags != (NFT_SET_ANONYMOUS | NFT_SET_CONSTANT | NFT_SET_MAP) ||
        nftnl_set_get_u32(s, NFTNL_SET_KEY_TYPE) != kTypeInteger || nftnl_set_get_u32(s, NFTNL_SET_KEY_LEN) != 4 ||
        nftnl_set_get_u32(s, NFTNL_SET_DATA_TYPE) != NFT_DATA_VERDICT) {
      throw DecodeError(what + ": not a numgen verdict map");
    }
    uint32_t ud_len = 0;
    const void* ud = nftnl_set_is_set(s, NFTNL_SET_USERDATA) ? nftnl_set_get_data(s, NFTNL_SET_USERDATA, &ud_len)
                                                            : nullptr;
    const std::string want = anonymous_vmap_userdata();
    if (ud_len != want.size() || (ud_len && std::memcmp(ud, want.data(), ud_len) != 0)) {
      throw DecodeError(what + ": userdata differs from what svcproxy writes");
    }
    auto& slots = anonymous_[name];
    dump_elements(name, [&](const RawElement& e) {
      if (e.key.size() != 4) throw DecodeError(what + ": element of unexpected length");
      uint32_t slot;
      std::memcpy(&slot, e.key.data(), 4);
      slots.emplace_back(slot, elem_verdict(e, what));
    });
    std::sort(slots.begin(), slots.end());
  }

  void read_rules(ir::Table& table) {
    char buf[MNL_SOCKET_BUFFER_SIZE];
    nlmsghdr* nlh = socket_.build_request(buf, NFT_MSG_GETRULE, family(), NLM_F_DUMP);
    auto filter = make_rule();
    nftnl_rule_set_str(filter.get(), NFTNL_RULE_TABLE, ref_.name.c_str());
    nftnl_rule_nlmsg_build_payload(nlh, filter.get());
    request(nlh, [&](const nlmsghdr* reply) {
      auto r = make_rule();
      if (nftnl_rule_nlmsg_parse(reply, r.get()) < 0) throw DecodeError(where_ + ": unparsable rule");
      const char* chain_name = nftnl_rule_get_str(r.get(), NFTNL_RULE_CHAIN);
      const char* table_name = nftnl_rule_get_str(r.get(), NFTNL_RULE_TABLE);
      if (!table_name || ref_.name != table_name) return;  // kernels without the table filter
      const auto it = chain_name ? chain_index_.find(chain_name) : chain_index_.end();
      if (it == chain_index_.end()) {
        *changed_ = true;  // a chain created after the chain dump
        return;
      }
      ir::Chain& chain = table.chains[it->second];
      std::vector<nftnl_expr*> exprs;
      if (nftnl_expr_foreach(r.get(), collect<nftnl_expr>, &exprs) < 0) throw std::bad_alloc();
      const std::string where =
          "rule " + std::to_string(chain.rules.size() + 1) + " of chain " + where_ + " " + chain.name;
      chain.rules.push_back(RuleDecoder(ref_.family, where, std::move(exprs), anonymous_).decode());
    });
  }

  NetlinkSocket& socket_;
  TableRef ref_;
  std::string where_;
  bool* changed_ = nullptr;
  std::map<std::string, size_t> chain_index_;
  std::map<std::string, std::vector<std::pair<uint32_t, ir::Verdict>>> anonymous_;
};

}  // namespace

namespace {

// One pass over `tables`; sets *changed if a commit raced it.
ir::Ruleset read_tables_pass(NetlinkSocket& socket, const std::vector<TableRef>& tables, bool* changed) {
  ir::Ruleset ruleset;
  for (const auto& ref : tables) {
    TableReader reader(socket, ref);
    if (auto table = reader.read(changed)) ruleset.tables.push_back(std::move(*table));
    if (*changed) break;
  }
  for (auto& table : ruleset.tables) {
    auto by_name = [](const auto& a, const auto& b) { return a.name < b.name; };
    std::sort(table.sets.begin(), table.sets.end(), by_name);
    std::sort(table.chains.begin(), table.chains.end(), by_name);
  }
  return ruleset;
}

}  // namespace

std::vector<CounterValue> read_counters(NetlinkSocket& socket, const std::string& table) {
  std::vector<CounterValue> out;
  for_each_counter(
      socket, {IPFamily::V4, table}, nullptr,
      [&](nftnl_obj* o) {
        const uint32_t family = nftnl_obj_get_u32(o, NFTNL_OBJ_FAMILY);
        if (family != NFPROTO_IPV4 && family != NFPROTO_IPV6) return;  // an inet/arp/... table of that name
        out.push_back({family == NFPROTO_IPV4 ? IPFamily::V4 : IPFamily::V6, nftnl_obj_get_str(o, NFTNL_OBJ_NAME),
                       nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_PKTS), nftnl_obj_get_u64(o, NFTNL_OBJ_CTR_BYTES)});
      },
      true);
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return std::tie(a.family, a.name) < std::tie(b.family, b.name); });
  return out;
}

ir::Ruleset read_tables(NetlinkSocket& socket, const std::vector<TableRef>& tables) {
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    const uint32_t before = socket.generation();
    bool changed = false;
    ir::Ruleset ruleset = read_tables_pass(socket, tables, &changed);
    if (changed || socket.generation() != before) continue;
    return ruleset;
  }
  throw NetlinkError("netlink: the ruleset kept changing while it was read (" + std::to_string(kMaxAttempts) +
                         " attempts)",
                     EAGAIN);
}

ir::Ruleset read_tables_racy(NetlinkSocket& socket, const std::vector<TableRef>& tables, bool* raced) {
  // Every table is read to its end whatever raced it: a pass that stopped at
  // the first interruption would never finish under a steady commit rate.
  const uint32_t before = socket.generation();
  bool changed = false;
  ir::Ruleset ruleset;
  for (const auto& ref : tables) {
    bool interrupted = false;
    ir::Ruleset one = read_tables_pass(socket, {ref}, &interrupted);
    changed = changed || interrupted;
    for (auto& table : one.tables) ruleset.tables.push_back(std::move(table));
  }
  *raced = changed || socket.generation() != before;
  return ruleset;
}

}  // namespace svcproxy::dataplane
