#include "userspace/relay.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <algorithm>
#include <cerrno>
#include <vector>

#include "base/unique_fd.h"

namespace svcproxy::userspace {

namespace asio = boost::asio;

class Relay::Pump {
 public:
  // Short exchanges (most connections) are copied through a small buffer:
  // a pipe pair costs 2 descriptors and 4 syscalls before the first byte.
  // A direction that has moved kSpliceAfter bytes switches to splice.
  static constexpr size_t kSpliceAfter = 64 * 1024;
  static constexpr size_t kSmallBuffer = 16 * 1024;

  Pump(Relay& relay, Socket& in, Socket& out, size_t capacity, bool use_splice)
      : relay_(relay), in_(in), out_(out), capacity_(capacity), want_splice_(use_splice) {}
  bool spliced() const { return bool(pipe_read_); }

  // Bytes read before the relay started; [sent, size) still to be written.
  void preload(std::vector<char> data, size_t sent) {
    moved_ = data.size();
    pending_ = data.size() - sent;
    offset_ = sent;
    buffer_ = std::move(data);
  }

  // Moves bytes until one side would block, then waits for it. A bounded
  // number of rounds per call so one fast connection cannot starve the
  // others on this worker.
  void run() {
    for (int round = 0; round < 16; ++round) {
      if (relay_.aborted_) return;
      if (pending_ > 0) {
        const ssize_t n = spliced() ? splice(pipe_read_.get(), nullptr, out_.native_handle(), nullptr, pending_,
                                             SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                                    : ::send(out_.native_handle(), buffer_.data() + offset_, pending_, MSG_NOSIGNAL);
        if (n > 0) {
          pending_ -= static_cast<size_t>(n);
          offset_ += static_cast<size_t>(n);
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return wait(out_, Socket::wait_write);
        return relay_.abort();
      }
      if (eof_) {
        // The last direction to end needs no half-close: closing both
        // sockets (pump_finished) sends the FIN.
        if (relay_.finished_ == 0) ::shutdown(out_.native_handle(), SHUT_WR);
        return relay_.pump_finished();
      }
      if (moved_ >= kSpliceAfter && !bulk_) become_bulk();
      if (!spliced()) return receive();
      const ssize_t n = splice(in_.native_handle(), nullptr, pipe_write_.get(), nullptr, capacity_,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n < 0 && errno == EINVAL) {  // this socket cannot splice: copy from now on
        close_pipe();
        continue;
      }
      if (n > 0) {
        got(static_cast<size_t>(n));
        continue;
      }
      if (n == 0) {
        eof_ = true;
        continue;
      }
      if (errno == EAGAIN || errno == EINTR) return wait(in_, Socket::wait_read);
      return relay_.abort();
    }
    asio::post(in_.get_executor(), [this, keep = relay_.owner_.keep_alive()] { run(); });
  }

 private:
  void got(size_t n) {
    pending_ = n;
    offset_ = 0;
    moved_ += n;
  }
  // Copy mode reads through Asio's own receive operation rather than
  // recv() + async_wait: the reactor tries the read at once, and after a
  // short read waits for the next edge without another recv() (no EAGAIN
  // round trip), and a pending read needs no epoll_ctl(MOD) per wait.
  void receive() {
    if (buffer_.size() < std::min(capacity_, kSmallBuffer)) buffer_.resize(std::min(capacity_, kSmallBuffer));
    in_.async_receive(asio::buffer(buffer_),
                      [this, keep = relay_.owner_.keep_alive()](const boost::system::error_code& ec, size_t n) {
                        if (ec == asio::error::eof) {
                          eof_ = true;
                        } else if (ec) {
                          return relay_.abort();
                        } else {
                          got(n);
                        }
                        run();
                      });
  }

  // A bulk transfer: splice through a pipe of `capacity_` bytes, or (no
  // descriptors for a pipe, or splicing disabled) copy through a buffer of
  // that size.
  void become_bulk() {
    bulk_ = true;
    int fds[2];
    if (want_splice_ && pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0) {
      pipe_read_.reset(fds[0]);
      pipe_write_.reset(fds[1]);
      // A bigger pipe moves more per wakeup; refused above pipe-max-size,
      // then the default (64 KiB) stays.
      fcntl(pipe_write_.get(), F_SETPIPE_SZ, static_cast<int>(capacity_));
      const int size = fcntl(pipe_write_.get(), F_GETPIPE_SZ);
      if (size > 0) capacity_ = static_cast<size_t>(size);
      buffer_ = {};
      relay_.note_bulk(true);
      return;
    }
    buffer_.resize(capacity_);
    relay_.note_bulk(false);
  }
  void wait(Socket& s, Socket::wait_type type) {
    s.async_wait(type, [this, keep = relay_.owner_.keep_alive()](const boost::system::error_code& ec) {
      if (ec) return relay_.abort();
      run();
    });
  }
  void close_pipe() {
    pipe_read_.reset();
    pipe_write_.reset();
  }

  Relay& relay_;
  Socket& in_;
  Socket& out_;
  size_t capacity_;
  bool want_splice_;
  bool bulk_ = false;
  size_t moved_ = 0;  // bytes read so far
  base::UniqueFd pipe_read_, pipe_write_;  // splicing: the pipe between the sockets
  std::vector<char> buffer_;
  size_t pending_ = 0;  // bytes read, not yet written (in the pipe or buffer_)
  size_t offset_ = 0;   // copy mode: where pending_ starts in buffer_
  bool eof_ = false;
};

Relay::Relay(RelayOwner& owner, Socket& client, Socket& upstream, size_t buffer_bytes, bool use_splice,
             std::chrono::milliseconds half_close_timeout, BulkCounters counters)
    : owner_(owner),
      counters_(counters),
      client_(client),
      upstream_(upstream),
      up_(std::make_unique<Pump>(*this, client, upstream, buffer_bytes, use_splice)),
      down_(std::make_unique<Pump>(*this, upstream, client, buffer_bytes, use_splice)),
      half_close_timer_(client.get_executor()),
      half_close_timeout_(half_close_timeout) {}

Relay::~Relay() = default;

void Relay::note_bulk(bool spliced) {
  if (counted_bulk_) return;
  counted_bulk_ = true;
  auto* counter = spliced ? counters_.spliced : counters_.copied;
  if (counter) counter->fetch_add(1, std::memory_order_relaxed);
}

void Relay::start(std::vector<char> first, size_t sent) {
  up_->preload(std::move(first), sent);
  up_->run();
  down_->run();
}

void Relay::pump_finished() {
  if (++finished_ < 2) {
    half_close_timer_.expires_after(half_close_timeout_);
    half_close_timer_.async_wait([this, keep = owner_.keep_alive()](const boost::system::error_code& ec) {
      if (!ec && finished_ < 2) abort();
    });
    return;
  }
  half_close_timer_.cancel();
  boost::system::error_code ignored;
  client_.close(ignored);
  upstream_.close(ignored);
}

void Relay::abort() {
  if (aborted_) return;
  aborted_ = true;
  half_close_timer_.cancel();
  // One side failed (reset, or its peer vanished): reset the other so the
  // failure is not mistaken for a clean end.
  boost::system::error_code ignored;
  client_.set_option(asio::socket_base::linger(true, 0), ignored);
  upstream_.set_option(asio::socket_base::linger(true, 0), ignored);
  client_.close(ignored);
  upstream_.close(ignored);
}

}  // namespace svcproxy::userspace
