// Helpers for the netlink backend's tests: run a check in a fresh network
// namespace of its own (a forked child that unshares CLONE_NEWNET, so the
// host's ruleset is never touched), run a shell command there, and take a
// raw snapshot of every kernel object of a table to compare two namespaces.
#pragma once

#include <libmnl/libmnl.h>
#include <libnftnl/set.h>
#include <libnftnl/table.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/netlink_socket.h"

namespace svcproxy::dataplane::testing {

struct NetnsResult {
  bool ok = false;
  std::string output;  // what the check returned, or why it failed
  // The child's resource use (benchmarks read these).
  long maxrss_kib = 0;
  double user_seconds = 0, sys_seconds = 0;
};

// Forks; the child enters a new, empty network namespace and runs `check`,
// whose return value (or exception text) comes back through a pipe. The
// namespace dies with the child. Nothing runs in the caller's namespace.
inline NetnsResult run_in_fresh_netns(const std::function<std::string()>& check) {
  int fds[2];
  if (pipe(fds) != 0) return {false, "pipe failed"};
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) return {false, "fork failed"};
  if (pid == 0) {
    close(fds[0]);
    std::string out;
    int status = 1;
    if (unshare(CLONE_NEWNET) != 0) {
      out = "unshare(CLONE_NEWNET) failed";
    } else {
      try {
        out = check();
        status = 0;
      } catch (const std::exception& e) {
        out = e.what();
      } catch (...) {
        out = "unknown exception";
      }
    }
    size_t done = 0;
    while (done < out.size()) {
      const ssize_t n = write(fds[1], out.data() + done, out.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    close(fds[1]);
    _exit(status);
  }
  close(fds[1]);
  NetnsResult result;
  char buf[65536];
  for (;;) {
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    result.output.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  int status = 0;
  rusage usage{};
  wait4(pid, &status, 0, &usage);
  result.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (WIFSIGNALED(status)) result.output += "child killed by signal " + std::to_string(WTERMSIG(status));
  result.maxrss_kib = usage.ru_maxrss;
  result.user_seconds = static_cast<double>(usage.ru_utime.tv_sec) + static_cast<double>(usage.ru_utime.tv_usec) / 1e6;
  result.sys_seconds = static_cast<double>(usage.ru_stime.tv_sec) + static_cast<double>(usage.ru_stime.tv_usec) / 1e6;
  return result;
}

// Runs a shell command (in the caller's namespace: call it inside a check)
// and returns its stdout; throws if it fails.
inline std::string shell(const std::string& command, const std::string& input = {}) {
  std::string full = command;
  std::string path;
  if (!input.empty()) {
    char tmpl[] = "/tmp/svcproxy-netlink-test-XXXXXX";
    const int fd = mkstemp(tmpl);
    if (fd < 0) throw std::runtime_error("mkstemp failed");
    path = tmpl;
    size_t done = 0;
    while (done < input.size()) {
      const ssize_t n = write(fd, input.data() + done, input.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    close(fd);
    full += " < " + path;
  }
  FILE* pipe = popen((full + " 2>&1").c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed: " + command);
  std::string out;
  std::array<char, 65536> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  const int status = pclose(pipe);
  if (!path.empty()) unlink(path.c_str());
  if (status != 0) throw std::runtime_error(command + " failed: " + out);
  return out;
}

namespace detail {

inline std::string hex(const void* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    const auto b = static_cast<const unsigned char*>(p)[i];
    s.push_back(kDigits[b >> 4]);
    s.push_back(kDigits[b & 15]);
  }
  return s;
}

// "attr=hex attr=hex ..." of a message's top-level attributes, minus those
// listed (packet counters). Handles stay: objects created in nft's order get
// nft's handles.
inline std::string attrs(const nlmsghdr* nlh, const std::vector<uint16_t>& skip) {
  std::string out;
  const auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)));
  const char* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  while (mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr)))) {
    const uint16_t type = mnl_attr_get_type(attr);
    if (std::find(skip.begin(), skip.end(), type) == skip.end()) {
      out += " " + std::to_string(type) + "=" + hex(mnl_attr_get_payload(attr), mnl_attr_get_payload_len(attr));
    }
    attr = mnl_attr_next(attr);
  }
  return out;
}

inline std::string str_attr(const nlmsghdr* nlh, uint16_t want) {
  const auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(nlh, sizeof(nfgenmsg)));
  const char* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  while (mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr)))) {
    if (mnl_attr_get_type(attr) == want) return mnl_attr_get_str(attr);
    attr = mnl_attr_next(attr);
  }
  return {};
}

}  // namespace detail

