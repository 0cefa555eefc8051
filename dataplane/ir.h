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
#include <cstring>
#include <iterator>
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

// The components of one element key or data tuple, packed into a fixed
// number of bytes inside the element: rulesets hold 100k+ elements and the
// incremental compiler keeps every one of them, so neither a heap allocation
// nor a 24-byte variant per component can be afforded (an element was 208
// bytes with std::variant components; packed it is 72). Each component is a
// tag byte followed by its value, big-endian, IPv4 addresses in 4 bytes:
//
//   tag 0 IPv4 address (4)    tag 2 IPv4 prefix (4 + length)   tag 4 protocol (1)
//   tag 1 IPv6 address (16)   tag 3 IPv6 prefix (16 + length)  tag 5 port (2)   tag 6 slot (4)
//
// The tags follow Value's alternatives (and IPv4 before IPv6, as IPAddress
// orders them), so comparing the bytes orders lists exactly as comparing
// their Values would. Capacity fits every key svcproxy uses (IPv6 . IPv6 is
// 34 bytes, IPv6 . proto . port . slot 27); push_back throws beyond it.
// Read-only access decodes: operator[] and iteration yield Values by value.
template <size_t Bytes>
class PackedValues {
 public:
  static constexpr size_t kBytes = Bytes;
  PackedValues() = default;
  PackedValues(std::initializer_list<Value> values) {
    for (const auto& v : values) push_back(v);
  }

  class const_iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Value;
    using difference_type = std::ptrdiff_t;
    using reference = Value;
    using pointer = void;
    const_iterator() = default;
    explicit const_iterator(const uint8_t* at) : at_(at) {}
    Value operator*() const { return decode(at_); }
    const_iterator& operator++() {
      at_ += encoded_size(*at_);
      return *this;
    }
    const_iterator operator++(int) {
      auto old = *this;
      ++*this;
      return old;
    }
    bool operator==(const const_iterator& o) const { return at_ == o.at_; }

   private:
    const uint8_t* at_ = nullptr;
  };

  size_t size() const { return count_; }
  bool empty() const { return count_ == 0; }
  void clear() { *this = PackedValues(); }
  const_iterator begin() const { return const_iterator(bytes_.data()); }
  const_iterator end() const { return const_iterator(bytes_.data() + used_); }
  Value operator[](size_t i) const {
    const uint8_t* at = bytes_.data();
    while (i-- > 0) at += encoded_size(*at);
    return decode(at);
  }
  Value front() const { return (*this)[0]; }
  Value back() const { return (*this)[count_ - 1]; }
  void push_back(const Value& v) {
    uint8_t buf[kMaxComponent];
    const size_t n = encode(v, buf);
    if (used_ + n > Bytes) throw std::length_error("ir: an element's components exceed its packed capacity");
    std::memcpy(bytes_.data() + used_, buf, n);
    used_ = static_cast<uint8_t>(used_ + n);
    ++count_;
  }
  template <typename T>
  void emplace_back(T&& v) {
    push_back(Value(std::forward<T>(v)));
  }
  bool operator==(const PackedValues& o) const {
    return used_ == o.used_ && std::memcmp(bytes_.data(), o.bytes_.data(), used_) == 0;
  }
  std::strong_ordering operator<=>(const PackedValues& o) const {
    const int c = std::memcmp(bytes_.data(), o.bytes_.data(), std::min(used_, o.used_));
    if (c != 0) return c < 0 ? std::strong_ordering::less : std::strong_ordering::greater;
    return used_ <=> o.used_;
  }

 private:
  static constexpr size_t kMaxComponent = 18;  // tag + IPv6 prefix
  static size_t encoded_size(uint8_t tag) {
    static constexpr uint8_t kSizes[] = {5, 17, 6, 18, 2, 3, 5};
    return kSizes[tag];
  }
  static size_t encode(const Value& value, uint8_t* out) {
    return std::visit(
        [&](const auto& v) -> size_t {
          using T = std::decay_t<decltype(v)>;
          if constexpr (std::is_same_v<T, IPAddress>) {
            const bool v6 = v.family == IPFamily::V6;
            out[0] = v6 ? 1 : 0;
            std::memcpy(out + 1, v.bytes.data(), v6 ? 16 : 4);
            return v6 ? 17 : 5;
          } else if constexpr (std::is_same_v<T, CIDR>) {
            const bool v6 = v.address.family == IPFamily::V6;
            out[0] = v6 ? 3 : 2;
            std::memcpy(out + 1, v.address.bytes.data(), v6 ? 16 : 4);
            out[v6 ? 17 : 5] = v.prefix;
            return v6 ? 18 : 6;
          } else if constexpr (std::is_same_v<T, model::Protocol>) {
            out[0] = 4;
            out[1] = static_cast<uint8_t>(v);
            return 2;
          } else if constexpr (std::is_same_v<T, uint16_t>) {
            out[0] = 5;
            out[1] = static_cast<uint8_t>(v >> 8);
            out[2] = static_cast<uint8_t>(v);
            return 3;
          } else {
            out[0] = 6;
            for (int i = 0; i < 4; ++i) out[1 + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
            return 5;
          }
        },
        value);
  }
  static Value decode(const uint8_t* at) {
    auto address = [](const uint8_t* p, bool v6) {
      IPAddress ip;
      ip.family = v6 ? IPFamily::V6 : IPFamily::V4;
      std::memcpy(ip.bytes.data(), p, v6 ? 16 : 4);
      return ip;
    };
    switch (at[0]) {
      case 0:
      case 1:
        return address(at + 1, at[0] == 1);
      case 2:
      case 3: {
        CIDR cidr;
        cidr.address = address(at + 1, at[0] == 3);
        cidr.prefix = at[at[0] == 3 ? 17 : 5];
        return cidr;
      }
      case 4:
        return static_cast<model::Protocol>(at[1]);
      case 5:
        return static_cast<uint16_t>((at[1] << 8) | at[2]);
      default:
        return (uint32_t{at[1]} << 24) | (uint32_t{at[2]} << 16) | (uint32_t{at[3]} << 8) | uint32_t{at[4]};
    }
  }

  std::array<uint8_t, Bytes> bytes_{};
  uint8_t used_ = 0;
  uint8_t count_ = 0;
};
using ValueList = PackedValues<38>;  // element keys
using DataList = PackedValues<22>;   // element data (address . port)

