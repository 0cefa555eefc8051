#include "dataplane/trace.h"

#include <algorithm>
#include <compare>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include "base/json.h"

namespace svcproxy::dataplane {
namespace {

using ir::Chain;
using ir::Element;
using ir::Hook;
using ir::KeyField;
using ir::KeyType;
using ir::Rule;
using ir::Set;
using ir::Table;
using ir::Value;
using ir::Verdict;
using ir::VerdictKind;
using model::EndpointAddress;
using model::IPAddress;

// The kernel's jump stack (NFT_JUMP_STACK_SIZE): deeper rulesets do not load.
constexpr size_t kMaxJumpDepth = 16;
// Chains one branch may enter within one hook. A loadable ruleset is acyclic
// and svcproxy's paths are about ten chains long, so hitting this means a
// goto loop (which grows no stack) in the IR.
constexpr size_t kMaxChainHops = 256;

template <typename... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <typename... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

std::string_view hook_name(Hook hook) {
  switch (hook) {
    case Hook::Prerouting:
      return "prerouting";
    case Hook::Output:
      return "output";
    case Hook::Postrouting:
      return "postrouting";
    case Hook::Input:
      return "input";
  }
  return "?";
}

std::string_view key_type_name(KeyType type, model::IPFamily family) {
  switch (type) {
    case KeyType::Addr:
      return family == model::IPFamily::V4 ? "ipv4_addr" : "ipv6_addr";
    case KeyType::Proto:
      return "inet_proto";
    case KeyType::Port:
      return "inet_service";
    case KeyType::Slot:
      return "numgen slot";
  }
  return "?";
}

std::string describe(const Value& value) {
  return std::visit(Overloaded{
                        [](const IPAddress& ip) { return ip.str(); },
                        [](const model::CIDR& cidr) { return cidr.str(); },
                        [](model::Protocol protocol) { return std::string(model::to_lower(protocol)); },
                        [](uint16_t port) { return std::to_string(port); },
                        [](uint32_t slot) { return std::to_string(slot); },
                    },
                    value);
}

// How one branch of the evaluation ends within one hook.
enum class Disposition : uint8_t { Accept, Drop, Reject };

// What travels with one possible fate of the packet from hook to hook.
struct Branch {
  uint32_t mark = 0;                    // meta mark
  std::optional<EndpointAddress> dnat;  // set by a dnat statement
  bool masquerade = false;              // set by masquerade in postrouting
  bool operator==(const Branch&) const = default;
};

struct HookOutcome {
  Branch branch;
  Disposition disposition = Disposition::Accept;
  bool nat = false;  // a nat statement ended the hook: later nat chains are skipped
  bool operator==(const HookOutcome&) const = default;
};

// A return address: continue `chain` at rule index `rule`.
struct Frame {
  const Chain* chain = nullptr;
  size_t rule = 0;
};

// One branch in the middle of one hook: where it is and what it carries.
struct Cursor {
  Branch branch;
  std::vector<Frame> callers;  // jump pushes, goto does not, return pops
  const Chain* chain = nullptr;
  size_t rule = 0;
  size_t statement = 0;                 // 0: the rule's matches have not been evaluated yet
  std::vector<std::string_view> trail;  // chains entered, for error messages
};

// The packet's fields as the rules of the current hook see them: after
// DNAT, daddr and dport are the chosen endpoint's.
struct PacketView {
  IPAddress src;
  IPAddress dst;
  model::Protocol protocol = model::Protocol::TCP;
  uint16_t dport = 0;
};

void append_unique(std::vector<HookOutcome>& out, HookOutcome outcome) {
  if (std::find(out.begin(), out.end(), outcome) == out.end()) {
    out.push_back(std::move(outcome));
  }
}

// Interprets one table's chains for one packet. Evaluation forks wherever a
// random choice (numgen) is made; every fork is followed to its end and the
// ends are collected per hook.
class Evaluator {
 public:
  Evaluator(const Table& table, const TracePacket& packet, const TraceEnvironment& env)
      : table_(table), packet_(packet), env_(env) {}

