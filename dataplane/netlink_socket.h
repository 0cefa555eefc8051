// The one class that talks to nf_tables over netlink (NETLINK_NETFILTER):
// it sends a batch of messages as ONE transaction and reads an ack for every
// message, and it runs dump requests for readback. It knows nothing about
// svcproxy's ruleset; the encoder fills batches, the decoder parses dumps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/nftables_kernel.h"

struct mnl_socket;
struct nlmsghdr;

namespace svcproxy::dataplane {

// A netlink failure: the socket, a send/receive, or a request the kernel
// refused. `error()` is the errno (0 when none applies).
class NetlinkError : public std::runtime_error {
 public:
  NetlinkError(const std::string& what, int error) : std::runtime_error(what), error_(error) {}
  int error() const { return error_; }

 private:
  int error_;
};

// The kernel refused a transaction: nothing of it was applied. Each entry
// names the object whose message failed, e.g.
// "chain ip svcproxy svc-XXXX-ns/name/tcp/p: File exists".
class TransactionError : public NetlinkError {
 public:
  TransactionError(const std::string& what, int error, std::vector<std::string> failures)
      : NetlinkError(what, error), failures_(std::move(failures)) {}
  const std::vector<std::string>& failures() const { return failures_; }

 private:
  std::vector<std::string> failures_;
};

// One nf_tables transaction under construction: BATCH_BEGIN, messages,
// BATCH_END, kept in pages of kPageSize so that a transaction of any size is
// built without copying (sendmsg gathers the pages into one datagram). Every
// message carries NLM_F_ACK and its own sequence number, and a description of
// the object it creates or deletes, produced only if the kernel refuses it.
class NetlinkBatch {
 public:
  static constexpr size_t kPageSize = size_t{2} << 20;
  // Room guaranteed to the message being built. Encoders keep messages under
  // 64 KiB of attributes (the limit of one netlink attribute nest) plus one
  // element, so this is never reached.
  static constexpr size_t kMaxMessageSize = size_t{256} << 10;

  // Describes the object a message is about; called only on failure, with
  // the message and the offset of the attribute the kernel blamed (extended
  // ack; 0 when it named none).
  using Describe = std::function<std::string(const nlmsghdr* message, uint32_t error_offset)>;

  explicit NetlinkBatch(uint32_t first_seq);
  NetlinkBatch(NetlinkBatch&&) noexcept;
  NetlinkBatch& operator=(NetlinkBatch&&) noexcept;
  ~NetlinkBatch();

  // Where the next message is built: at least kMaxMessageSize bytes.
  char* next_message();
  // Sequence number the next committed message gets.
  uint32_t next_seq() const;
  // Seals the message built at next_message(): sets its sequence number and
  // NLM_F_ACK and records how to describe it. Throws std::length_error if the
  // message exceeded kMaxMessageSize.
  void commit(Describe describe);
  // Messages between BEGIN and END.
  size_t size() const { return descriptions_.size(); }
  bool empty() const { return descriptions_.empty(); }
  // Bytes of the whole batch including BEGIN and END once sealed.
  size_t bytes() const;
  size_t largest_message() const { return largest_; }
  // The index-th message between BEGIN and END (index < size()), and its
  // description as a refusal would name it: for kernels other than the
  // socket (the tests' fake), which read the batch instead of sending it.
  const nlmsghdr* message_at(size_t index) const;
  std::string describe(size_t index, uint32_t error_offset = 0) const;

 private:
  friend class NetlinkSocket;
  struct Page {
    std::unique_ptr<char[]> data;
    size_t used = 0;
  };
  void new_page();
  // Writes BATCH_END; after this no message can be added.
  void seal();
  const nlmsghdr* message(uint32_t seq) const;

  uint32_t first_seq_;
  std::vector<Page> pages_;
  // (page, offset) of each message, BEGIN excluded, in sequence order.
  std::vector<std::pair<uint32_t, uint32_t>> offsets_;
  std::vector<Describe> descriptions_;
  size_t largest_ = 0;
  bool sealed_ = false;
};

// RAII owner of an mnl_socket bound to NETLINK_NETFILTER in the caller's
// current network namespace: the real NftablesKernel.
class NetlinkSocket final : public NftablesKernel {
 public:
  NetlinkSocket();
  ~NetlinkSocket() override;
  NetlinkSocket(const NetlinkSocket&) = delete;
  NetlinkSocket& operator=(const NetlinkSocket&) = delete;

  // A new, empty batch whose sequence numbers do not collide with earlier ones.
  NetlinkBatch begin_batch() override;

  // Sends the batch as one transaction and reads every ack. Throws
  // TransactionError (the kernel applied nothing) naming each refused
  // object, or NetlinkError when the outcome cannot be known.
  void commit(NetlinkBatch& batch) override;

  // Builds a request header of `type` (NFT_MSG_*) for `family` into `buf`.
  nlmsghdr* build_request(char* buf, uint16_t type, uint16_t family, uint16_t flags);

  // Sends a request built with build_request (flags NLM_F_DUMP or NLM_F_ACK)
  // and calls `on_reply` for every reply message. Returns false if the kernel
  // answered ENOENT; throws NetlinkError on other errors. Sets `interrupted`
  // if the kernel flagged the dump as inconsistent (NLM_F_DUMP_INTR).
  bool request(nlmsghdr* request, const std::function<void(const nlmsghdr*)>& on_reply,
               bool* interrupted = nullptr);

  // The ruleset generation id (NFT_MSG_GETGEN): changes with every commit.
  uint32_t generation();

 private:
  void ensure_buffers(size_t send_bytes, size_t acks);

  std::unique_ptr<mnl_socket, void (*)(mnl_socket*)> socket_;
  uint32_t portid_ = 0;
  uint32_t seq_ = 0;
  size_t sndbuf_ = 0;
  size_t rcvbuf_ = 0;
};

}  // namespace svcproxy::dataplane
