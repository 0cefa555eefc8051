// Renderers of the IR: nft script text (what `svcproxy rules` prints and
// `nft -f` loads) and a JSON dump of the IR (`svcproxy rules --format json`).
#pragma once

#include <string>

#include "dataplane/ir.h"

namespace svcproxy::dataplane {

struct NftRenderOptions {
  // Prefix each table with "table X; delete table X;" so that one `nft -f`
  // transaction replaces an older svcproxy table atomically (and creating
  // it first makes the delete succeed when there was none).
  bool replace = true;
};

std::string render_nft(const ir::Ruleset& ruleset, const NftRenderOptions& options = {});
std::string render_nft_table(const ir::Table& table);

// {"tables":[{"family":"ip","name":"svcproxy","sets":[...],"chains":[...]}]}
std::string render_json(const ir::Ruleset& ruleset);

// Pieces shared with trace output and error messages.
std::string render_rule(const ir::Rule& rule, model::IPFamily family);
std::string render_value(const ir::Value& value);

}  // namespace svcproxy::dataplane