  std::vector<HookOutcome> run_hook(Hook hook, const Branch& branch) {
    hook_ = hook;
    base_chains_.clear();
    for (const Chain& chain : table_.chains) {
      if (chain.base && chain.base->hook == hook) {
        base_chains_.push_back(&chain);
      }
    }
    std::stable_sort(base_chains_.begin(), base_chains_.end(),
                     [](const Chain* a, const Chain* b) { return a->base->priority < b->base->priority; });
    std::vector<HookOutcome> out;
    if (base_chains_.empty()) {
      out.push_back(HookOutcome{branch, Disposition::Accept, false});
    } else {
      run_base(0, branch, out);
    }
    return out;
  }

  bool is_local(const IPAddress& address) const {
    return std::find(env_.local_addresses.begin(), env_.local_addresses.end(), address) !=
           env_.local_addresses.end();
  }

  std::vector<std::string> take_visited() { return std::move(visited_); }
  // Whether an iifname match was reached with the input interface unknown.
  bool iif_unknown() const { return iif_unknown_; }

 private:
  // Base chains of one hook run in priority order. An accept (or the chain
  // policy) hands the packet to the next one; drop, reject and a nat
  // statement end the hook, as nf_nat skips the remaining nat chains once a
  // mapping is set up.
  void run_base(size_t index, const Branch& branch, std::vector<HookOutcome>& out) {
    const Chain* chain = base_chains_[index];
    record_visit(chain->name);
    Cursor cursor;
    cursor.branch = branch;
    cursor.chain = chain;
    cursor.trail.push_back(chain->name);
    std::vector<HookOutcome> ends;
    run(std::move(cursor), ends);
    for (HookOutcome& end : ends) {
      if (end.disposition == Disposition::Accept && !end.nat && index + 1 < base_chains_.size()) {
        run_base(index + 1, end.branch, out);
      } else {
        append_unique(out, std::move(end));
      }
    }
  }

  // Runs one branch to its end within the current base chain, forking where
  // a statement has several possible outcomes.
  void run(Cursor c, std::vector<HookOutcome>& out) {
    for (;;) {
      if (c.rule >= c.chain->rules.size()) {
        // Falling off a regular chain returns; off a base chain (or a chain
        // it went to) applies the policy, which svcproxy leaves at accept.
        if (!pop_caller(c)) {
          append_unique(out, HookOutcome{c.branch, Disposition::Accept, false});
          return;
        }
        continue;
      }
      const Rule& rule = c.chain->rules[c.rule];
      if (c.statement == 0 && !all_match(rule, c)) {
        next_rule(c);
        continue;
      }
      if (c.statement >= rule.statements.size()) {
        next_rule(c);
        continue;
      }
      if (!execute(rule.statements[c.statement], c, out)) {
        return;
      }
    }
  }

  // Executes one statement. Returns true when `c` should keep running
  // (already advanced to where it continues), false when the branch ended or
  // was handed to forks.
  bool execute(const ir::Statement& statement, Cursor& c, std::vector<HookOutcome>& out) {
    return std::visit(Overloaded{
                          [&](const ir::VmapStmt& s) { return exec_vmap(s, c, out); },
                          [&](const ir::NumgenVmapStmt& s) {
                            if (s.chains.empty()) {
                              fail(c, "numgen vmap with no chains");
                            }
                            std::vector<std::optional<Verdict>> choices;
                            for (const std::string& chain : s.chains) {
                              add_choice(choices, Verdict{VerdictKind::Goto, chain});
                            }
                            return fork(choices, c, out);
                          },
                          [&](const ir::DnatMapStmt& s) { return exec_dnat_map(s, c, out); },
                          [&](const ir::DnatStmt& s) {
                            require_dnat_hook(c);
                            end_with_dnat(c, EndpointAddress{s.address, s.port}, out);
                            return false;
                          },
                          [&](const ir::MarkStmt& s) {
                            c.branch.mark = s.xor_bits ? (c.branch.mark ^ s.bits) : (c.branch.mark | s.bits);
                            ++c.statement;
                            return true;
                          },
                          [&](const ir::SetUpdateStmt& s) {
                            // Dynamic sets are taken as empty (the packet is a new
                            // client's first), so updating one changes nothing here.
                            find_set(s.set, c);
                            ++c.statement;
                            return true;
                          },
                          [&](const ir::MasqueradeStmt&) {
                            if (hook_ != Hook::Postrouting) {
                              fail(c, "masquerade outside postrouting");
                            }
                            c.branch.masquerade = true;
                            append_unique(out, HookOutcome{c.branch, Disposition::Accept, true});
                            return false;
                          },
                          [&](const ir::RejectStmt&) {
                            append_unique(out, HookOutcome{c.branch, Disposition::Reject, false});
                            return false;
                          },
                          [&](const ir::CounterStmt&) {
                            // Counting changes nothing on the packet's path.
                            ++c.statement;
                            return true;
                          },
                          [&](const ir::CounterMapStmt& s) {
                            // A miss ends the rule, as the kernel's objref lookup does.
                            const Set& set = find_set(s.map, c);
                            if (!set.is_counter_map) fail(c, "counter lookup in @" + set.name + ", not a counter map");
                            if (lookup(set, build_key(s.key, 0, c), c)) {
                              ++c.statement;
                            } else {
                              next_rule(c);
                            }
                            return true;
                          },
                          [&](const Verdict& v) { return apply(v, c, out); },
                      },
                      statement);
  }

