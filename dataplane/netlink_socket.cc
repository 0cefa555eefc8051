#include "dataplane/netlink_socket.h"

#include <libmnl/libmnl.h>
#include <libnftnl/common.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <sys/time.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <exception>

namespace svcproxy::dataplane {
namespace {

std::string errno_text(int error) { return std::strerror(error); }

// Calls fn for each attribute of `nlh` after `offset` bytes of payload.
template <typename Fn>
void for_each_attr(const nlmsghdr* nlh, size_t offset, Fn&& fn) {
  const auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, offset));
  const char* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  while (mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr)))) {
    fn(attr);
    attr = mnl_attr_next(attr);
  }
}

[[noreturn]] void throw_errno(const std::string& what, int error) {
  throw NetlinkError(what + ": " + errno_text(error), error);
}

// What the kernel said about one message of a batch.
struct Ack {
  uint32_t seq = 0;
  int error = 0;  // positive errno, 0 for success
  uint32_t offset = 0;
  std::string message;  // extended ack text, if any
};

// Parses an NLMSG_ERROR message, including the extended-ack attributes
// (NETLINK_EXT_ACK) that may follow the capped original header.
Ack parse_ack(const nlmsghdr* nlh) {
  Ack ack;
  ack.seq = nlh->nlmsg_seq;
  if (nlh->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr))) {
    ack.error = EBADMSG;
    return ack;
  }
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  ack.error = err->error < 0 ? -err->error : err->error;
  if (ack.error == 0 || !(nlh->nlmsg_flags & NLM_F_ACK_TLVS)) return ack;
  size_t header = sizeof(nlmsgerr);
  if (!(nlh->nlmsg_flags & NLM_F_CAPPED)) header += mnl_nlmsg_get_payload_len(&err->msg);
  for_each_attr(nlh, header, [&](const nlattr* attr) {
    switch (mnl_attr_get_type(attr)) {
      case NLMSGERR_ATTR_MSG:
        if (mnl_attr_validate(attr, MNL_TYPE_NUL_STRING) == 0) ack.message = mnl_attr_get_str(attr);
        break;
      case NLMSGERR_ATTR_OFFS:
        if (mnl_attr_validate(attr, MNL_TYPE_U32) == 0) ack.offset = mnl_attr_get_u32(attr);
        break;
      default:
        break;
    }
  });
  return ack;
}

void set_buffer(int fd, int force_option, int option, size_t bytes) {
  const int value = static_cast<int>(std::min<size_t>(bytes, INT_MAX / 2));
  // The FORCE variants need CAP_NET_ADMIN and ignore rmem_max/wmem_max;
  // without it the plain option still gets as close as the sysctls allow.
  if (setsockopt(fd, SOL_SOCKET, force_option, &value, sizeof value) != 0) {
    setsockopt(fd, SOL_SOCKET, option, &value, sizeof value);
  }
}

// Rough kernel memory charged to the receive buffer per ack (skb truesize of
// a capped nlmsgerr), with headroom.
constexpr size_t kAckTruesize = 1024;
constexpr size_t kReceiveBufferSize = size_t{128} << 10;
constexpr int kReplyTimeoutSeconds = 30;

}  // namespace

// ---- NetlinkBatch ---------------------------------------------------------

NetlinkBatch::NetlinkBatch(uint32_t first_seq) : first_seq_(first_seq) {
  new_page();
  auto& page = pages_.back();
  const nlmsghdr* nlh = nftnl_batch_begin(page.data.get(), first_seq_);
  page.used += NLMSG_ALIGN(nlh->nlmsg_len);
}

NetlinkBatch::NetlinkBatch(NetlinkBatch&&) noexcept = default;
NetlinkBatch& NetlinkBatch::operator=(NetlinkBatch&&) noexcept = default;
NetlinkBatch::~NetlinkBatch() = default;

void NetlinkBatch::new_page() { pages_.push_back(Page{std::make_unique_for_overwrite<char[]>(kPageSize), 0}); }

char* NetlinkBatch::next_message() {
  if (sealed_) throw std::logic_error("netlink batch already sent");
  if (kPageSize - pages_.back().used < kMaxMessageSize) new_page();
  auto& page = pages_.back();
  return page.data.get() + page.used;
}