// An element's optional verdict, held out of line: only verdict-map
// elements have one (affinity and source-range services), and an inline
// std::optional<Verdict> would add 48 bytes to every element. Same interface
// as std::optional for what the IR's consumers do with it.
class OptionalVerdict {
 public:
  OptionalVerdict() = default;
  OptionalVerdict(std::nullopt_t) {}
  OptionalVerdict(Verdict v) : verdict_(std::make_unique<Verdict>(std::move(v))) {}
  OptionalVerdict(const OptionalVerdict& o) : verdict_(o ? std::make_unique<Verdict>(*o) : nullptr) {}
  OptionalVerdict(OptionalVerdict&&) noexcept = default;
  OptionalVerdict& operator=(const OptionalVerdict& o) {
    if (this != &o) verdict_ = o ? std::make_unique<Verdict>(*o) : nullptr;
    return *this;
  }
  OptionalVerdict& operator=(OptionalVerdict&&) noexcept = default;
  explicit operator bool() const { return verdict_ != nullptr; }
  bool has_value() const { return verdict_ != nullptr; }
  const Verdict& operator*() const { return *verdict_; }
  const Verdict* operator->() const { return verdict_.get(); }
  std::optional<Verdict> optional() const { return verdict_ ? std::optional<Verdict>(*verdict_) : std::nullopt; }
  bool operator==(const OptionalVerdict& o) const {
    if (!*this || !o) return has_value() == o.has_value();
    return *verdict_ == *o.verdict_;
  }
  std::strong_ordering operator<=>(const OptionalVerdict& o) const {
    if (!*this || !o) return has_value() <=> o.has_value();
    return *verdict_ <=> *o.verdict_;
  }

 private:
  std::unique_ptr<Verdict> verdict_;
};

