#include <charconv>
#include <cstdio>

#include "dataplane/render.h"

namespace svcproxy::dataplane {
namespace {

using ir::KeyField;
using ir::KeyType;
using model::IPFamily;

std::string_view proto_keyword(model::Protocol p) { return model::to_lower(p); }

void append_number(std::string& out, uint32_t v) {
  char buf[16];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, static_cast<size_t>(end - buf));
}

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

void append_field(std::string& out, KeyField field, IPFamily family, uint32_t modulus) {
  const std::string_view fam = ir::family_keyword(family);
  switch (field) {
    case KeyField::SrcAddr: out.append(fam).append(" saddr"); break;
    case KeyField::DstAddr: out.append(fam).append(" daddr"); break;
    case KeyField::L4Proto: out.append("meta l4proto"); break;
    case KeyField::DstPort: out.append("th dport"); break;
    case KeyField::Numgen: out.append("numgen random mod ").append(std::to_string(modulus)); break;
  }
}

void append_key(std::string& out, const std::vector<KeyField>& key, IPFamily family, uint32_t modulus) {
  for (size_t i = 0; i < key.size(); ++i) {
    if (i) out.append(" . ");
    append_field(out, key[i], family, modulus);
  }
}

void append_verdict(std::string& out, const ir::Verdict& v) {
  switch (v.kind) {
    case ir::VerdictKind::Accept: out.append("accept"); break;
    case ir::VerdictKind::Drop: out.append("drop"); break;
    case ir::VerdictKind::Return: out.append("return"); break;
    case ir::VerdictKind::Jump: out.append("jump ").append(v.chain); break;
    case ir::VerdictKind::Goto: out.append("goto ").append(v.chain); break;
  }
}

void append_value(std::string& out, const ir::Value& value) {
  std::visit(
      [&](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, model::IPAddress>) {
          v.append_to(out);
        } else if constexpr (std::is_same_v<T, model::CIDR>) {
          v.address.append_to(out);
          out.push_back('/');
          append_number(out, v.prefix);
        } else if constexpr (std::is_same_v<T, model::Protocol>) {
          out.append(proto_keyword(v));
        } else {
          append_number(out, v);
        }
      },
      value);
}

template <typename Values>
void append_values(std::string& out, const Values& values) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out.append(" . ");
    append_value(out, values[i]);
  }
}

void append_match(std::string& out, const ir::Match& match, IPFamily family) {
  std::visit(
      [&](const auto& m) {
        using T = std::decay_t<decltype(m)>;
        if constexpr (std::is_same_v<T, ir::AddrMatch>) {
          append_field(out, m.field, family, 0);
          out.append(m.negate ? " != " : " ");
          if (m.cidr) {
            out.append(m.cidr->str());
          } else {
            out.append("@").append(m.set);
          }
        } else if constexpr (std::is_same_v<T, ir::SetMatch>) {
          append_key(out, m.key, family, 0);
          out.append(" @").append(m.set);
        } else if constexpr (std::is_same_v<T, ir::FibLocalMatch>) {
          out.append(m.field == KeyField::SrcAddr ? "fib saddr type local" : "fib daddr type local");
        } else if constexpr (std::is_same_v<T, ir::MarkMatch>) {
          out.append("meta mark & ").append(hex32(m.bits)).append(m.is_zero ? " == " : " != ").append(hex32(0));
        } else if constexpr (std::is_same_v<T, ir::CtDnatMatch>) {
          out.append("ct status dnat");
        } else if constexpr (std::is_same_v<T, ir::ProtoMatch>) {
          out.append("meta l4proto ").append(proto_keyword(m.protocol));
        } else if constexpr (std::is_same_v<T, ir::IifnameMatch>) {
          // As nft 1.0.6 lists it back: no "meta", the name quoted.
          out.append(m.negate ? "iifname != \"" : "iifname \"").append(m.name);
          out.append(m.prefix ? "*\"" : "\"");
        }
      },
      match);
}

