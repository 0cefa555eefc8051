// The expensive half of drift repair, off the event thread. A check reads
// svcproxy's tables back over a netlink socket of its own (at 100k services
// × 10 endpoints that is a dump of ~2M elements, seconds), compiles the
// ruleset the event thread's compiler held when the check started, and
// compares the two (drift.h). The event thread only hands over a snapshot
// and, later, applies the (filtered) repair: O(drift), never O(ruleset).
//
// Why compile again instead of comparing with the live compiler: the
// compiler changes with every event and its state cannot be read from
// another thread, and copying it (ruleset()) is O(ruleset) on the event
// thread — the very stall this replaces. Its input, the per-port states, is
// immutable once built and shared by pointer (per service), and compile() is a pure
// function whose result equals the incremental compiler's state for the
// same ports (tests/dataplane/incremental_test.cc): an exact snapshot for
// the price of a pointer copy. Syncs applied after the snapshot are handled
// by ChangedSinceSnapshot (drift.h).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "dataplane/compile.h"
#include "dataplane/ir.h"
#include "model/node_config.h"
#include "model/service_ports.h"

namespace svcproxy::dataplane {

class DriftCheck {
 public:
  // svcproxy's tables as the kernel holds them, and whether a commit raced
  // the dump (read_tables_racy).
  struct Readback {
    ir::Ruleset ruleset;
    bool raced = false;
  };
  // Called on the check's thread only. The real one is netlink_readback();
  // unit tests pass a fake.
  using ReadKernel = std::function<Readback()>;

  // What the compiler held when the check started: the ports of every
  // service, one immutable vector per service, in the order the compiler
  // was given them (concatenated on the check's thread). Taking one copies
  // pointers, not ports.
  struct Snapshot {
    std::vector<std::shared_ptr<const std::vector<model::ServicePortState>>> services;
    model::NodeConfig node;
  };

  struct Result {
    RulesetDiff repair;  // kernel -> compiled snapshot; not yet filtered
    std::string error;   // the readback or the compile failed: no repair
    std::chrono::microseconds readback{0}, compile{0}, compare{0};
    size_t kernel_elements = 0;  // elements read back
    bool raced = false;          // commits raced the readback
  };

  explicit DriftCheck(ReadKernel read_kernel);
  // Waits for a running check's current step (readback, compile or
  // compare), then stops the thread.
  ~DriftCheck();
  DriftCheck(const DriftCheck&) = delete;
  DriftCheck& operator=(const DriftCheck&) = delete;

  // Starts a check against `snapshot`; false (nothing started) while one
  // runs or its result has not been taken.
  bool start(Snapshot snapshot);
  // A check was started and its result not taken yet.
  bool busy() const;
  // Readable while a result waits (poll it beside the other event sources).
  int fd() const { return ready_fd_; }
  // The finished check's result, once; nullopt while it runs or when idle.
  std::optional<Result> take_result();

 private:
  void run(std::stop_token stop);
  Result check(const Snapshot& snapshot, const std::stop_token& stop);

  ReadKernel read_kernel_;
  int ready_fd_ = -1;  // eventfd
  mutable std::mutex mutex_;
  std::condition_variable_any wake_;
  std::optional<Snapshot> request_;
  std::optional<Result> result_;
  bool busy_ = false;
  std::jthread thread_;  // last: stopped and joined before the members above go
};

// A ReadKernel over a NETLINK_NETFILTER socket of its own (opened at the
// first read, in the caller's network namespace), reading both svcproxy
// tables. Unlike NetlinkBackend::read_back it tolerates commits racing the
// dump: the event thread keeps committing during a multi-second readback,
// and what those commits touched is dropped from the repair anyway.
DriftCheck::ReadKernel netlink_readback();

}  // namespace svcproxy::dataplane