// The name of the object an objref map's element refers to (a counter),
// held out of line for the same reason as OptionalVerdict: most elements
// have none.
class ObjectName {
 public:
  ObjectName() = default;
  ObjectName(std::nullopt_t) {}
  ObjectName(std::string name) : name_(std::make_unique<std::string>(std::move(name))) {}
  ObjectName(const char* name) : ObjectName(std::string(name)) {}
  ObjectName(const ObjectName& o) : name_(o ? std::make_unique<std::string>(*o) : nullptr) {}
  ObjectName(ObjectName&&) noexcept = default;
  ObjectName& operator=(const ObjectName& o) {
    if (this != &o) name_ = o ? std::make_unique<std::string>(*o) : nullptr;
    return *this;
  }
  ObjectName& operator=(ObjectName&&) noexcept = default;
  explicit operator bool() const { return name_ != nullptr; }
  const std::string& operator*() const { return *name_; }
  const std::string* operator->() const { return name_.get(); }
  bool operator==(const ObjectName& o) const {
    if (!*this || !o) return bool(*this) == bool(o);
    return *name_ == *o.name_;
  }
  std::strong_ordering operator<=>(const ObjectName& o) const {
    if (!*this || !o) return bool(*this) <=> bool(o);
    return *name_ <=> *o.name_;
  }

 private:
  std::unique_ptr<std::string> name_;
};

struct Element {
  ValueList key;
  // Maps only: a verdict (verdict maps) or a value tuple (data maps).
  OptionalVerdict verdict;
  DataList data;
  ObjectName object{};  // counter maps only: the counter's name
  auto operator<=>(const Element&) const = default;
  bool operator==(const Element&) const = default;
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
  // An objref map: each element names a counter (`type ... : counter`).
  bool is_counter_map = false;

  bool is_map() const { return is_verdict_map || is_counter_map || !data.empty(); }
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

// meta iifname [!=] "name"   or, with prefix, iifname [!=] "name*"
// (the input interface's name equals `name` / starts with it). `name` is
// 1..15 bytes (IFNAMSIZ - 1), a prefix 1..14 (nft's text takes 15 with the
// '*'), without '*' or NUL.
struct IifnameMatch {
  std::string name;
  bool prefix = false;
  bool negate = false;
  auto operator<=>(const IifnameMatch&) const = default;
};

using Match = std::variant<AddrMatch, SetMatch, FibLocalMatch, MarkMatch, CtDnatMatch, ProtoMatch, IifnameMatch>;

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

// counter name "x"   (counts the packet in the named counter object)
struct CounterStmt {
  std::string name;
  auto operator<=>(const CounterStmt&) const = default;
};

// counter name <key> map @map   (the counter the key maps to; a miss ends
// the rule there, like a failed match)
struct CounterMapStmt {
  std::vector<KeyField> key;
  std::string map;
  auto operator<=>(const CounterMapStmt&) const = default;
};

using Statement = std::variant<VmapStmt, NumgenVmapStmt, DnatMapStmt, DnatStmt, MarkStmt, SetUpdateStmt, MasqueradeStmt,
                               RejectStmt, CounterStmt, CounterMapStmt, Verdict>;

struct Rule {
  std::vector<Match> matches;
  std::vector<Statement> statements;
  std::string comment;  // not rendered; for readers of the IR
  auto operator<=>(const Rule&) const = default;
};

enum class Hook : uint8_t { Prerouting, Output, Postrouting, Input };

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

// A named counter object (`counter <name> { packets 0 bytes 0 }`). Only the
// name is IR: what it has counted is kernel state, read on its own
// (read_counters in dataplane/netlink_decode.h), so a readback equals the compiled ruleset whatever
// traffic passed.
struct Counter {
  std::string name;
  auto operator<=>(const Counter&) const = default;
};

struct Table {
  IPFamily family = IPFamily::V4;  // "ip" or "ip6"
  std::string name = "svcproxy";
  std::vector<Counter> counters;  // sorted by name
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
    std::vector<const Counter*> counters;  // in name order
  };
  std::vector<TableRef> tables;
  struct Storage;
  std::shared_ptr<Storage> storage;
};

// Sorts elements into the IR's canonical order (operator<; keys compare as
// packed bytes, so this is a memcmp sort).
void sort_elements(std::vector<Element>& elements);

// nft family keyword: "ip" / "ip6".
std::string_view family_keyword(IPFamily family);

}  // namespace svcproxy::dataplane::ir