void append_statement(std::string& out, const ir::Statement& statement, IPFamily family) {
  const std::string_view fam = ir::family_keyword(family);
  std::visit(
      [&](const auto& s) {
        using T = std::decay_t<decltype(s)>;
        if constexpr (std::is_same_v<T, ir::VmapStmt>) {
          append_key(out, s.key, family, s.numgen_modulus);
          out.append(" vmap @").append(s.map);
        } else if constexpr (std::is_same_v<T, ir::NumgenVmapStmt>) {
          out.append("numgen random mod ").append(std::to_string(s.chains.size())).append(" vmap { ");
          for (size_t i = 0; i < s.chains.size(); ++i) {
            if (i) out.append(", ");
            out.append(std::to_string(i)).append(" : goto ").append(s.chains[i]);
          }
          out.append(" }");
        } else if constexpr (std::is_same_v<T, ir::DnatMapStmt>) {
          out.append("dnat ").append(fam).append(" to ");
          append_key(out, s.key, family, s.numgen_modulus);
          out.append(" map @").append(s.map);
        } else if constexpr (std::is_same_v<T, ir::DnatStmt>) {
          out.append("dnat ").append(fam).append(" to ").append(model::format_endpoint(s.address, s.port));
        } else if constexpr (std::is_same_v<T, ir::MarkStmt>) {
          out.append("meta mark set meta mark ").append(s.xor_bits ? "^ " : "| ").append(hex32(s.bits));
        } else if constexpr (std::is_same_v<T, ir::SetUpdateStmt>) {
          out.append("update @").append(s.set).append(" { ").append(fam).append(" saddr }");
        } else if constexpr (std::is_same_v<T, ir::MasqueradeStmt>) {
          out.append("masquerade fully-random");
        } else if constexpr (std::is_same_v<T, ir::RejectStmt>) {
          out.append(s.tcp_reset ? "reject with tcp reset" : "reject");
        } else if constexpr (std::is_same_v<T, ir::CounterStmt>) {
          out.append("counter name \"").append(s.name).append("\"");
        } else if constexpr (std::is_same_v<T, ir::CounterMapStmt>) {
          out.append("counter name ");
          append_key(out, s.key, family, 0);
          out.append(" map @").append(s.map);
        } else if constexpr (std::is_same_v<T, ir::Verdict>) {
          append_verdict(out, s);
        }
      },
      statement);
}

void append_rule(std::string& out, const ir::Rule& rule, IPFamily family) {
  bool first = true;
  for (const auto& m : rule.matches) {
    if (!first) out.push_back(' ');
    append_match(out, m, family);
    first = false;
  }
  for (const auto& s : rule.statements) {
    if (!first) out.push_back(' ');
    append_statement(out, s, family);
    first = false;
  }
}

// `typeof` expression for a key or data component; needed for numgen slots,
// which have no named nft type.
std::string_view typeof_expr(KeyType t, IPFamily family) {
  switch (t) {
    case KeyType::Addr: return family == IPFamily::V4 ? "ip daddr" : "ip6 daddr";
    case KeyType::Proto: return "meta l4proto";
    case KeyType::Port: return "th dport";
    case KeyType::Slot: return "numgen random mod 1";
  }
  return "";
}

std::string_view type_name(KeyType t, IPFamily family) {
  switch (t) {
    case KeyType::Addr: return family == IPFamily::V4 ? "ipv4_addr" : "ipv6_addr";
    case KeyType::Proto: return "inet_proto";
    case KeyType::Port: return "inet_service";
    case KeyType::Slot: return "mark";
  }
  return "";
}

void append_types(std::string& out, const std::vector<KeyType>& types, IPFamily family, bool use_typeof) {
  for (size_t i = 0; i < types.size(); ++i) {
    if (i) out.append(" . ");
    out.append(use_typeof ? typeof_expr(types[i], family) : type_name(types[i], family));
  }
}

