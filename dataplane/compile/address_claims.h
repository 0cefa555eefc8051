// Who owns each key a service port needs exclusively: an address:proto:port
// in the service-ips map, or a proto:NodePort. Two services wanting the same
// key is a conflict the API server prevents but manifests do not; the
// smallest port name wins, deterministically, in full and incremental
// compiles alike. During an update the claims remember each touched key's
// owner before it, so that exactly the ports whose ownership changed are
// recompiled (a port that loses a key, and the one that gains it).
#pragma once

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "dataplane/compile/parts.h"

namespace svcproxy::dataplane::detail {

struct ClaimKey {
  bool node_port = false;
  IPAddress ip;  // zero for NodePorts
  model::Protocol protocol = model::Protocol::TCP;
  uint16_t port = 0;
  auto operator<=>(const ClaimKey&) const = default;
};

class AddressClaims {
 public:
  // The keys a port wants, sorted and unique.
  static std::vector<ClaimKey> wants(const ServicePortState& sp);

  // Registers sp's claims on its keys; track: remember the owners before.
  void claim(const ServicePortState& sp, bool track);
  // Drops the claims of a port that held state `held` (always tracked).
  void release(const ServicePortState& held);
  // The ports that gained or lost a key since tracking began (possibly
  // twice); forgets the owners before.
  std::vector<model::ServicePortName> take_owner_changes();

  // Whether sp owns key; if another port does, a warning naming both.
  bool wins(const ClaimKey& key, const ServicePortState& sp, std::vector<std::string>& warnings) const;

 private:
  std::optional<model::ServicePortName> owner(const ClaimKey& key) const;
  void remember_owner(const ClaimKey& key);

  std::map<ClaimKey, std::set<model::ServicePortName>> claims_;
  std::map<ClaimKey, std::optional<model::ServicePortName>> owner_before_;
};

}  // namespace svcproxy::dataplane::detail