  bool exec_vmap(const ir::VmapStmt& s, Cursor& c, std::vector<HookOutcome>& out) {
    const Set& set = find_set(s.map, c);
    if (!set.is_verdict_map) {
      fail(c, "vmap lookup in @" + set.name + ", which is not a verdict map");
    }
    std::vector<std::optional<Verdict>> choices;  // nullopt: no element
    for (uint32_t slot : slots(s.key, s.numgen_modulus, c)) {
      const Element* element = lookup(set, build_key(s.key, slot, c), c);  // verdicts checked there
      add_choice(choices, element ? element->verdict.optional() : std::nullopt);
    }
    return fork(choices, c, out);
  }

  bool exec_dnat_map(const ir::DnatMapStmt& s, Cursor& c, std::vector<HookOutcome>& out) {
    require_dnat_hook(c);
    const Set& set = find_set(s.map, c);
    if (set.data != std::vector<KeyType>{KeyType::Addr, KeyType::Port}) {
      fail(c, "dnat map @" + set.name + " does not map to address . port");
    }
    std::vector<EndpointAddress> targets;
    bool missed = false;
    for (uint32_t slot : slots(s.key, s.numgen_modulus, c)) {
      const Element* element = lookup(set, build_key(s.key, slot, c), c);
      if (!element) {
        missed = true;
        continue;
      }
      const ir::Value data0 = element->data.size() == 2 ? element->data[0] : ir::Value{};
      const ir::Value data1 = element->data.size() == 2 ? element->data[1] : ir::Value{};
      const auto* ip = element->data.size() == 2 ? std::get_if<IPAddress>(&data0) : nullptr;
      const auto* port = element->data.size() == 2 ? std::get_if<uint16_t>(&data1) : nullptr;
      if (!ip || !port) {
        fail(c, "element of dnat map @" + set.name + " whose data is not address . port");
      }
      EndpointAddress target{*ip, *port};
      if (std::find(targets.begin(), targets.end(), target) == targets.end()) {
        targets.push_back(std::move(target));
      }
    }
    for (const EndpointAddress& target : targets) {
      Cursor branch = c;
      end_with_dnat(branch, target, out);
    }
    if (!missed) {
      return false;
    }
    // A failed map lookup ends the rule like a failed match.
    next_rule(c);
    return true;
  }

  // Continues `c` with each choice (a verdict, or nullopt: go on with the
  // next rule). One choice continues in place; several fork.
  bool fork(const std::vector<std::optional<Verdict>>& choices, Cursor& c, std::vector<HookOutcome>& out) {
    if (choices.size() == 1) {
      return continue_with(choices.front(), c, out);
    }
    for (const std::optional<Verdict>& choice : choices) {
      Cursor branch = c;
      if (continue_with(choice, branch, out)) {
        run(std::move(branch), out);
      }
    }
    return false;
  }

  bool continue_with(const std::optional<Verdict>& choice, Cursor& c, std::vector<HookOutcome>& out) {
    if (!choice) {
      next_rule(c);
      return true;
    }
    return apply(*choice, c, out);
  }