void append_set(std::string& out, const ir::Set& set, IPFamily family) {
  out.append(set.is_map() ? "\tmap " : "\tset ").append(set.name).append(" {\n\t\t");
  bool use_typeof = false;
  for (auto t : set.key) use_typeof = use_typeof || t == KeyType::Slot;
  out.append(use_typeof ? "typeof " : "type ");
  append_types(out, set.key, family, use_typeof);
  if (set.is_verdict_map) {
    out.append(" : verdict");
  } else if (set.is_counter_map) {
    out.append(" : counter");
  } else if (!set.data.empty()) {
    out.append(" : ");
    append_types(out, set.data, family, use_typeof);
  }
  out.append("\n");
  if (set.interval || set.dynamic || set.timeout_seconds) {
    out.append("\t\tflags ");
    bool first = true;
    auto flag = [&](bool on, const char* name) {
      if (!on) return;
      if (!first) out.push_back(',');
      out.append(name);
      first = false;
    };
    flag(set.interval, "interval");
    flag(set.dynamic, "dynamic");
    flag(set.timeout_seconds != 0, "timeout");
    out.append("\n");
  }
  if (set.timeout_seconds) out.append("\t\ttimeout ").append(std::to_string(set.timeout_seconds)).append("s\n");
  if (!set.elements.empty()) {
    out.append("\t\telements = {");
    for (size_t i = 0; i < set.elements.size(); ++i) {
      const auto& e = set.elements[i];
      out.append(i ? ",\n\t\t\t     " : " ");
      append_values(out, e.key);
      if (e.verdict) {
        out.append(" : ");
        append_verdict(out, *e.verdict);
      } else if (e.object) {
        out.append(" : \"").append(*e.object).append("\"");
      } else if (!e.data.empty()) {
        out.append(" : ");
        append_values(out, e.data);
      }
    }
    out.append(" }\n");
  }
  out.append("\t}\n\n");
}

const char* hook_name(ir::Hook hook) {
  switch (hook) {
    case ir::Hook::Prerouting: return "prerouting";
    case ir::Hook::Output: return "output";
    case ir::Hook::Postrouting: return "postrouting";
    case ir::Hook::Input:
      return "input";
  }
  return "";
}

// nft prints the standard priorities by name where the hook allows them;
// printing them the same way keeps `rules` and `nft list table` identical.
std::string priority_text(const ir::BaseChainSpec& base) {
  if (base.hook == ir::Hook::Prerouting && base.priority == -100) return "dstnat";
  if (base.hook == ir::Hook::Postrouting && base.priority == 100) return "srcnat";
  return std::to_string(base.priority);
}

void append_table(std::string& out, const ir::Table& table) {
  const IPFamily family = table.family;
  out.append("table ").append(ir::family_keyword(family)).append(" ").append(table.name).append(" {\n");
  out.append("\tcomment \"managed by svcproxy; edits are reverted\"\n");
  // As nft lists them: named objects before sets, with the values a new
  // counter has (what they counted since is kernel state, not IR).
  for (const auto& counter : table.counters)
    out.append("\tcounter ").append(counter.name).append(" {\n\t\tpackets 0 bytes 0\n\t}\n\n");
  for (const auto& set : table.sets) append_set(out, set, family);
  for (size_t i = 0; i < table.chains.size(); ++i) {
    const auto& chain = table.chains[i];
    out.append("\tchain ").append(chain.name).append(" {\n");
    if (chain.base) {
      out.append("\t\ttype nat hook ")
          .append(hook_name(chain.base->hook))
          .append(" priority ")
          .append(priority_text(*chain.base))
          .append("; policy accept;\n");
    }
    for (const auto& rule : chain.rules) {
      out.append("\t\t");
      append_rule(out, rule, family);
      out.append("\n");
    }
    out.append(i + 1 < table.chains.size() ? "\t}\n\n" : "\t}\n");
  }
  out.append("}\n");
}

}  // namespace

std::string render_rule(const ir::Rule& rule, IPFamily family) {
  std::string out;
  append_rule(out, rule, family);
  return out;
}

std::string render_value(const ir::Value& value) {
  std::string out;
  append_value(out, value);
  return out;
}

std::string render_nft_table(const ir::Table& table) {
  std::string out;
  append_table(out, table);
  return out;
}

std::string render_nft(const ir::Ruleset& ruleset, const NftRenderOptions& options) {
  std::string out;
  size_t estimate = 0;
  for (const auto& t : ruleset.tables) {
    for (const auto& s : t.sets) estimate += 64 + s.elements.size() * 64;
    estimate += t.counters.size() * 96;
    estimate += t.chains.size() * 160;
  }
  out.reserve(estimate);
  if (options.replace) {
    for (const auto& t : ruleset.tables) {
      const std::string id = std::string(ir::family_keyword(t.family)) + " " + t.name;
      out.append("table ").append(id).append("\ndelete table ").append(id).append("\n");
    }
  }
  for (const auto& t : ruleset.tables) append_table(out, t);
  return out;
}

}  // namespace svcproxy::dataplane
