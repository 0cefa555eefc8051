// What the IR's values look like inside nf_tables, shared by the encoder and
// the decoder so the two cannot disagree: nft's datatype ids, key layouts,
// packet field offsets, register numbering, set userdata, and RAII owners for
// libnftnl objects. Everything here mirrors what nft 1.0.6 itself sends, so
// that the kernel holds the same objects as after `nft -f` of render_nft().
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "dataplane/ir.h"

struct nftnl_table;
struct nftnl_chain;
struct nftnl_set;
struct nftnl_set_elem;
struct nftnl_rule;
struct nftnl_expr;
struct nftnl_udata_buf;

namespace svcproxy::dataplane::nl {

// ---- RAII ------------------------------------------------------------------

struct NftnlDeleter {
  void operator()(nftnl_table* p) const;
  void operator()(nftnl_chain* p) const;
  void operator()(nftnl_set* p) const;
  void operator()(nftnl_set_elem* p) const;
  void operator()(nftnl_rule* p) const;
  void operator()(nftnl_expr* p) const;
  void operator()(nftnl_udata_buf* p) const;
};
using TablePtr = std::unique_ptr<nftnl_table, NftnlDeleter>;
using ChainPtr = std::unique_ptr<nftnl_chain, NftnlDeleter>;
using SetPtr = std::unique_ptr<nftnl_set, NftnlDeleter>;
using ElemPtr = std::unique_ptr<nftnl_set_elem, NftnlDeleter>;
using RulePtr = std::unique_ptr<nftnl_rule, NftnlDeleter>;
using ExprPtr = std::unique_ptr<nftnl_expr, NftnlDeleter>;
using UdataPtr = std::unique_ptr<nftnl_udata_buf, NftnlDeleter>;

// Allocators that throw std::bad_alloc instead of returning null.
TablePtr make_table();
ChainPtr make_chain();
SetPtr make_set();
ElemPtr make_elem();
RulePtr make_rule();
ExprPtr make_expr(const char* name);
UdataPtr make_udata();

// ---- the table -------------------------------------------------------------

// The table comment render_nft writes; part of the table as nft creates it.
inline constexpr const char* kTableComment = "managed by svcproxy; edits are reverted";

uint32_t nfproto(model::IPFamily family);  // NFPROTO_IPV4 / NFPROTO_IPV6
size_t addr_len(model::IPFamily family);    // 4 / 16

// ---- set key and data types --------------------------------------------------

// Sets declared with `typeof` (any numgen slot in the key) rather than `type`.
bool uses_typeof(const ir::Set& set);

// nft's datatype ids (nftables include/datatype.h), which nft stores as the
// kernel's set key/data type; a concatenation stacks them TYPE_BITS apart.
inline constexpr uint32_t kTypeInteger = 4;
inline constexpr uint32_t kTypeIPv4Addr = 7;
inline constexpr uint32_t kTypeIPv6Addr = 8;
inline constexpr uint32_t kTypeInetProto = 12;
inline constexpr uint32_t kTypeInetService = 13;
inline constexpr uint32_t kTypeBits = 6;

uint32_t type_id(ir::KeyType type, model::IPFamily family);
// Single type id, or the concatenated id for several components.
uint32_t key_type_id(const std::vector<ir::KeyType>& types, model::IPFamily family);
// Splits a (possibly concatenated) id back into types; empty if unknown.
std::vector<ir::KeyType> split_key_type(uint32_t id);

// Bytes a component occupies on the wire: alone, its natural length (addr
// 4/16, proto 1, port 2, slot 4); in a concatenation each is padded to a
// 32-bit word, as registers are.
size_t value_len(ir::KeyType type, model::IPFamily family);
size_t key_len(const std::vector<ir::KeyType>& types, model::IPFamily family);

// Appends one key/data tuple in the kernel's layout. Interval sets use
// append_interval_bounds instead.
void append_values(std::string& out, std::span<const ir::Value> values, const std::vector<ir::KeyType>& types,
                   model::IPFamily family);
template <typename Values>
void append_values(std::string& out, const Values& values, const std::vector<ir::KeyType>& types,
                   model::IPFamily family) {
  // Packed lists (ir::ValueList) decode into a small buffer first.
  std::array<ir::Value, 8> buffer;
  size_t n = 0;
  for (const ir::Value& v : values) {
    if (n == buffer.size()) throw std::invalid_argument("value tuple does not match the set's type");
    buffer[n++] = v;
  }
  append_values(out, std::span<const ir::Value>(buffer.data(), n), types, family);
}
// Parses a tuple into out[0..types.size()) (out must have room); throws
// std::runtime_error on a length mismatch or an unknown protocol.
void parse_values(const void* data, size_t len, const std::vector<ir::KeyType>& types, model::IPFamily family,
                  std::span<ir::Value> out);

// The set userdata nft writes (NFTNL_UDATA_SET_*): byte orders, the `typeof`
// expressions of the key and data, the data-interval flag. Returns the bytes.
std::string set_userdata(const ir::Set& set, model::IPFamily family);
// The same for the anonymous `numgen ... vmap { }` map.
std::string anonymous_vmap_userdata();

// ---- packet fields and registers -------------------------------------------

// Width of a packet field in 32-bit register words.
uint32_t field_words(ir::KeyField field, model::IPFamily family);
// nft's register numbering for a value starting `word` words into the
// register file: the 16-byte register NFT_REG_1..4 when aligned to one,
// else the 4-byte NFT_REG32_xx (nft keeps the old numbers where it can).
uint32_t register_at(uint32_t word);

// IPv4/IPv6 header offset of the source or destination address.
uint32_t addr_offset(ir::KeyField field, model::IPFamily family);

// Nest type numbers of set element userdata (libnftnl udata.h).
inline constexpr uint8_t kElemUdataFlags = 1;     // NFTNL_UDATA_SET_ELEM_FLAGS
inline constexpr uint32_t kElemIntervalOpen = 1;  // NFTNL_SET_ELEM_F_INTERVAL_OPEN

}  // namespace svcproxy::dataplane::nl
