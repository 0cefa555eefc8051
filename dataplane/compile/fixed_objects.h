// The objects of a table that depend on the node config alone: the base
// chains and the services chain that classifies packets, the class chains
// (cluster-ip, external, no-endpoints, ...), masquerading, and the sets of
// CIDRs and NodePort addresses. They are built once per compiler and no
// update ever changes them, so a partial sync never touches them; what
// service ports add lives in their fragments and the element ledger.
#pragma once

#include <vector>

#include "dataplane/compile/table_config.h"

namespace svcproxy::dataplane::detail {

class FixedObjects {
 public:
  explicit FixedObjects(const TableConfig& config);

  const std::vector<ir::Chain>& chains() const { return chains_; }
  const std::vector<ir::Set>& sets() const { return sets_; }  // with their elements
  const std::vector<ir::Counter>& counters() const { return counters_; }  // sorted by name

 private:
  std::vector<ir::Chain> chains_;
  std::vector<ir::Set> sets_;
  std::vector<ir::Counter> counters_;
};

}  // namespace svcproxy::dataplane::detail
