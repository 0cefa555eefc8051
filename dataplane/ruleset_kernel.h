// The kernel seam of the sync loop: whoever keeps svcproxy's tables in sync
// (proxy/SyncLoop) programs them through this interface and never through
// netlink directly. The real one is NetlinkBackend (kernel.h); unit tests
// use an in-memory fake that applies the same full rulesets and diffs to an
// IR ruleset (and can be told to fail), so the sync loop's failure handling,
// its full-sync fallback and its object counts are tested without root.
// Every behaviour stays proven on the real kernel by the netns e2e tests.
#pragma once

#include "dataplane/compile.h"
#include "dataplane/ir.h"

namespace svcproxy::dataplane {

class RulesetKernel {
 public:
  virtual ~RulesetKernel() = default;

  // Replaces svcproxy's tables with the compiler's current ruleset in one
  // transaction: all of it applies or nothing changes.
  virtual void apply_full(const RulesetCompiler& compiler) = 0;
  // Applies one compiler update in one transaction (O(changes)). Requires
  // in_sync(); on failure nothing changes and in_sync() turns false.
  virtual void apply_partial(const RulesetDiff& diff, const RulesetCompiler& definitions) = 0;
  // svcproxy's tables as the kernel holds them (absent tables are absent).
  virtual ir::Ruleset read_back() = 0;
  // Deletes svcproxy's tables if present; succeeds when there are none.
  virtual void cleanup() = 0;
  // The last transaction succeeded: the kernel holds what the compiler last
  // produced, so a partial sync may follow.
  virtual bool in_sync() const = 0;
};

}  // namespace svcproxy::dataplane
