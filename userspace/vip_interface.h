// The interface that makes service addresses local so the userspace proxy
// can listen on them without any nftables rule: `svcproxy0`, owned entirely
// by svcproxy, holding every ClusterIP, external IP and LB IP as a /32
// (IPv4) or /128 (IPv6, nodad) address.
//
// The device is a `dummy` when the kernel has CONFIG_DUMMY; otherwise an
// empty `bridge` (no ports) is created instead: it holds addresses just as
// well, since local delivery depends only on the local routing table. The
// kind chosen is reported by kind().
//
// Speaks rtnetlink directly (libmnl): RTM_NEWLINK/DELLINK, RTM_GETADDR dump,
// RTM_NEWADDR/DELADDR. Acts on the calling thread's network namespace.
#pragma once

#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/ip.h"

struct mnl_socket;

namespace svcproxy::userspace {

inline constexpr const char* kVipInterfaceName = "svcproxy0";

class RtnetlinkError : public std::runtime_error {
 public:
  RtnetlinkError(const std::string& what, int error) : std::runtime_error(what), error_(error) {}
  int error() const { return error_; }  // errno (positive)

 private:
  int error_;
};

class VipInterface {
 public:
  explicit VipInterface(std::string name = kVipInterfaceName);
  ~VipInterface();
  VipInterface(const VipInterface&) = delete;
  VipInterface& operator=(const VipInterface&) = delete;

  // Creates the interface (dummy, else bridge) if absent and sets it up.
  // Idempotent; an existing interface of that name is adopted.
  void ensure();
  // Makes the interface carry exactly `addresses`: adds the missing ones,
  // deletes the others. Returns the number of changes. Calls ensure().
  size_t set_addresses(const std::vector<model::IPAddress>& addresses);
  // The addresses the interface carries now (sorted).
  std::vector<model::IPAddress> addresses();
  // Deletes the interface (and with it its addresses). false: there was none.
  bool remove();

  const std::string& name() const { return name_; }
  // "dummy" or "bridge" once ensure() created or found it; empty before.
  const std::string& kind() const { return kind_; }
  int index() const { return index_; }

 private:
  struct SocketDeleter {
    void operator()(mnl_socket* s) const;
  };
  // Sends one request and reads its ack; returns 0 or the kernel's errno.
  int request(void* message, const char* what_for);
  bool create(const char* kind);
  void change_address(bool add, const model::IPAddress& ip);
  int lookup_index() const;

  std::string name_;
  std::string kind_;
  int index_ = 0;
  std::unique_ptr<mnl_socket, SocketDeleter> socket_;
  unsigned port_id_ = 0;
  unsigned seq_ = 0;
};

// Removes `name` if it exists in this network namespace; never throws.
// For `svcproxy cleanup`. Returns true if an interface was deleted.
bool remove_vip_interface(const std::string& name = kVipInterfaceName) noexcept;

}  // namespace svcproxy::userspace
