// UDP conntrack cleanup (libnetfilter_conntrack): deletes the entries an
// update made stale, and only those. Flushing more would break long-lived UDP
// flows to endpoints that are still alive (kube-proxy issue #122740);
// flushing less leaves clients blackholed on a dead endpoint (#139628).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
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

  // After a full sync (start, restart, recovery), when what changed is
  // unknown: deletes the UDP entries that were DNATed to a service address
  // (ClusterIP, external IP, LB IP, or a NodePort on `nodeport_ips`) whose
  // reply source is no longer an endpoint of that service port. Entries to
  // live endpoints are kept: no flush at start (kube-proxy #122740).
  size_t delete_orphans(const std::vector<model::ServicePortState>& ports,
                        const std::vector<model::IPAddress>& nodeport_ips);

 private:
  struct HandleDeleter {
    void operator()(nfct_handle* h) const;
  };
  // Dumps the UDP entries of one family; `doomed` decides which to delete.
  template <typename Predicate>
  size_t delete_matching(model::IPFamily family, Predicate doomed);

  std::unique_ptr<nfct_handle, HandleDeleter> handle_;
};

// Reads one entry by its original tuple (NFCT_Q_GET: one netlink round trip,
// no dump), for `loadtest --attribute conntrack`: the reply direction's
// source is where the flow was DNATed to. One netlink socket, used by one
// thread at a time.
class ConntrackLookup {
 public:
  ConntrackLookup();  // throws ConntrackError
  ~ConntrackLookup();
  ConntrackLookup(const ConntrackLookup&) = delete;
  ConntrackLookup& operator=(const ConntrackLookup&) = delete;

  struct Tuple {
    model::IPAddress src;
    uint16_t sport = 0;
    model::IPAddress dst;
    uint16_t dport = 0;
    model::Protocol protocol = model::Protocol::TCP;
  };
  // The entry's reply source, or nullopt when this network namespace has no
  // entry for `original`. Other failures throw ConntrackError.
  std::optional<model::EndpointAddress> reply_source(const Tuple& original);

 private:
  struct HandleDeleter {
    void operator()(nfct_handle* h) const;
  };
  std::unique_ptr<nfct_handle, HandleDeleter> handle_;
  std::optional<model::EndpointAddress> found_;  // filled by the callback
};

}  // namespace svcproxy::dataplane
