#include "userspace/vip_interface.h"

#include <libmnl/libmnl.h>
#include <net/if.h>
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>

namespace svcproxy::userspace {
namespace {

int family_of(const model::IPAddress& ip) { return ip.family == model::IPFamily::V4 ? AF_INET : AF_INET6; }

// The kernel's refusal of a change; EPERM is about this process, so say what
// it lacks (rtnetlink wants CAP_NET_ADMIN in the network namespace).
std::string refusal(int err) {
  return std::string(std::strerror(err)) + (err == EPERM ? " (svcproxy needs CAP_NET_ADMIN)" : "");
}

}  // namespace

void VipInterface::SocketDeleter::operator()(mnl_socket* s) const { mnl_socket_close(s); }

VipInterface::VipInterface(std::string name) : name_(std::move(name)) {
  if (name_.empty() || name_.size() >= IFNAMSIZ) throw std::invalid_argument("vip interface: bad name \"" + name_ + "\"");
  socket_.reset(mnl_socket_open(NETLINK_ROUTE));
  if (!socket_) throw RtnetlinkError(std::string("vip interface: rtnetlink socket: ") + std::strerror(errno), errno);
  if (mnl_socket_bind(socket_.get(), 0, MNL_SOCKET_AUTOPID) < 0)
    throw RtnetlinkError(std::string("vip interface: rtnetlink bind: ") + std::strerror(errno), errno);
  port_id_ = mnl_socket_get_portid(socket_.get());
  seq_ = static_cast<unsigned>(time(nullptr));
}

VipInterface::~VipInterface() = default;

int VipInterface::lookup_index() const { return static_cast<int>(if_nametoindex(name_.c_str())); }

int VipInterface::request(void* message, const char* what_for) {
  auto* nlh = static_cast<nlmsghdr*>(message);
  nlh->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  nlh->nlmsg_seq = ++seq_;
  if (mnl_socket_sendto(socket_.get(), nlh, nlh->nlmsg_len) < 0)
    throw RtnetlinkError(std::string("vip interface: ") + what_for + ": send: " + std::strerror(errno), errno);
  char buf[MNL_SOCKET_BUFFER_SIZE];
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(socket_.get(), buf, sizeof buf);
    if (n < 0) throw RtnetlinkError(std::string("vip interface: ") + what_for + ": recv: " + std::strerror(errno), errno);
    const int rc = mnl_cb_run(buf, static_cast<size_t>(n), seq_, port_id_, nullptr, nullptr);
    if (rc == MNL_CB_ERROR) return errno;
    if (rc == MNL_CB_STOP) return 0;
  }
}

bool VipInterface::create(const char* kind) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_NEWLINK;
  nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_flags = IFF_UP;
  ifm->ifi_change = IFF_UP;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name_.c_str());
  nlattr* linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, kind);
  mnl_attr_nest_end(nlh, linkinfo);
  const int err = request(nlh, "create link");
  if (err == 0 || err == EEXIST) {
    kind_ = kind;
    return true;
  }
  // An unknown link kind: EOPNOTSUPP (no module), sometimes ENOENT/EINVAL.
  if (err == EOPNOTSUPP || err == ENOENT || err == EINVAL) return false;
  throw RtnetlinkError("vip interface: create " + name_ + " type " + kind + ": " + refusal(err), err);
}

void VipInterface::ensure() {
  index_ = lookup_index();
  if (index_ == 0) {
    if (!create("dummy") && !create("bridge"))
      throw RtnetlinkError("vip interface: cannot create " + name_ + ": the kernel has neither dummy nor bridge links",
                           EOPNOTSUPP);
    index_ = lookup_index();
    if (index_ == 0) throw RtnetlinkError("vip interface: " + name_ + " vanished after creation", ENODEV);
  } else if (kind_.empty()) {
    kind_ = "existing";
  }
  // Up (the create request already asked; an adopted one may be down).
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_NEWLINK;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = index_;
  ifm->ifi_flags = IFF_UP;
  ifm->ifi_change = IFF_UP;
  if (const int err = request(nlh, "set link up"); err != 0)
    throw RtnetlinkError("vip interface: set " + name_ + " up: " + refusal(err), err);
}

