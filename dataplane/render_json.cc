// JSON dump of the IR for tools: the same objects `rules` prints as nft
// text, with rules rendered as nft statements (the IR's structure is the
// text's structure, so a second encoding of every expression would only add
// a format to keep in step).
#include "base/json.h"
#include "dataplane/render.h"

namespace svcproxy::dataplane {
namespace {

using base::append_json_string;

template <typename Values>
void append_values(std::string& out, const Values& values) {
  out.push_back('[');
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out.push_back(',');
    append_json_string(out, render_value(values[i]));
  }
  out.push_back(']');
}

const char* key_type_name(ir::KeyType t) {
  switch (t) {
    case ir::KeyType::Addr: return "addr";
    case ir::KeyType::Proto: return "proto";
    case ir::KeyType::Port: return "port";
    case ir::KeyType::Slot: return "slot";
  }
  return "";
}

void append_types(std::string& out, const std::vector<ir::KeyType>& types) {
  out.push_back('[');
  for (size_t i = 0; i < types.size(); ++i) {
    if (i) out.push_back(',');
    append_json_string(out, key_type_name(types[i]));
  }
  out.push_back(']');
}

std::string verdict_text(const ir::Verdict& v) {
  ir::Rule r;
  r.statements.push_back(v);
  return render_rule(r, model::IPFamily::V4);
}

}  // namespace

std::string render_json(const ir::Ruleset& ruleset) {
  std::string out = "{\"tables\":[";
  for (size_t t = 0; t < ruleset.tables.size(); ++t) {
    const auto& table = ruleset.tables[t];
    if (t) out.push_back(',');
    out.append("{\"family\":");
    append_json_string(out, ir::family_keyword(table.family));
    out.append(",\"name\":");
    append_json_string(out, table.name);
    out.append(",\"counters\":[");
    for (size_t c = 0; c < table.counters.size(); ++c) {
      if (c) out.push_back(',');
      append_json_string(out, table.counters[c].name);
    }
    out.append("],\"sets\":[");
    for (size_t s = 0; s < table.sets.size(); ++s) {
      const auto& set = table.sets[s];
      if (s) out.push_back(',');
      out.append("{\"name\":");
      append_json_string(out, set.name);
      out.append(",\"map\":").append(set.is_map() ? "true" : "false");
      out.append(",\"key\":");
      append_types(out, set.key);
      if (set.is_verdict_map) out.append(",\"data\":\"verdict\"");
      if (set.is_counter_map) out.append(",\"data\":\"counter\"");
      if (!set.data.empty()) {
        out.append(",\"data\":");
        append_types(out, set.data);
      }
      out.append(",\"interval\":").append(set.interval ? "true" : "false");
      out.append(",\"dynamic\":").append(set.dynamic ? "true" : "false");
      out.append(",\"timeout\":").append(std::to_string(set.timeout_seconds));
      out.append(",\"elements\":[");
      for (size_t e = 0; e < set.elements.size(); ++e) {
        const auto& el = set.elements[e];
        if (e) out.push_back(',');
        out.append("{\"key\":");
        append_values(out, el.key);
        if (el.verdict) {
          out.append(",\"verdict\":");
          append_json_string(out, verdict_text(*el.verdict));
        } else if (el.object) {
          out.append(",\"counter\":");
          append_json_string(out, *el.object);
        } else if (!el.data.empty()) {
          out.append(",\"data\":");
          append_values(out, el.data);
        }
        out.push_back('}');
      }
      out.append("]}");
    }
    out.append("],\"chains\":[");
    for (size_t c = 0; c < table.chains.size(); ++c) {
      const auto& chain = table.chains[c];
      if (c) out.push_back(',');
      out.append("{\"name\":");
      append_json_string(out, chain.name);
      if (chain.base) {
        const char* hook = chain.base->hook == ir::Hook::Prerouting ? "prerouting"
                           : chain.base->hook == ir::Hook::Output   ? "output"
                           : chain.base->hook == ir::Hook::Input    ? "input"
                                                                    : "postrouting";
        out.append(",\"type\":\"nat\",\"hook\":\"").append(hook).append("\",\"priority\":");
        out.append(std::to_string(chain.base->priority));
      }
      out.append(",\"rules\":[");
      for (size_t r = 0; r < chain.rules.size(); ++r) {
        if (r) out.push_back(',');
        append_json_string(out, render_rule(chain.rules[r], table.family));
      }
      out.append("]}");
    }
    out.append("]}");
  }
  out.append("]}\n");
  return out;
}

}  // namespace svcproxy::dataplane
