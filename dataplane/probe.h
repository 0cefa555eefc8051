// Which of the nftables features svcproxy's ruleset uses does this kernel
// lack? Each feature is tried alone in a throwaway table that is created
// and deleted in the same transaction, so nothing is left behind and the
// answer names the feature (kube-proxy users met a bare "No such file or
// directory" on kernels without NFT_FIB).
#pragma once

#include <string>
#include <vector>

#include "dataplane/nftables_kernel.h"

namespace svcproxy::dataplane {

struct MissingFeature {
  std::string feature;  // e.g. "fib (fib saddr type local)"
  std::string error;    // the kernel's answer
};

// Commits one transaction per feature through `kernel` (a NetlinkSocket
// for the real answer): the feature's table, then its deletion. Returns the
// features the kernel refused, each with the kernel's answer. Throws
// NetlinkError when nf_tables cannot be used at all: a refusal for lack of
// permission (EPERM: the message names CAP_NET_ADMIN) or a failure whose
// outcome is unknown.
std::vector<MissingFeature> probe_nftables_features(NftablesKernel& kernel);

}  // namespace svcproxy::dataplane