  static void add_choice(std::vector<std::optional<Verdict>>& choices, std::optional<Verdict> choice) {
    if (std::find(choices.begin(), choices.end(), choice) == choices.end()) {
      choices.push_back(std::move(choice));
    }
  }

  bool apply(const Verdict& verdict, Cursor& c, std::vector<HookOutcome>& out) {
    switch (verdict.kind) {
      case VerdictKind::Accept:
        append_unique(out, HookOutcome{c.branch, Disposition::Accept, false});
        return false;
      case VerdictKind::Drop:
        append_unique(out, HookOutcome{c.branch, Disposition::Drop, false});
        return false;
      case VerdictKind::Return:
        if (!pop_caller(c)) {
          append_unique(out, HookOutcome{c.branch, Disposition::Accept, false});
          return false;
        }
        return true;
      case VerdictKind::Jump:
        if (c.callers.size() >= kMaxJumpDepth) {
          fail(c, "jump to " + verdict.chain + " exceeds the kernel's jump stack of " +
                      std::to_string(kMaxJumpDepth) + "; path: " + trail(c));
        }
        c.callers.push_back(Frame{c.chain, c.rule + 1});
        enter(verdict.chain, c);
        return true;
      case VerdictKind::Goto:
        enter(verdict.chain, c);
        return true;
    }
    fail(c, "unknown verdict");
  }

  void enter(const std::string& name, Cursor& c) {
    const Chain* target = table_.find_chain(name);
    if (!target) {
      fail(c, "jump/goto to missing chain " + name);
    }
    if (target->base) {
      fail(c, "jump/goto to base chain " + name);
    }
    c.trail.push_back(target->name);
    if (c.trail.size() > kMaxChainHops) {
      fail(c, "more than " + std::to_string(kMaxChainHops) + " chains entered (loop?); path: " + trail(c));
    }
    record_visit(target->name);
    c.chain = target;
    c.rule = 0;
    c.statement = 0;
  }

  static bool pop_caller(Cursor& c) {
    if (c.callers.empty()) {
      return false;
    }
    c.chain = c.callers.back().chain;
    c.rule = c.callers.back().rule;
    c.statement = 0;
    c.callers.pop_back();
    return true;
  }

  static void next_rule(Cursor& c) {
    ++c.rule;
    c.statement = 0;
  }

  void end_with_dnat(Cursor& c, EndpointAddress target, std::vector<HookOutcome>& out) {
    if (target.ip.family != table_.family) {
      fail(c, "dnat to " + target.str() + " in a table of family " +
                  std::string(ir::family_keyword(table_.family)));
    }
    c.branch.dnat = std::move(target);
    append_unique(out, HookOutcome{c.branch, Disposition::Accept, true});
  }

  void require_dnat_hook(const Cursor& c) const {
    if (hook_ == Hook::Postrouting) {
      fail(c, "dnat in postrouting");
    }
  }

  // ---- matches -------------------------------------------------------------

  bool all_match(const Rule& rule, const Cursor& c) const {
    return std::all_of(rule.matches.begin(), rule.matches.end(),
                       [&](const ir::Match& match) { return holds(match, c); });
  }

  bool holds(const ir::Match& match, const Cursor& c) const {
    const PacketView packet = view(c.branch);
    return std::visit(
        Overloaded{
            [&](const ir::AddrMatch& m) {
              const IPAddress& address = address_field(m.field, packet, c);
              if (m.cidr.has_value() == !m.set.empty()) {
                fail(c, "address match needs exactly one of a prefix or a set");
              }
              bool found = false;
              if (m.cidr) {
                found = m.cidr->family() == address.family && m.cidr->contains(address);
              } else {
                const Set& set = find_set(m.set, c);
                found = lookup(set, {address}, c) != nullptr;
              }
              return found != m.negate;
            },
            [&](const ir::SetMatch& m) {
              const Set& set = find_set(m.set, c);
              if (std::find(m.key.begin(), m.key.end(), KeyField::Numgen) != m.key.end()) {
                fail(c, "set match @" + set.name + " keyed on numgen");
              }
              return lookup(set, build_key(m.key, 0, c), c) != nullptr;
            },
            [&](const ir::FibLocalMatch& m) { return is_local(address_field(m.field, packet, c)); },
            [&](const ir::MarkMatch& m) { return ((c.branch.mark & m.bits) == 0) == m.is_zero; },
            // Only postrouting can see it set: dnat ends the hook it runs in.
            [&](const ir::CtDnatMatch&) { return c.branch.dnat.has_value(); },
            [&](const ir::ProtoMatch& m) { return packet.protocol == m.protocol; },
            [&](const ir::IifnameMatch& m) {
              // Locally generated packets have no input device: the kernel
              // compares "".
              const std::optional<std::string> iif =
                  packet_.locally_generated ? std::optional<std::string>("") : packet_.iif;
              if (!iif) {
                iif_unknown_ = true;
                return false;
              }
              const bool found = m.prefix ? iif->starts_with(m.name) : *iif == m.name;
              return found != m.negate;
            },
        },
        match);
  }

