// The nftables IR: the compiled ruleset as structured values. The compiler
// produces it; the nft text renderer, the JSON renderer, the trace evaluator
// and the netlink backend all consume exactly this, so what `rules` prints,
// what `trace` predicts and what the kernel holds cannot drift apart.
//
// The IR covers only the expressions svcproxy's ruleset uses. Every rule is a
// conjunction of matches followed by statements; the last statement may be a
// verdict.
#pragma once

#include <algorithm>
#include <array>
#include <compare>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <stdexcept>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "model/ip.h"
#include "model/objects.h"

namespace svcproxy::dataplane::ir {

using model::CIDR;
using model::IPAddress;
using model::IPFamily;

// ---- values that appear in set keys and data -------------------------------

// Packet fields a key (set lookup, map lookup) can be made of.
enum class KeyField : uint8_t {
  SrcAddr,    // ip saddr / ip6 saddr
  DstAddr,    // ip daddr / ip6 daddr
  L4Proto,    // meta l4proto
  DstPort,    // th dport
  Numgen,     // numgen random mod N (N given by the statement)
};

// Types of set key and data components (nft's datatypes).
enum class KeyType : uint8_t {
  Addr,      // ipv4_addr / ipv6_addr (by table family)
  Proto,     // inet_proto
  Port,      // inet_service
  Slot,      // 32-bit integer produced by numgen (declared with typeof)
};

// One component of an element key or of element data.
using Value = std::variant<IPAddress, CIDR, model::Protocol, uint16_t /*port*/, uint32_t /*slot*/>;

enum class VerdictKind : uint8_t { Accept, Drop, Return, Jump, Goto };

struct Verdict {
  VerdictKind kind = VerdictKind::Accept;
  std::string chain;  // Jump/Goto only
  auto operator<=>(const Verdict&) const = default;
};

// The components of one element key or data tuple, stored inline: an
// element has at most 4 key components (addr . proto . port . slot) and 2 data
// components, and rulesets hold 100k+ elements, so per-element heap
// allocations would dominate compile time. Vector-like interface.
template <size_t Capacity>
class InlineValues {
 public:
  static constexpr size_t kCapacity = Capacity;
  InlineValues() = default;
  InlineValues(std::initializer_list<Value> values) {
    for (const auto& v : values) push_back(v);
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void clear() { size_ = 0; }
  const Value& operator[](size_t i) const { return values_[i]; }
  Value& operator[](size_t i) { return values_[i]; }
  const Value* begin() const { return values_.data(); }
  const Value* end() const { return values_.data() + size_; }
  Value* begin() { return values_.data(); }
  Value* end() { return values_.data() + size_; }
  const Value& front() const { return values_[0]; }
  const Value& back() const { return values_[size_ - 1]; }
  void push_back(const Value& v) {
    if (size_ == kCapacity) throw std::length_error("ir: too many components in an element");
    values_[size_++] = v;
  }
  template <typename T>
  void emplace_back(T&& v) {
    push_back(Value(std::forward<T>(v)));
  }
  bool operator==(const InlineValues& o) const { return std::equal(begin(), end(), o.begin(), o.end()); }
  std::strong_ordering operator<=>(const InlineValues& o) const {
    return std::lexicographical_compare_three_way(begin(), end(), o.begin(), o.end());
  }

 private:
  std::array<Value, kCapacity> values_{};
  uint8_t size_ = 0;
};
using ValueList = InlineValues<4>;  // element keys
using DataList = InlineValues<2>;   // element data (address . port)

struct Element {
  ValueList key;
  // Maps only: a verdict (verdict maps) or a value tuple (data maps).
  std::optional<Verdict> verdict;
  DataList data;
  auto operator<=>(const Element&) const = default;
};

struct Set {
  std::string name;
  std::vector<KeyType> key;
  // Data maps: the data components; verdict maps: is_verdict_map.
  std::vector<KeyType> data;
  bool is_verdict_map = false;
  bool interval = false;  // flags interval (CIDR elements)
  // Dynamic sets updated from the packet path (session affinity).
  bool dynamic = false;
  uint32_t timeout_seconds = 0;  // 0: none
  std::vector<Element> elements;  // sorted