uint32_t NetlinkBatch::next_seq() const { return first_seq_ + 1 + static_cast<uint32_t>(descriptions_.size()); }

void NetlinkBatch::commit(Describe describe) {
  auto& page = pages_.back();
  auto* nlh = reinterpret_cast<nlmsghdr*>(page.data.get() + page.used);
  if (nlh->nlmsg_len > kMaxMessageSize || nlh->nlmsg_len < NLMSG_HDRLEN) {
    throw std::length_error("netlink message of " + std::to_string(nlh->nlmsg_len) + " bytes exceeds " +
                            std::to_string(kMaxMessageSize));
  }
  nlh->nlmsg_seq = next_seq();
  nlh->nlmsg_flags |= NLM_F_ACK;
  offsets_.emplace_back(static_cast<uint32_t>(pages_.size() - 1), static_cast<uint32_t>(page.used));
  descriptions_.push_back(std::move(describe));
  largest_ = std::max<size_t>(largest_, nlh->nlmsg_len);
  page.used += NLMSG_ALIGN(nlh->nlmsg_len);
}

void NetlinkBatch::seal() {
  if (sealed_) return;
  char* buf = next_message();
  const nlmsghdr* nlh = nftnl_batch_end(buf, next_seq());
  pages_.back().used += NLMSG_ALIGN(nlh->nlmsg_len);
  sealed_ = true;
}

size_t NetlinkBatch::bytes() const {
  size_t total = 0;
  for (const auto& page : pages_) total += page.used;
  return total;
}

const nlmsghdr* NetlinkBatch::message(uint32_t seq) const {
  const uint32_t index = seq - first_seq_ - 1;
  if (seq <= first_seq_ || index >= offsets_.size()) return nullptr;
  const auto [page, offset] = offsets_[index];
  return reinterpret_cast<const nlmsghdr*>(pages_[page].data.get() + offset);
}

const nlmsghdr* NetlinkBatch::message_at(size_t index) const {
  if (index >= offsets_.size()) throw std::out_of_range("netlink batch: no message " + std::to_string(index));
  return message(first_seq_ + 1 + static_cast<uint32_t>(index));
}

std::string NetlinkBatch::describe(size_t index, uint32_t error_offset) const {
  return descriptions_.at(index)(message_at(index), error_offset);
}

// ---- NetlinkSocket --------------------------------------------------------

