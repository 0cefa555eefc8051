// Which of the nftables features svcproxy's ruleset uses does this kernel
// lack? Each feature is tried alone in a throwaway table that is created
// and deleted in the same transaction, so nothing is left behind and the
// answer names the feature (kube-proxy users met a bare "No such file or
// directory" on kernels without NFT_FIB).
#pragma once

#include <string>
#include <vector>

namespace svcproxy::dataplane {

struct MissingFeature {
  std::string feature;  // e.g. "fib (fib saddr type local)"
  std::string error;    // the kernel's answer
};

// Throws NetlinkError when nf_tables cannot be reached at all (no
// CAP_NET_ADMIN, no nf_tables in the kernel).
std::vector<MissingFeature> probe_nftables_features();

}  // namespace svcproxy::dataplane