  PacketView view(const Branch& branch) const {
    PacketView packet{packet_.src, packet_.dst, packet_.protocol, packet_.dport};
    if (branch.dnat) {
      packet.dst = branch.dnat->ip;
      packet.dport = branch.dnat->port;
    }
    return packet;
  }

  const IPAddress& address_field(KeyField field, const PacketView& packet, const Cursor& c) const {
    switch (field) {
      case KeyField::SrcAddr:
        return packet.src;
      case KeyField::DstAddr:
        return packet.dst;
      default:
        fail(c, "address match on a field that is not an address");
    }
  }

  // ---- sets ------------------------------------------------------------------

  const Set& find_set(const std::string& name, const Cursor& c) const {
    const Set* set = table_.find_set(name);
    if (!set) {
      fail(c, "reference to missing set @" + name);
    }
    return *set;
  }

  // The slots a key is evaluated for: every numgen value when the key has a
  // numgen component, else a single pass.
  std::vector<uint32_t> slots(const std::vector<KeyField>& key, uint32_t modulus, const Cursor& c) const {
    if (std::find(key.begin(), key.end(), KeyField::Numgen) == key.end()) {
      return {0};
    }
    if (modulus == 0) {
      fail(c, "numgen key without a modulus");
    }
    std::vector<uint32_t> all(modulus);
    for (uint32_t i = 0; i < modulus; ++i) {
      all[i] = i;
    }
    return all;
  }

  std::vector<Value> build_key(const std::vector<KeyField>& fields, uint32_t slot, const Cursor& c) const {
    const PacketView packet = view(c.branch);
    std::vector<Value> key;
    key.reserve(fields.size());
    for (KeyField field : fields) {
      switch (field) {
        case KeyField::SrcAddr:
          key.emplace_back(packet.src);
          break;
        case KeyField::DstAddr:
          key.emplace_back(packet.dst);
          break;
        case KeyField::L4Proto:
          key.emplace_back(packet.protocol);
          break;
        case KeyField::DstPort:
          key.emplace_back(packet.dport);
          break;
        case KeyField::Numgen:
          key.emplace_back(slot);
          break;
      }
    }
    return key;
  }

  // The element whose key matches; nullptr when none does. Dynamic sets
  // count as empty. Exact-match sets are searched through a sorted index
  // (maps hold 100k+ elements and numgen makes one lookup per slot);
  // interval sets are small and scanned for the first containing element.
  const Element* lookup(const Set& set, const std::vector<Value>& key, const Cursor& c) const {
    if (key.size() != set.key.size()) {
      fail(c, "lookup in @" + set.name + " with a key of " + std::to_string(key.size()) +
                  " components; the set has " + std::to_string(set.key.size()));
    }
    for (size_t i = 0; i < key.size(); ++i) {
      if (!value_has_type(key[i], set.key[i], false)) {
        fail(c, "lookup in @" + set.name + ": key component " + std::to_string(i) + " (" + describe(key[i]) +
                    ") is not " + std::string(key_type_name(set.key[i], table_.family)));
      }
    }
    const std::vector<const Element*>& index = prepare(set, c);
    if (set.dynamic) {
      return nullptr;
    }
    if (!set.interval) {
      const auto it = std::lower_bound(
          index.begin(), index.end(), key,
          [](const Element* element, const auto& k) { return compare_keys(element->key, k) < 0; });
      return it != index.end() && compare_keys((*it)->key, key) == 0 ? *it : nullptr;
    }
    for (const Element& element : set.elements) {
      bool match = true;
      for (size_t i = 0; i < key.size() && match; ++i) {
        match = component_matches(key[i], element.key[i]);
      }
      if (match) {
        return &element;
      }
    }
    return nullptr;
  }

