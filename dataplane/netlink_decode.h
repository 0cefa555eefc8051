// Kernel -> IR: dumps svcproxy's own tables over netlink and decodes them
// back into the IR, so that "what the kernel holds" can be compared with
// "what the compiler produced" with operator==.
//
// Only the named tables are read: sets, elements and rules are dumped with a
// table filter; chains (which the kernel cannot filter by table) are skipped
// unread unless they belong to one of them. Other tables may hold objects
// svcproxy does not understand, and are never decoded.
#pragma once

#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/ir.h"
#include "dataplane/netlink_socket.h"

namespace svcproxy::dataplane {

// The kernel holds something in svcproxy's table that svcproxy never writes
// (the table was edited by hand, or by another program): names the object,
// e.g. "rule 3 of chain ip svcproxy services: expression 2 (counter) ...".
class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TableRef {
  model::IPFamily family = model::IPFamily::V4;
  std::string name;
};

// Reads `tables` (those that exist, in the given order) as one consistent
// snapshot: the ruleset generation is read before and after the dumps, and
// they are repeated if a commit raced them. Elements of dynamic sets are
// packet-path state and are not read (the IR holds none). Throws DecodeError
// or NetlinkError.
ir::Ruleset read_tables(NetlinkSocket& socket, const std::vector<TableRef>& tables);

// The same without the snapshot guarantee: each table is read once, even if
// commits race it (`raced` says whether one did). Then objects those commits
// changed may be missing, doubled or stale, and a dump resumed after a commit
// may skip or repeat others of the same kind (set elements, rules, chains).
// Never invents an object that was not there. For drift checks, which run
// while the event thread keeps committing (dataplane/drift_check.h).
// What one counter object has counted since it was created.
struct CounterValue {
  model::IPFamily family = model::IPFamily::V4;  // of its table
  std::string name;
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

// Every counter object of the tables named `table` (ip and ip6) with its
// values, in ONE NFT_MSG_GETOBJ dump of every family, which the kernel
// filters by table name: what a metrics scrape costs. Sorted by family and
// name; empty when no such table exists.
std::vector<CounterValue> read_counters(NetlinkSocket& socket, const std::string& table);

ir::Ruleset read_tables_racy(NetlinkSocket& socket, const std::vector<TableRef>& tables, bool* raced);

}  // namespace svcproxy::dataplane
