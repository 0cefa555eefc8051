// One service port's contribution to its table, its Fragment: the elements
// it adds to the shared sets and maps (its ClusterIP, its keys in the class
// sets, its DNAT map entries, service-ips verdicts), and the chains and
// sets of its own that only session affinity and source ranges need. A
// pure function of the port, given the table's config, the claims (which of
// its keys the port owns; conflicts become warnings) and the ledger (set
// ids; a DNAT map is interned on first use).
#pragma once

#include <string>
#include <vector>

#include "dataplane/compile/address_claims.h"
#include "dataplane/compile/element_ledger.h"
#include "dataplane/compile/table_config.h"

namespace svcproxy::dataplane::detail {

Fragment compile_port(const ServicePortState& sp, const TableConfig& config, ElementLedger& ledger,
                      const AddressClaims& claims, std::vector<std::string>& warnings);

}  // namespace svcproxy::dataplane::detail