  static std::strong_ordering compare_keys(const ir::ValueList& a, const ir::ValueList& b) { return a <=> b; }
  template <typename A, typename B>
  static std::strong_ordering compare_keys(const A& a, const B& b) {
    return std::lexicographical_compare_three_way(a.begin(), a.end(), b.begin(), b.end());
  }

  // Checks every element of a set once against its declaration, as the
  // kernel would refuse a ruleset that mixes types up, and returns the
  // sorted index of an exact-match set (empty for interval sets).
  const std::vector<const Element*>& prepare(const Set& set, const Cursor& c) const {
    const auto cached = prepared_.find(&set);
    if (cached != prepared_.end()) {
      return cached->second;
    }
    for (size_t n = 0; n < set.elements.size(); ++n) {
      const Element& element = set.elements[n];
      const std::string which = "element " + std::to_string(n) + " of @" + set.name;
      if (element.key.size() != set.key.size()) {
        fail(c, which + " has " + std::to_string(element.key.size()) + " key components; the set has " +
                    std::to_string(set.key.size()));
      }
      for (size_t i = 0; i < element.key.size(); ++i) {
        if (!value_has_type(element.key[i], set.key[i], set.interval)) {
          fail(c, which + ": key component " + describe(element.key[i]) + " is not " +
                      std::string(key_type_name(set.key[i], table_.family)) +
                      (set.interval ? "" : " (prefixes need an interval set)"));
        }
      }
      if (set.is_verdict_map && !element.verdict) {
        fail(c, which + " has no verdict");
      }
      if (!set.data.empty()) {
        if (element.data.size() != set.data.size()) {
          fail(c, which + " has " + std::to_string(element.data.size()) + " data components; the map has " +
                      std::to_string(set.data.size()));
        }
        for (size_t i = 0; i < element.data.size(); ++i) {
          if (!value_has_type(element.data[i], set.data[i], false)) {
            fail(c, which + ": data component " + describe(element.data[i]) + " is not " +
                        std::string(key_type_name(set.data[i], table_.family)));
          }
        }
      }
    }
    std::vector<const Element*> index;
    if (!set.interval) {
      index.reserve(set.elements.size());
      for (const Element& element : set.elements) {
        index.push_back(&element);
      }
      // Stable: of two equal keys (which nft would refuse) the first wins.
      std::stable_sort(index.begin(), index.end(),
                       [](const Element* a, const Element* b) { return compare_keys(a->key, b->key) < 0; });
    }
    return prepared_.emplace(&set, std::move(index)).first->second;
  }

  bool value_has_type(const Value& value, KeyType type, bool interval) const {
    switch (type) {
      case KeyType::Addr:
        if (const auto* ip = std::get_if<IPAddress>(&value)) {
          return ip->family == table_.family;
        }
        if (const auto* cidr = std::get_if<model::CIDR>(&value)) {
          return interval && cidr->family() == table_.family;
        }
        return false;
      case KeyType::Proto:
        return std::holds_alternative<model::Protocol>(value);
      case KeyType::Port:
        return std::holds_alternative<uint16_t>(value);
      case KeyType::Slot:
        return std::holds_alternative<uint32_t>(value);
    }
    return false;
  }

  static bool component_matches(const Value& packet, const Value& element) {
    if (const auto* cidr = std::get_if<model::CIDR>(&element)) {
      const auto* ip = std::get_if<IPAddress>(&packet);
      return ip && cidr->family() == ip->family && cidr->contains(*ip);
    }
    return packet == element;
  }

  // ---- bookkeeping -------------------------------------------------------------

  void record_visit(const std::string& chain) {
    if (seen_.insert(chain).second) {
      visited_.push_back(chain);
    }
  }

  static std::string trail(const Cursor& c) {
    std::string path;
    const size_t shown = 24;
    const size_t first = c.trail.size() > shown ? c.trail.size() - shown : 0;
    if (first > 0) {
      path = "... -> ";
    }
    for (size_t i = first; i < c.trail.size(); ++i) {
      path += c.trail[i];
      if (i + 1 < c.trail.size()) {
        path += " -> ";
      }
    }
    return path;
  }

