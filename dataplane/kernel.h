// The netlink backend's face: programs a compiled ruleset (or a diff of it)
// into the current network namespace, reads it back, and removes it. Owns
// the netlink socket and nothing else: what was applied is the compiler's
// state (RulesetCompiler); the backend only says whether the kernel is known
// to hold it.
// Every failure is a std::runtime_error subclass naming the object:
// TransactionError (the kernel refused; nothing changed), NetlinkError,
// DecodeError (readback found something svcproxy does not write).
#pragma once

#include <optional>

#include "dataplane/compile.h"
#include "dataplane/ir.h"
#include "dataplane/netlink_decode.h"
#include "dataplane/netlink_socket.h"
#include "dataplane/ruleset_kernel.h"

namespace svcproxy::dataplane {

class NetlinkBackend final : public RulesetKernel {
 public:
  NetlinkBackend() = default;

  // Replaces svcproxy's tables with `ruleset`'s in one transaction: either
  // all of it applies or nothing changes. Any other table is left alone.
  // Taken by value: the backend keeps it (move it in to avoid a copy).
  void apply_full(const ir::Ruleset& ruleset);
  // The same for the compiler's current ruleset, encoded straight from its
  // state: no copy of the ruleset is made (compare apply_full(c.ruleset())).
  void apply_full(const RulesetCompiler& compiler) override;

  // Applies one compiler update in one transaction: only what changed
  // (O(changes)). Requires in_sync(); on failure nothing changes and the
  // next sync must be full. `definitions` gives shared sets' definitions
  // (for element changes).
  void apply_partial(const RulesetDiff& diff, const RulesetCompiler& definitions) override;

  // svcproxy's tables (ip and ip6 "svcproxy") as the kernel holds them;
  // tables that do not exist are absent from the result.
  ir::Ruleset read_back() override;

  // Deletes svcproxy's tables if present, in one transaction; succeeds when
  // there is nothing to delete. Never touches other tables.
  void cleanup() override;

  // The last transaction (full or partial) succeeded: the kernel holds what
  // the compiler last produced, so a partial sync may follow. False at start,
  // after a failure and after cleanup.
  bool in_sync() const override { return in_sync_; }

 private:
  NetlinkSocket socket_;
  bool in_sync_ = false;
};

}  // namespace svcproxy::dataplane
