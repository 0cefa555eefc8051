#include "dataplane/kernel.h"

#include "dataplane/compile.h"
#include "dataplane/netlink_encode.h"

namespace svcproxy::dataplane {
namespace {

// svcproxy's tables, whatever the ruleset holds: cleanup and readback must
// find them even when the last applied IR is unknown.
ir::Ruleset own_tables() {
  ir::Ruleset tables;
  for (auto family : {model::IPFamily::V4, model::IPFamily::V6}) {
    ir::Table table;
    table.family = family;
    table.name = names::kTable;
    tables.tables.push_back(std::move(table));
  }
  return tables;
}

}  // namespace

void NetlinkBackend::apply_full(ir::Ruleset ruleset) {
  last_applied_.reset();
  NetlinkBatch batch = socket_.begin_batch();
  encode_full_sync(ruleset, batch);
  socket_.commit(batch);  // failure descriptions refer to `ruleset`
  last_applied_ = std::move(ruleset);
}

ir::Ruleset NetlinkBackend::read_back() {
  std::vector<TableRef> refs;
  for (const auto& table : own_tables().tables) refs.push_back({table.family, table.name});
  return read_tables(socket_, refs);
}

void NetlinkBackend::cleanup() {
  last_applied_.reset();
  const ir::Ruleset tables = own_tables();
  NetlinkBatch batch = socket_.begin_batch();
  encode_cleanup(tables, batch);
  socket_.commit(batch);
}

}  // namespace svcproxy::dataplane