NetlinkSocket::NetlinkSocket() : socket_(mnl_socket_open(NETLINK_NETFILTER), [](mnl_socket* s) { mnl_socket_close(s); }) {
  if (!socket_) throw_errno("netlink: socket(NETLINK_NETFILTER)", errno);
  if (mnl_socket_bind(socket_.get(), 0, MNL_SOCKET_AUTOPID) < 0) throw_errno("netlink: bind", errno);
  portid_ = mnl_socket_get_portid(socket_.get());
  int one = 1;
  // Extended acks name the offending attribute; capped acks keep an error
  // from echoing the whole (up to 64 KiB) message back.
  mnl_socket_setsockopt(socket_.get(), NETLINK_EXT_ACK, &one, sizeof one);
  mnl_socket_setsockopt(socket_.get(), NETLINK_CAP_ACK, &one, sizeof one);
  // Replies to requests are read blocking; a lost one must not hang us.
  const timeval timeout{kReplyTimeoutSeconds, 0};
  setsockopt(mnl_socket_get_fd(socket_.get()), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  seq_ = 1;
}

NetlinkSocket::~NetlinkSocket() = default;

NetlinkBatch NetlinkSocket::begin_batch() { return NetlinkBatch(seq_); }

void NetlinkSocket::ensure_buffers(size_t send_bytes, size_t acks) {
  const int fd = mnl_socket_get_fd(socket_.get());
  // The whole batch travels in one datagram, which must fit the send buffer.
  const size_t want_send = send_bytes + 4096;
  if (want_send > sndbuf_) {
    set_buffer(fd, SO_SNDBUFFORCE, SO_SNDBUF, want_send);
    sndbuf_ = want_send;
  }
  // Every ack is queued before sendmsg returns; they must all fit, or the
  // kernel drops some (ENOBUFS) and the outcome of the transaction is lost.
  const size_t want_receive = acks * kAckTruesize + (size_t{1} << 20);
  if (want_receive > rcvbuf_) {
    set_buffer(fd, SO_RCVBUFFORCE, SO_RCVBUF, want_receive);
    rcvbuf_ = want_receive;
  }
}

void NetlinkSocket::commit(NetlinkBatch& batch) {
  batch.seal();
  const uint32_t first = batch.first_seq_;
  const uint32_t last = batch.next_seq();  // BATCH_END
  seq_ = last + 1;
  ensure_buffers(batch.bytes(), batch.size());

  const int fd = mnl_socket_get_fd(socket_.get());
  std::vector<iovec> iov;
  iov.reserve(batch.pages_.size());
  for (const auto& page : batch.pages_) iov.push_back({page.data.get(), page.used});
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  msghdr msg{};
  msg.msg_name = &kernel;
  msg.msg_namelen = sizeof kernel;
  msg.msg_iov = iov.data();
  msg.msg_iovlen = iov.size();
  ssize_t sent;
  do {
    sent = sendmsg(fd, &msg, 0);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    throw_errno("netlink: sending a transaction of " + std::to_string(batch.size()) + " messages (" +
                    std::to_string(batch.bytes()) + " bytes)",
                errno);
  }

  // nfnetlink processes the batch inside sendmsg and queues every ack before
  // returning, so draining without blocking reads them all.
  constexpr unsigned kSlots = 64;
  std::vector<char> buffer(kSlots * size_t{16384});
  std::vector<iovec> slots(kSlots);
  std::vector<mmsghdr> messages(kSlots);
  size_t acked = 0;
  bool lost = false;
  std::vector<Ack> failures;
  for (;;) {
    for (unsigned i = 0; i < kSlots; ++i) {
      slots[i] = {buffer.data() + i * size_t{16384}, 16384};
      messages[i] = {};
      messages[i].msg_hdr.msg_iov = &slots[i];
      messages[i].msg_hdr.msg_iovlen = 1;
    }
    const int n = recvmmsg(fd, messages.data(), kSlots, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        lost = true;
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      throw_errno("netlink: reading acks", errno);
    }
    for (int i = 0; i < n; ++i) {
      if (messages[i].msg_hdr.msg_flags & MSG_TRUNC) lost = true;
      const auto* nlh = static_cast<const nlmsghdr*>(slots[i].iov_base);
      int len = static_cast<int>(messages[i].msg_len);
      for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
        if (nlh->nlmsg_type != NLMSG_ERROR) continue;
        if (nlh->nlmsg_seq < first || nlh->nlmsg_seq > last) continue;  // stale
        Ack ack = parse_ack(nlh);
        ++acked;
        if (ack.error != 0) failures.push_back(std::move(ack));
      }
    }
  }

  if (!failures.empty()) {
    std::sort(failures.begin(), failures.end(), [](const Ack& a, const Ack& b) { return a.seq < b.seq; });
    std::vector<std::string> described;
    for (const auto& f : failures) {
      std::string text;
      if (const nlmsghdr* original = batch.message(f.seq)) {
        text = batch.descriptions_[f.seq - first - 1](original, f.offset);
      } else {
        text = f.seq == first ? "batch begin" : "batch end";
      }
      text += ": " + errno_text(f.error);
      if (!f.message.empty()) text += " (" + f.message + ")";
      described.push_back(std::move(text));
    }
    std::string what = "nf_tables refused the transaction (" + std::to_string(failures.size()) + " of " +
                       std::to_string(batch.size()) + " messages failed; nothing was applied): ";
    const size_t shown = std::min<size_t>(described.size(), 5);
    for (size_t i = 0; i < shown; ++i) what += (i ? "; " : "") + described[i];
    if (shown < described.size()) what += "; ...";
    throw TransactionError(what, failures.front().error, std::move(described));
  }
  if (lost) {
    throw NetlinkError("netlink: acks of a " + std::to_string(batch.size()) +
                           "-message transaction were dropped (receive buffer overrun); its outcome is unknown",
                       ENOBUFS);
  }
  if (acked < batch.size()) {
    throw NetlinkError("netlink: only " + std::to_string(acked) + " of " + std::to_string(batch.size()) +
                           " messages of the transaction were acknowledged; its outcome is unknown",
                       EPROTO);
  }
}

