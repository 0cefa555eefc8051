#include "dataplane/drift_check.h"

#include <malloc.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "dataplane/drift.h"
#include "dataplane/netlink_decode.h"
#include "dataplane/netlink_socket.h"

namespace svcproxy::dataplane {
namespace {

using Clock = std::chrono::steady_clock;

std::chrono::microseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
}

size_t element_count(const ir::Ruleset& ruleset) {
  size_t n = 0;
  for (const auto& t : ruleset.tables)
    for (const auto& s : t.sets) n += s.elements.size();
  return n;
}

}  // namespace

DriftCheck::DriftCheck(ReadKernel read_kernel) : read_kernel_(std::move(read_kernel)) {
  ready_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (ready_fd_ < 0) throw std::runtime_error(std::string("drift check: eventfd: ") + std::strerror(errno));
  thread_ = std::jthread([this](std::stop_token stop) { run(stop); });
}

DriftCheck::~DriftCheck() {
  thread_.request_stop();
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  close(ready_fd_);
}

bool DriftCheck::start(Snapshot snapshot) {
  {
    std::lock_guard lock(mutex_);
    if (busy_) return false;
    busy_ = true;
    request_ = std::move(snapshot);
  }
  wake_.notify_one();
  return true;
}

bool DriftCheck::busy() const {
  std::lock_guard lock(mutex_);
  return busy_;
}

std::optional<DriftCheck::Result> DriftCheck::take_result() {
  std::lock_guard lock(mutex_);
  if (!result_) return std::nullopt;
  uint64_t count = 0;
  [[maybe_unused]] auto n = read(ready_fd_, &count, sizeof count);
  busy_ = false;
  return std::exchange(result_, std::nullopt);
}

void DriftCheck::run(std::stop_token stop) {
  // The check is never urgent; the event thread is. On 2 cores a check at
  // full weight took the event thread's p50 latency from 0.1 to 9 ms
  // (bench/drift_bench.cc): nice 19 gives it the CPU only when the event
  // thread leaves it idle (the kernel's side of the dump runs in this
  // thread's context, so it yields too). Per thread: Linux applies
  // setpriority(PRIO_PROCESS) to a thread id.
  setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
  for (;;) {
    Snapshot snapshot;
    {
      std::unique_lock lock(mutex_);
      if (!wake_.wait(lock, stop, [&] { return request_.has_value(); })) return;
      snapshot = std::move(*request_);
      request_.reset();
    }
    Result result = check(snapshot, stop);
    snapshot = {};  // drop this thread's reference to the ports before the trim
    // The readback and the compiled copy are transient (hundreds of MiB at
    // 100k services × 10 endpoints): give them back to the system, or the
    // daemon's resident size would keep the peak of every check. Only this
    // thread's arena holds them.
    malloc_trim(0);
    if (stop.stop_requested()) return;
    {
      std::lock_guard lock(mutex_);
      result_ = std::move(result);
    }
    const uint64_t one = 1;
    [[maybe_unused]] auto n = write(ready_fd_, &one, sizeof one);
  }
}

DriftCheck::Result DriftCheck::check(const Snapshot& snapshot, const std::stop_token& stop) {
  Result result;
  try {
    auto start = Clock::now();
    Readback kernel = read_kernel_();
    result.readback = since(start);
    result.raced = kernel.raced;
    result.kernel_elements = element_count(kernel.ruleset);
    if (stop.stop_requested()) return result;
    start = Clock::now();
    std::vector<model::ServicePortState> ports;
    for (const auto& service : snapshot.services) ports.insert(ports.end(), service->begin(), service->end());
    ir::Ruleset expected = compile(ports, snapshot.node).ruleset;
    result.compile = since(start);
    if (stop.stop_requested()) return result;
    start = Clock::now();
    result.repair = drift_repair(std::move(kernel.ruleset), std::move(expected));
    if (kernel.raced) distrust_missing_chains(result.repair);
    result.compare = since(start);
  } catch (const DecodeError& e) {
    // The tables hold something svcproxy never writes (a rule of another
    // program): no partial repair can say what to remove; a full sync
    // replaces the tables.
    result.repair = {};
    result.repair.needs_full_sync = true;
    result.error = e.what();
  } catch (const std::exception& e) {
    result.repair = {};
    result.error = e.what();
  }
  return result;
}

DriftCheck::ReadKernel netlink_readback() {
  auto socket = std::make_shared<std::unique_ptr<NetlinkSocket>>();
  return [socket]() {
    if (!*socket) *socket = std::make_unique<NetlinkSocket>();
    std::vector<TableRef> tables;
    for (auto family : {model::IPFamily::V4, model::IPFamily::V6}) tables.push_back({family, names::kTable});
    DriftCheck::Readback readback;
    try {
      readback.ruleset = read_tables_racy(**socket, tables, &readback.raced);
    } catch (const DecodeError&) {
      // A raced dump can pair a rule with a set it did not read (an
      // affinity map added meanwhile): only a consistent read tells a
      // foreign object from a race. It throws DecodeError again, or
      // NetlinkError if commits keep racing it (the next check reads again).
      readback.ruleset = read_tables(**socket, tables);
      readback.raced = false;
    }
    return readback;
  };
}

}  // namespace svcproxy::dataplane