  [[noreturn]] void fail(const Cursor& c, const std::string& what) const {
    std::string where = "trace: table " + std::string(ir::family_keyword(table_.family)) + " " + table_.name +
                        ", hook " + std::string(hook_name(hook_));
    if (c.chain) {
      where += ", chain " + c.chain->name + ", rule " + std::to_string(c.rule);
      if (c.rule < c.chain->rules.size() && !c.chain->rules[c.rule].comment.empty()) {
        where += " (" + c.chain->rules[c.rule].comment + ")";
      }
    }
    throw std::runtime_error(where + ": " + what);
  }

  const Table& table_;
  const TracePacket& packet_;
  const TraceEnvironment& env_;
  Hook hook_ = Hook::Prerouting;
  std::vector<const Chain*> base_chains_;
  std::vector<std::string> visited_;
  std::unordered_set<std::string> seen_;
  // Sets already checked, with their lookup index. A cache: lookups are
  // logically const.
  mutable std::unordered_map<const Set*, std::vector<const Element*>> prepared_;
  mutable bool iif_unknown_ = false;
};

// One complete fate of the packet, after both NAT hooks.
struct Fate {
  Disposition disposition = Disposition::Accept;
  std::optional<EndpointAddress> dnat;
  bool masquerade = false;
};

void sort_unique(std::vector<EndpointAddress>& endpoints) {
  std::sort(endpoints.begin(), endpoints.end());
  endpoints.erase(std::unique(endpoints.begin(), endpoints.end()), endpoints.end());
}

using base::append_json_string;

template <typename T, typename ToString>
void append_json_array(std::string& out, const std::vector<T>& items, ToString to_string) {
  out += '[';
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) {
      out += ", ";
    }
    append_json_string(out, to_string(items[i]));
  }
  out += ']';
}

std::string join(const std::vector<EndpointAddress>& endpoints, std::string_view separator) {
  std::string text;
  for (size_t i = 0; i < endpoints.size(); ++i) {
    if (i > 0) {
      text += separator;
    }
    text += endpoints[i].str();
  }
  return text;
}

}  // namespace

std::string_view to_string(TraceVerdict verdict) {
  switch (verdict) {
    case TraceVerdict::DNAT:
      return "DNAT";
    case TraceVerdict::DROP:
      return "DROP";
    case TraceVerdict::REJECT:
      return "REJECT";
    case TraceVerdict::ACCEPT:
      return "ACCEPT";
  }
  return "ACCEPT";
}

