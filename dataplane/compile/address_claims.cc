#include "dataplane/compile/address_claims.h"

#include <algorithm>

namespace svcproxy::dataplane::detail {

std::vector<ClaimKey> AddressClaims::wants(const ServicePortState& sp) {
  std::vector<ClaimKey> keys;
  keys.push_back({false, sp.cluster_ip, sp.name.protocol, sp.port});
  for (const auto& ip : sp.external_ips) keys.push_back({false, ip, sp.name.protocol, sp.port});
  for (const auto& ip : sp.load_balancer_ips) keys.push_back({false, ip, sp.name.protocol, sp.port});
  if (sp.node_port) keys.push_back({true, IPAddress{}, sp.name.protocol, sp.node_port});
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  return keys;
}

std::optional<model::ServicePortName> AddressClaims::owner(const ClaimKey& key) const {
  auto it = claims_.find(key);
  if (it == claims_.end() || it->second.empty()) return std::nullopt;
  return *it->second.begin();
}

void AddressClaims::remember_owner(const ClaimKey& key) {
  if (owner_before_.contains(key)) return;
  owner_before_[key] = owner(key);
}

void AddressClaims::claim(const ServicePortState& sp, bool track) {
  for (const auto& key : wants(sp)) {
    if (track) remember_owner(key);
    claims_[key].insert(sp.name);
  }
}

void AddressClaims::release(const ServicePortState& held) {
  for (const auto& key : wants(held)) {
    remember_owner(key);
    auto& owners = claims_[key];
    owners.erase(held.name);
    if (owners.empty()) claims_.erase(key);
  }
}

std::vector<model::ServicePortName> AddressClaims::take_owner_changes() {
  std::vector<model::ServicePortName> changed;
  for (const auto& [key, before] : owner_before_) {
    const auto after = owner(key);
    if (before == after) continue;
    for (const auto& w : {before, after})
      if (w) changed.push_back(*w);
  }
  owner_before_.clear();
  return changed;
}

bool AddressClaims::wins(const ClaimKey& key, const ServicePortState& sp, std::vector<std::string>& warnings) const {
  auto it = claims_.find(key);
  if (it == claims_.end() || it->second.empty()) return false;
  const auto& winner = *it->second.begin();
  if (winner == sp.name) return true;
  const std::string proto(model::to_lower(sp.name.protocol));
  if (key.node_port) {
    warnings.push_back("service port " + sp.name.str() + ": nodePort " + std::to_string(key.port) + "/" + proto +
                       " is already used by " + winner.str() + "; nodePort skipped");
  } else {
    warnings.push_back("service port " + sp.name.str() + ": " + model::format_endpoint(key.ip, key.port) + "/" + proto +
                       " is already served by " + winner.str() + "; address skipped");
  }
  return false;
}

}  // namespace svcproxy::dataplane::detail