nlmsghdr* NetlinkSocket::build_request(char* buf, uint16_t type, uint16_t family, uint16_t flags) {
  return nftnl_nlmsg_build_hdr(buf, type, family, flags, seq_++);
}

bool NetlinkSocket::request(nlmsghdr* req, const std::function<void(const nlmsghdr*)>& on_reply,
                            bool* interrupted) {
  const uint32_t seq = req->nlmsg_seq;
  if (mnl_socket_sendto(socket_.get(), req, req->nlmsg_len) < 0) throw_errno("netlink: sending a request", errno);
  std::vector<char> buffer(kReceiveBufferSize);
  const int fd = mnl_socket_get_fd(socket_.get());
  std::exception_ptr failure;
  auto finish = [&](bool found) {
    if (failure) std::rethrow_exception(failure);
    return found;
  };
  for (;;) {
    iovec iov{buffer.data(), buffer.size()};
    sockaddr_nl from{};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof from;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    const ssize_t got = recvmsg(fd, &msg, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOBUFS) {
        // Something was dropped: the caller must not trust this dump (it
        // retries); keep reading to its end so the socket stays usable.
        if (interrupted) *interrupted = true;
        continue;
      }
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        throw NetlinkError("netlink: no reply from the kernel within " + std::to_string(kReplyTimeoutSeconds) + " s",
                           ETIMEDOUT);
      }
      throw_errno("netlink: reading a reply", errno);
    }
    if (msg.msg_flags & MSG_TRUNC) throw NetlinkError("netlink: reply truncated", EMSGSIZE);
    if (from.nl_pid != 0) continue;  // not from the kernel
    const auto* nlh = reinterpret_cast<const nlmsghdr*>(buffer.data());
    int len = static_cast<int>(got);
    for (; mnl_nlmsg_ok(nlh, len); nlh = mnl_nlmsg_next(nlh, &len)) {
      if (nlh->nlmsg_seq != seq || nlh->nlmsg_pid != portid_) continue;  // stale
      if (nlh->nlmsg_flags & NLM_F_DUMP_INTR && interrupted) *interrupted = true;
      if (nlh->nlmsg_type == NLMSG_DONE) {
        if (mnl_nlmsg_get_payload_len(nlh) >= sizeof(int)) {
          const int error = *static_cast<const int*>(mnl_nlmsg_get_payload(nlh));
          if (error == -ENOENT) return finish(false);
          if (error < 0) throw_errno("netlink: dump", -error);
        }
        return finish(true);
      }
      if (nlh->nlmsg_type == NLMSG_ERROR) {
        const Ack ack = parse_ack(nlh);
        if (ack.error == 0) return finish(true);
        if (ack.error == ENOENT) return finish(false);
        throw_errno("netlink: request" + (ack.message.empty() ? "" : " (" + ack.message + ")"), ack.error);
      }
      if (nlh->nlmsg_type < NLMSG_MIN_TYPE) continue;  // NOOP / OVERRUN
      // A dump must be read to its end even if the caller gives up, or the
      // socket could not start another one.
      if (failure) continue;
      try {
        on_reply(nlh);
      } catch (...) {
        failure = std::current_exception();
      }
    }
  }
}

uint32_t NetlinkSocket::generation() {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* req = build_request(buf, NFT_MSG_GETGEN, AF_UNSPEC, NLM_F_ACK);
  bool found = false;
  uint32_t id = 0;
  request(req, [&](const nlmsghdr* nlh) {
    for_each_attr(nlh, sizeof(nfgenmsg), [&](const nlattr* attr) {
      if (mnl_attr_get_type(attr) == NFTA_GEN_ID && mnl_attr_validate(attr, MNL_TYPE_U32) == 0) {
        id = ntohl(mnl_attr_get_u32(attr));
        found = true;
      }
    });
  });
  if (!found) throw NetlinkError("netlink: the kernel reported no ruleset generation id", EPROTO);
  return id;
}

}  // namespace svcproxy::dataplane
