// The seam in front of nf_tables transactions: whoever programs nftables
// (the feature probe, the backend) builds a batch and commits it through
// this interface. The real one is NetlinkSocket (netlink_socket.h); the
// tests use an in-memory fake that refuses chosen expressions or the whole
// batch (tests/dataplane/fake_nftables_kernel.h), so that failure paths are
// exercised without a kernel that lacks a feature. Nothing in production
// code knows which one it holds.
#pragma once

namespace svcproxy::dataplane {

class NetlinkBatch;

class NftablesKernel {
 public:
  virtual ~NftablesKernel() = default;

  // A new, empty batch (its sequence numbers are the kernel side's business).
  virtual NetlinkBatch begin_batch() = 0;

  // Sends the batch as ONE transaction: all of it applies or nothing does.
  // Throws TransactionError (refused; nothing applied) naming each refused
  // object, or NetlinkError when the outcome cannot be known.
  virtual void commit(NetlinkBatch& batch) = 0;
};

}  // namespace svcproxy::dataplane