std::vector<model::IPAddress> VipInterface::addresses() {
  if (index_ == 0) index_ = lookup_index();
  std::vector<model::IPAddress> out;
  if (index_ == 0) return out;
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_GETADDR;
  nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  nlh->nlmsg_seq = ++seq_;
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = AF_UNSPEC;
  if (mnl_socket_sendto(socket_.get(), nlh, nlh->nlmsg_len) < 0)
    throw RtnetlinkError(std::string("vip interface: address dump: ") + std::strerror(errno), errno);
  struct Ctx {
    int index;
    std::vector<model::IPAddress>* out;
  } ctx{index_, &out};
  auto cb = [](const nlmsghdr* msg, void* data) -> int {
    auto* c = static_cast<Ctx*>(data);
    const auto* a = static_cast<const ifaddrmsg*>(mnl_nlmsg_get_payload(msg));
    if (static_cast<int>(a->ifa_index) != c->index) return MNL_CB_OK;
    const nlattr* local = nullptr;
    const nlattr* address = nullptr;
    for (auto* attr = static_cast<const nlattr*>(mnl_nlmsg_get_payload_offset(msg, sizeof(ifaddrmsg)));
         mnl_attr_ok(attr, static_cast<int>(static_cast<const char*>(mnl_nlmsg_get_payload_tail(msg)) -
                                            reinterpret_cast<const char*>(attr)));
         attr = mnl_attr_next(attr)) {
      if (mnl_attr_get_type(attr) == IFA_LOCAL) local = attr;
      if (mnl_attr_get_type(attr) == IFA_ADDRESS) address = attr;
    }
    const nlattr* use = local ? local : address;
    if (!use) return MNL_CB_OK;
    model::IPAddress ip;
    ip.family = a->ifa_family == AF_INET ? model::IPFamily::V4 : model::IPFamily::V6;
    const size_t len = mnl_attr_get_payload_len(use);
    if (a->ifa_family != AF_INET && a->ifa_family != AF_INET6) return MNL_CB_OK;
    if (len != ip.size()) return MNL_CB_OK;
    std::memcpy(ip.bytes.data(), mnl_attr_get_payload(use), len);
    // The kernel's own IPv6 link-local address (fe80::/10) is not ours.
    if (ip.family == model::IPFamily::V6 && ip.bytes[0] == 0xfe && (ip.bytes[1] & 0xc0) == 0x80) return MNL_CB_OK;
    c->out->push_back(ip);
    return MNL_CB_OK;
  };
  for (;;) {
    const ssize_t n = mnl_socket_recvfrom(socket_.get(), buf, sizeof buf);
    if (n < 0) throw RtnetlinkError(std::string("vip interface: address dump: ") + std::strerror(errno), errno);
    const int rc = mnl_cb_run(buf, static_cast<size_t>(n), seq_, port_id_, cb, &ctx);
    if (rc == MNL_CB_ERROR)
      throw RtnetlinkError(std::string("vip interface: address dump: ") + std::strerror(errno), errno);
    if (rc == MNL_CB_STOP) break;
  }
  std::sort(out.begin(), out.end());
  return out;
}

void VipInterface::change_address(bool add, const model::IPAddress& ip) {
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = add ? RTM_NEWADDR : RTM_DELADDR;
  if (add) nlh->nlmsg_flags = NLM_F_CREATE | NLM_F_REPLACE;
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = static_cast<uint8_t>(family_of(ip));
  ifa->ifa_prefixlen = ip.family == model::IPFamily::V4 ? 32 : 128;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = static_cast<unsigned>(index_);
  if (ip.family == model::IPFamily::V6) ifa->ifa_flags = IFA_F_NODAD;
  mnl_attr_put(nlh, IFA_LOCAL, ip.size(), ip.bytes.data());
  mnl_attr_put(nlh, IFA_ADDRESS, ip.size(), ip.bytes.data());
  if (ip.family == model::IPFamily::V6) mnl_attr_put_u32(nlh, IFA_FLAGS, IFA_F_NODAD);
  const int err = request(nlh, add ? "add address" : "delete address");
  if (err == 0 || (!add && err == EADDRNOTAVAIL)) return;
  throw RtnetlinkError("vip interface: " + std::string(add ? "add " : "delete ") + ip.str() + (add ? " to " : " from ") +
                           name_ + ": " + refusal(err),
                       err);
}

size_t VipInterface::set_addresses(const std::vector<model::IPAddress>& wanted_in) {
  ensure();
  auto wanted = wanted_in;
  std::sort(wanted.begin(), wanted.end());
  wanted.erase(std::unique(wanted.begin(), wanted.end()), wanted.end());
  const auto present = addresses();
  std::vector<model::IPAddress> add, del;
  std::set_difference(wanted.begin(), wanted.end(), present.begin(), present.end(), std::back_inserter(add));
  std::set_difference(present.begin(), present.end(), wanted.begin(), wanted.end(), std::back_inserter(del));
  for (const auto& ip : del) change_address(false, ip);
  for (const auto& ip : add) change_address(true, ip);
  return add.size() + del.size();
}

bool VipInterface::remove() {
  index_ = lookup_index();
  if (index_ == 0) return false;
  char buf[MNL_SOCKET_BUFFER_SIZE];
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf);
  nlh->nlmsg_type = RTM_DELLINK;
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifm->ifi_family = AF_UNSPEC;
  ifm->ifi_index = index_;
  const int err = request(nlh, "delete link");
  index_ = 0;
  kind_.clear();
  if (err == 0) return true;
  if (err == ENODEV) return false;
  throw RtnetlinkError("vip interface: delete " + name_ + ": " + std::strerror(err), err);
}

bool remove_vip_interface(const std::string& name) noexcept {
  try {
    VipInterface vip(name);
    return vip.remove();
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace svcproxy::userspace