// Every kernel object of table `family name`, attribute by attribute (raw
// netlink payloads), one line each; set elements sorted (hash order is
// per-set random). Two namespaces holding the same objects give the same text.
// Handles count up across replacements of a table: leave them out to compare
// a table with its own replacement.
inline std::string kernel_snapshot(uint16_t family, const std::string& table, bool with_handles = true) {
  using detail::attrs;
  auto skip = [&](std::vector<uint16_t> always, uint16_t handle) {
    if (!with_handles) always.push_back(handle);
    return always;
  };
  NetlinkSocket socket;
  std::string out;
  char buf[MNL_SOCKET_BUFFER_SIZE];

  nlmsghdr* nlh = socket.build_request(buf, NFT_MSG_GETTABLE, family, NLM_F_ACK);
  mnl_attr_put_strz(nlh, NFTA_TABLE_NAME, table.c_str());
  socket.request(nlh, [&](const nlmsghdr* m) { out += "table" + attrs(m, skip({}, NFTA_TABLE_HANDLE)) + "\n"; });

  nlh = socket.build_request(buf, NFT_MSG_GETCHAIN, family, NLM_F_DUMP);
  socket.request(nlh, [&](const nlmsghdr* m) {
    if (detail::str_attr(m, NFTA_CHAIN_TABLE) == table) {
      out += "chain" + attrs(m, skip({NFTA_CHAIN_COUNTERS}, NFTA_CHAIN_HANDLE)) + "\n";
    }
  });

  std::vector<std::string> sets;
  nlh = socket.build_request(buf, NFT_MSG_GETSET, family, NLM_F_DUMP);
  mnl_attr_put_strz(nlh, NFTA_SET_TABLE, table.c_str());
  socket.request(nlh, [&](const nlmsghdr* m) {
    sets.push_back(detail::str_attr(m, NFTA_SET_NAME));
    out += "set" + attrs(m, skip({}, NFTA_SET_HANDLE)) + "\n";
  });
  for (const auto& set : sets) {
    std::vector<std::string> elements;
    nlh = socket.build_request(buf, NFT_MSG_GETSETELEM, family, NLM_F_DUMP);
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_TABLE, table.c_str());
    mnl_attr_put_strz(nlh, NFTA_SET_ELEM_LIST_SET, set.c_str());
    socket.request(nlh, [&](const nlmsghdr* m) {
      // One line per element nest inside NFTA_SET_ELEM_LIST_ELEMENTS.
      const auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(m, sizeof(nfgenmsg)));
      const char* tail = static_cast<const char*>(mnl_nlmsg_get_payload_tail(m));
      while (mnl_attr_ok(attr, static_cast<int>(tail - reinterpret_cast<const char*>(attr)))) {
        if (mnl_attr_get_type(attr) == NFTA_SET_ELEM_LIST_ELEMENTS) {
          const char* end = reinterpret_cast<const char*>(attr) + attr->nla_len;
          const auto* e = static_cast<const nlattr*>(mnl_attr_get_payload(attr));
          while (mnl_attr_ok(e, static_cast<int>(end - reinterpret_cast<const char*>(e)))) {
            elements.push_back("  element " + set + " " +
                               detail::hex(mnl_attr_get_payload(e), mnl_attr_get_payload_len(e)) + "\n");
            e = mnl_attr_next(e);
          }
        }
        attr = mnl_attr_next(attr);
      }
    });
    std::sort(elements.begin(), elements.end());
    for (const auto& e : elements) out += e;
  }

  nlh = socket.build_request(buf, NFT_MSG_GETRULE, family, NLM_F_DUMP);
  mnl_attr_put_strz(nlh, NFTA_RULE_TABLE, table.c_str());
  socket.request(nlh, [&](const nlmsghdr* m) {
    out += "rule" + attrs(m, skip({}, NFTA_RULE_HANDLE)) + "\n";
  });

  // Named objects (counters), with their values: both sides count nothing.
  nlh = socket.build_request(buf, NFT_MSG_GETOBJ, family, NLM_F_DUMP);
  mnl_attr_put_strz(nlh, NFTA_OBJ_TABLE, table.c_str());
  socket.request(nlh, [&](const nlmsghdr* m) { out += "object" + attrs(m, skip({}, NFTA_OBJ_HANDLE)) + "\n"; });
  return out;
}

}  // namespace svcproxy::dataplane::testing