  bool is_map() const { return is_verdict_map || !data.empty(); }
  auto operator<=>(const Set&) const = default;
};

// ---- matches ---------------------------------------------------------------

// ip saddr/daddr [!=] <CIDR>   or   ip saddr/daddr [!=] @set
struct AddrMatch {
  KeyField field = KeyField::SrcAddr;  // SrcAddr or DstAddr
  bool negate = false;
  std::optional<CIDR> cidr;  // exactly one of cidr / set
  std::string set;
  auto operator<=>(const AddrMatch&) const = default;
};

// <fields...> @set   (concatenated lookup in a named set, e.g. hairpin pairs)
struct SetMatch {
  std::vector<KeyField> key;
  std::string set;
  auto operator<=>(const SetMatch&) const = default;
};

// fib saddr/daddr type local
struct FibLocalMatch {
  KeyField field = KeyField::DstAddr;
  auto operator<=>(const FibLocalMatch&) const = default;
};

// meta mark & bits == 0 (is_zero) / != 0
struct MarkMatch {
  uint32_t bits = 0;
  bool is_zero = true;
  auto operator<=>(const MarkMatch&) const = default;
};

// ct status dnat
struct CtDnatMatch {
  auto operator<=>(const CtDnatMatch&) const = default;
};

// meta l4proto <proto>
struct ProtoMatch {
  model::Protocol protocol = model::Protocol::TCP;
  auto operator<=>(const ProtoMatch&) const = default;
};

using Match = std::variant<AddrMatch, SetMatch, FibLocalMatch, MarkMatch, CtDnatMatch, ProtoMatch>;

// ---- statements ------------------------------------------------------------

// <key> vmap @map      (numgen_modulus applies to a Numgen key field)
struct VmapStmt {
  std::vector<KeyField> key;
  std::string map;
  uint32_t numgen_modulus = 0;
  auto operator<=>(const VmapStmt&) const = default;
};

// numgen random mod N vmap { 0 : goto c0, 1 : goto c1, ... }   (anonymous)
struct NumgenVmapStmt {
  std::vector<std::string> chains;  // N = chains.size(); slot i -> goto chains[i]
  auto operator<=>(const NumgenVmapStmt&) const = default;
};

// dnat ip to <key> map @map   (data: address . port)
struct DnatMapStmt {
  std::vector<KeyField> key;
  std::string map;
  uint32_t numgen_modulus = 0;
  auto operator<=>(const DnatMapStmt&) const = default;
};

// dnat ip to <addr>:<port>   (preceded by a ProtoMatch in the same rule)
struct DnatStmt {
  IPAddress address;
  uint16_t port = 0;
  auto operator<=>(const DnatStmt&) const = default;
};

// meta mark set meta mark | bits  (or ^ bits when toggle)
struct MarkStmt {
  uint32_t bits = 0;
  bool xor_bits = false;
  auto operator<=>(const MarkStmt&) const = default;
};

// update @set { ip saddr }
struct SetUpdateStmt {
  std::string set;
  auto operator<=>(const SetUpdateStmt&) const = default;
};

// masquerade fully-random
struct MasqueradeStmt {
  auto operator<=>(const MasqueradeStmt&) const = default;
};

// reject (ICMP/ICMPv6 port unreachable), or `reject with tcp reset` (always
// after a `meta l4proto tcp` match). TCP gets a reset because ICMP errors are
// rate-limited per peer: a client retrying a rejected service would soon see
// timeouts instead of refusals.
struct RejectStmt {
  bool tcp_reset = false;
  auto operator<=>(const RejectStmt&) const = default;
};

using Statement = std::variant<VmapStmt, NumgenVmapStmt, DnatMapStmt, DnatStmt, MarkStmt,
                               SetUpdateStmt, MasqueradeStmt, RejectStmt, Verdict>;

struct Rule {
  std::vector<Match> matches;
  std::vector<Statement> statements;
  std::string comment;  // not rendered; for readers of the IR
  auto operator<=>(const Rule&) const = default;
};

enum class Hook : uint8_t { Prerouting, Output, Postrouting };

struct BaseChainSpec {
  Hook hook = Hook::Prerouting;
  int priority = -100;  // dstnat -100, srcnat 100
  auto operator<=>(const BaseChainSpec&) const = default;
};

struct Chain {
  std::string name;
  std::optional<BaseChainSpec> base;  // type nat hook ...; none: regular chain
  std::vector<Rule> rules;
  auto operator<=>(const Chain&) const = default;
};

struct Table {
  IPFamily family = IPFamily::V4;  // "ip" or "ip6"
  std::string name = "svcproxy";
  std::vector<Set> sets;      // sorted by name
  std::vector<Chain> chains;  // sorted by name
  const Set* find_set(std::string_view name) const;
  const Chain* find_chain(std::string_view name) const;
  auto operator<=>(const Table&) const = default;
};

// The whole ruleset: one table per family, v4 first.
struct Ruleset {
  std::vector<Table> tables;
  const Table* find_table(IPFamily family) const;
  auto operator<=>(const Ruleset&) const = default;
};

// A ruleset by reference: the same tables, sets and chains as a Ruleset,
// pointing into whoever holds them (the incremental compiler's per-service
// fragments) instead of copying them. A full sync encodes this, so the
// ruleset is never held twice. `tables[i].header` carries only family and
// name. A set's elements are `set->elements` followed by `extra` (shared sets
// gather theirs from every service); their order means nothing to the
// kernel. Chains are in name order, as in a Table. Valid while its source is
// unchanged; `storage` keeps objects built for the view (e.g. DNAT chains).
struct RulesetRef {
  struct SetRef {
    const Set* set = nullptr;
    std::vector<const Element*> extra;
    size_t size() const { return set->elements.size() + extra.size(); }
  };
  struct TableRef {
    Table header;
    std::vector<SetRef> sets;  // in name order
    std::vector<const Chain*> chains;
  };
  std::vector<TableRef> tables;
  struct Storage;
  std::shared_ptr<Storage> storage;
};

// Sorts elements into the IR's canonical order (operator<). Rulesets hold
// 100k+ elements: keys are encoded once into order-preserving bytes and
// compared with memcmp, and each element moves at most once.
void sort_elements(std::vector<Element>& elements);

// nft family keyword: "ip" / "ip6".
std::string_view family_keyword(IPFamily family);

}  // namespace svcproxy::dataplane::ir
