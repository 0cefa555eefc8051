// The netlink backend's face: programs a compiled ruleset into the current
// network namespace, reads it back, and removes it. Owns the netlink socket
// and remembers the last IR it applied (the base of future partial syncs).
// Every failure is a std::runtime_error subclass naming the object:
// TransactionError (the kernel refused; nothing changed), NetlinkError,
// DecodeError (readback found something svcproxy does not write).
#pragma once

#include <optional>

#include "dataplane/ir.h"
#include "dataplane/netlink_decode.h"
#include "dataplane/netlink_socket.h"

namespace svcproxy::dataplane {

class NetlinkBackend {
 public:
  NetlinkBackend() = default;

  // Replaces svcproxy's tables with `ruleset`'s in one transaction: either
  // all of it applies or nothing changes. Any other table is left alone.
  // Taken by value: the backend keeps it (move it in to avoid a copy).
  void apply_full(ir::Ruleset ruleset);

  // svcproxy's tables (ip and ip6 "svcproxy") as the kernel holds them;
  // tables that do not exist are absent from the result.
  ir::Ruleset read_back();

  // Deletes svcproxy's tables if present, in one transaction; succeeds when
  // there is nothing to delete. Never touches other tables.
  void cleanup();

  // The ruleset of the last successful apply_full; empty after a failure
  // (the next sync must then be full) or a cleanup.
  const std::optional<ir::Ruleset>& last_applied() const { return last_applied_; }

 private:
  NetlinkSocket socket_;
  std::optional<ir::Ruleset> last_applied_;
};

}  // namespace svcproxy::dataplane
