// UDP conntrack cleanup (libnetfilter_conntrack): deletes the entries an
// update made stale, and only those. Flushing more would break long-lived UDP
// flows to endpoints that are still alive (kube-proxy issue #122740);
// flushing less leaves clients blackholed on a dead endpoint (#139628).
#pragma once

#include <cstddef>
#include <memory>
#include <stdexcept>
#include <vector>

#include "dataplane/compile.h"

struct nfct_handle;

namespace svcproxy::dataplane {

class ConntrackError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ConntrackCleaner {
 public:
  ConntrackCleaner();
  ~ConntrackCleaner();
  ConntrackCleaner(const ConntrackCleaner&) = delete;
  ConntrackCleaner& operator=(const ConntrackCleaner&) = delete;

  // Deletes the UDP entries of this network namespace matching any of
  // `flows` (one dump per family concerned, then one delete per match).
  // Returns how many were deleted.
  size_t delete_stale(const std::vector<StaleUdpFlow>& flows);

 private:
  struct HandleDeleter {
    void operator()(nfct_handle* h) const;
  };
  std::unique_ptr<nfct_handle, HandleDeleter> handle_;
};

}  // namespace svcproxy::dataplane
