#include "dataplane/compile/table_state.h"

#include <algorithm>

namespace svcproxy::dataplane::detail {

std::vector<ClaimKey> TableState::wants(const ServicePortState& sp) const {
  std::vector<ClaimKey> keys;
  keys.push_back({false, sp.cluster_ip, sp.name.protocol, sp.port});
  for (const auto& ip : sp.external_ips) keys.push_back({false, ip, sp.name.protocol, sp.port});
  for (const auto& ip : sp.load_balancer_ips) keys.push_back({false, ip, sp.name.protocol, sp.port});
  if (sp.node_port) keys.push_back({true, IPAddress{}, sp.name.protocol, sp.node_port});
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

bool TableState::wins(const ClaimKey& key, const ServicePortState& sp) {
  auto it = claims_.find(key);
  if (it == claims_.end() || it->second.empty()) return false;
  const auto& winner = *it->second.begin();
  if (winner == sp.name) return true;
  const std::string proto(model::to_lower(sp.name.protocol));
  if (key.node_port) {
    warnings.push_back("service port " + sp.name.str() + ": nodePort " + std::to_string(key.port) + "/" + proto +
                       " is already used by " + winner.str() + "; nodePort skipped");
  } else {
    warnings.push_back("service port " + sp.name.str() + ": " + model::format_endpoint(key.ip, key.port) + "/" +
                       proto + " is already served by " + winner.str() + "; address skipped");
  }
  return false;
}

}  // namespace svcproxy::dataplane::detail