TraceResult trace(const ir::Ruleset& ruleset, const TracePacket& packet, const TraceEnvironment& env) {
  if (packet.src.family != packet.dst.family) {
    throw std::runtime_error("trace: source " + packet.src.str() + " and destination " + packet.dst.str() +
                             " are of different families");
  }
  TraceResult result;
  const Table* table = ruleset.find_table(packet.dst.family);
  if (!table) {
    return result;  // nothing of ours sees this family: the packet passes untouched
  }

  Evaluator evaluator(*table, packet, env);
  std::vector<Fate> fates;
  const Hook first_hook = packet.locally_generated ? Hook::Output : Hook::Prerouting;
  for (const HookOutcome& first : evaluator.run_hook(first_hook, Branch{})) {
    if (first.disposition != Disposition::Accept) {
      fates.push_back(Fate{first.disposition, first.branch.dnat, false});
      continue;
    }
    // An arriving packet whose (translated) destination is local is
    // delivered through input and never reaches postrouting; everything
    // locally generated and everything forwarded does.
    const IPAddress& destination = first.branch.dnat ? first.branch.dnat->ip : packet.dst;
    if (!packet.locally_generated && evaluator.is_local(destination)) {
      fates.push_back(Fate{Disposition::Accept, first.branch.dnat, false});
      continue;
    }
    for (const HookOutcome& second : evaluator.run_hook(Hook::Postrouting, first.branch)) {
      fates.push_back(Fate{second.disposition, second.branch.dnat, second.branch.masquerade});
    }
  }
  result.chains = evaluator.take_visited();
  if (evaluator.iif_unknown()) {
    result.notes.push_back(
        "iifname matches were taken as not matching: the packet's input interface is unknown "
        "(--detect-local-mode BridgeInterface/InterfaceNamePrefix needs it)");
  }

  // Branches normally agree on the verdict (every endpoint chain of a
  // service ends in dnat). When they do not, a DNAT anywhere wins, then a
  // plain accept, then reject over drop: the report names every place the
  // packet can reach before the ways it can be stopped.
  const auto accepted = [](const Fate& fate) { return fate.disposition == Disposition::Accept; };
  const bool any_dnat =
      std::any_of(fates.begin(), fates.end(), [&](const Fate& fate) { return accepted(fate) && fate.dnat; });
  if (any_dnat) {
    result.verdict = TraceVerdict::DNAT;
    for (const Fate& fate : fates) {
      if (accepted(fate) && fate.dnat) {
        result.endpoints.push_back(*fate.dnat);
        if (fate.masquerade) {
          result.masquerade_endpoints.push_back(*fate.dnat);
        }
      }
    }
    sort_unique(result.endpoints);
    sort_unique(result.masquerade_endpoints);
    result.masquerade = !result.masquerade_endpoints.empty();
  } else if (std::any_of(fates.begin(), fates.end(), accepted)) {
    result.verdict = TraceVerdict::ACCEPT;
    result.masquerade = std::any_of(fates.begin(), fates.end(),
                                    [&](const Fate& fate) { return accepted(fate) && fate.masquerade; });
  } else {
    const bool any_reject = std::any_of(
        fates.begin(), fates.end(), [](const Fate& fate) { return fate.disposition == Disposition::Reject; });
    result.verdict = any_reject ? TraceVerdict::REJECT : TraceVerdict::DROP;
  }
  return result;
}

std::string TraceResult::to_json() const {
  std::string out = "{\"verdict\": ";
  append_json_string(out, to_string(verdict));
  out += ", \"endpoints\": ";
  append_json_array(out, endpoints, [](const EndpointAddress& e) { return e.str(); });
  out += ", \"masquerade\": ";
  out += masquerade ? "true" : "false";
  out += ", \"masquerade_endpoints\": ";
  append_json_array(out, masquerade_endpoints, [](const EndpointAddress& e) { return e.str(); });
  out += ", \"chains\": ";
  append_json_array(out, chains, [](const std::string& chain) { return chain; });
  if (!notes.empty()) {
    out += ", \"notes\": ";
    append_json_array(out, notes, [](const std::string& note) { return note; });
  }
  out += '}';
  return out;
}

std::string TraceResult::to_text() const {
  std::string text = "verdict: " + std::string(to_string(verdict));
  switch (verdict) {
    case TraceVerdict::DNAT:
      text += endpoints.size() == 1
                  ? " to " + endpoints.front().str()
                  : " to one of " + std::to_string(endpoints.size()) + " endpoints: " + join(endpoints, ", ");
      break;
    case TraceVerdict::DROP:
      text += " (the packet is silently dropped)";
      break;
    case TraceVerdict::REJECT:
      text += " (the client gets ICMP port unreachable; TCP sees connection refused)";
      break;
    case TraceVerdict::ACCEPT:
      text += " (no rule translated the destination; the packet passes unchanged)";
      break;
  }
  text += "\nmasquerade: ";
  if (!masquerade) {
    text += "no";
  } else if (verdict != TraceVerdict::DNAT) {
    text += "yes";
  } else if (masquerade_endpoints.size() == endpoints.size()) {
    text += "yes";
  } else {
    text += "for " + std::to_string(masquerade_endpoints.size()) + " of " + std::to_string(endpoints.size()) +
            " endpoints: " + join(masquerade_endpoints, ", ");
  }
  // First-visit order across all branches, so not one path when numgen forks.
  text += "\nchains visited:";
  if (chains.empty()) {
    text += " (none)";
  }
  for (size_t i = 0; i < chains.size(); ++i) {
    text += i == 0 ? " " : ", ";
    text += chains[i];
  }
  text += '\n';
  for (const std::string& note : notes) text += "note: " + note + '\n';
  return text;
}

}  // namespace svcproxy::dataplane
