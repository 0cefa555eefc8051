#include "userspace/endpoint_table.h"

#include <algorithm>

namespace svcproxy::userspace {

// ------------------------------------------------------------------ AffinityMap

std::optional<model::EndpointAddress> AffinityMap::lookup(const model::IPAddress& client, Clock::time_point now,
                                                          std::chrono::seconds timeout) {
  std::lock_guard lock(mu_);
  last_timeout_ = timeout;
  auto it = entries_.find(client);
  if (it == entries_.end()) return std::nullopt;
  if (now - it->second.last_used > timeout) {
    entries_.erase(it);
    return std::nullopt;
  }
  it->second.last_used = now;
  return it->second.endpoint;
}

void AffinityMap::record(const model::IPAddress& client, const model::EndpointAddress& endpoint,
                         Clock::time_point now) {
  std::lock_guard lock(mu_);
  record_locked(client, endpoint, now);
}

void AffinityMap::record_locked(const model::IPAddress& client, const model::EndpointAddress& endpoint,
                                Clock::time_point now) {
  entries_[client] = Entry{endpoint, now};
  // Expired entries go in a sweep amortised over inserts, so the map stays
  // bounded by the clients seen within one timeout.
  if (++inserts_since_sweep_ >= 1024 && inserts_since_sweep_ >= entries_.size()) {
    inserts_since_sweep_ = 0;
    std::erase_if(entries_, [&](const auto& kv) { return now - kv.second.last_used > last_timeout_; });
  }
}

void AffinityMap::forget(const model::IPAddress& client) {
  std::lock_guard lock(mu_);
  entries_.erase(client);
}

size_t AffinityMap::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

// ------------------------------------------------------------------ PortTable

const Backend* PortTable::find(const model::EndpointAddress& address) const {
  for (const auto& b : backends)
    if (b.address == address) return &b;
  return nullptr;
}

const Backend* PortTable::pick(const model::IPAddress& client, Clock::time_point now, bool reset_affinity) const {
  if (backends.empty()) return nullptr;
  if (!affinity) return next_in_turn(now);
  if (reset_affinity) affinity->forget(client);
  return affinity->stick(client, now, *affinity_timeout, [&](const model::EndpointAddress* sticky) {
    if (sticky)
      if (const Backend* b = find(*sticky); b && !b->health->ejected(now)) return b;
    return next_in_turn(now);
  });
}

const Backend* PortTable::next_in_turn(Clock::time_point now) const {
  const size_t n = backends.size();
  for (size_t i = 0; i < n; ++i) {
    const Backend& b = backends[cursor.fetch_add(1, std::memory_order_relaxed) % n];
    if (!b.health->ejected(now)) return &b;
  }
  return &backends[cursor.fetch_add(1, std::memory_order_relaxed) % n];
}

bool Route::allows(const model::IPAddress& client) const {
  if (source_ranges.empty()) return true;
  // An IPv4 client on an IPv6 socket arrives as ::ffff:a.b.c.d; callers
  // unmap it before asking.
  return std::any_of(source_ranges.begin(), source_ranges.end(),
                     [&](const model::CIDR& c) { return c.contains(client); });
}

// ------------------------------------------------------------------ ListenKey

std::string ListenKey::str() const {
  return std::string(model::to_lower(protocol)) + ":" + model::format_endpoint(ip, port);
}

size_t ListenKeyHash::operator()(const ListenKey& k) const noexcept {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  auto mix = [&](uint8_t byte) { h = (h ^ byte) * 1099511628211ull; };
  for (size_t i = 0; i < k.ip.size(); ++i) mix(k.ip.bytes[i]);
  mix(static_cast<uint8_t>(k.port >> 8));
  mix(static_cast<uint8_t>(k.port));
  mix(static_cast<uint8_t>(k.protocol));
  return static_cast<size_t>(h);
}

// ------------------------------------------------------------------ RoutesBuilder

std::shared_ptr<const PortTable> RoutesBuilder::table_for(const model::ServicePortState& port, bool external) {
  const std::string key = port.name.str() + (external ? "|external" : "|internal");
  if (auto it = next_tables_.find(key); it != next_tables_.end()) return it->second;
  const auto& endpoints = external ? port.external_endpoints() : port.internal_endpoints();
  const std::optional<std::chrono::seconds> affinity =
      port.affinity_timeout_seconds ? std::optional(std::chrono::seconds(*port.affinity_timeout_seconds))
                                    : std::nullopt;

  std::shared_ptr<const PortTable> previous;
  if (auto it = tables_.find(key); it != tables_.end()) previous = it->second;

  for (const auto& e : endpoints) {
    if (next_health_.count(e)) continue;
    auto h = health_.find(e);
    next_health_[e] = h != health_.end() ? h->second : std::make_shared<EndpointHealth>();
  }

  // Same endpoint set and affinity: keep the table (and its cursor) as is.
  if (previous && previous->affinity_timeout == affinity && previous->backends.size() == endpoints.size() &&
      std::all_of(endpoints.begin(), endpoints.end(), [&](const auto& e) { return previous->find(e) != nullptr; })) {
    next_tables_[key] = previous;
    return previous;
  }

  auto table = std::make_shared<PortTable>();
  table->name = port.name.str() + (external ? " (external)" : " (internal)");
  table->protocol = port.name.protocol;
  for (const auto& e : endpoints) table->backends.push_back(Backend{e, next_health_[e]});
  std::shuffle(table->backends.begin(), table->backends.end(), rng_);
  table->affinity_timeout = affinity;
  if (affinity) table->affinity = previous && previous->affinity ? previous->affinity : std::make_shared<AffinityMap>();
  next_tables_[key] = table;
  return table;
}

std::shared_ptr<const Routes> RoutesBuilder::build(const std::vector<model::ServicePortState>& ports,
                                                   const NodePortAddresses& nodeports,
                                                   std::vector<std::string>* warnings) {
  auto routes = std::make_shared<Routes>();
  next_tables_.clear();
  next_health_.clear();
  auto claim = [&](const ListenKey& key, Route route, const model::ServicePortState& port) {
    auto [it, inserted] = routes->by_listener.emplace(key, std::move(route));
    if (!inserted && warnings)
      warnings->push_back("userspace: " + key.str() + " claimed by " + it->second.table->name + "; ignoring " +
                          port.name.str());
  };
  for (const auto& port : ports) {
    const auto protocol = port.name.protocol;
    if (protocol == model::Protocol::SCTP) {
      if (warnings) warnings->push_back("userspace: " + port.name.str() + ": SCTP is not proxied in userspace");
      continue;
    }
    if (!port.cluster_ip.is_unspecified() && port.port != 0)
      claim({port.cluster_ip, port.port, protocol}, Route{table_for(port, false), {}}, port);
    if (!port.has_external_addresses()) continue;
    auto external = table_for(port, true);
    for (const auto& ip : port.external_ips) claim({ip, port.port, protocol}, Route{external, {}}, port);
    for (const auto& ip : port.load_balancer_ips)
      claim({ip, port.port, protocol}, Route{external, port.load_balancer_source_ranges}, port);
    if (port.node_port != 0) {
      const bool all = port.name.family == model::IPFamily::V4 ? nodeports.all_v4 : nodeports.all_v6;
      if (all) {
        model::IPAddress any;
        any.family = port.name.family;
        claim({any, port.node_port, protocol}, Route{external, {}}, port);
      } else {
        for (const auto& ip : nodeports.ips)
          if (ip.family == port.name.family) claim({ip, port.node_port, protocol}, Route{external, {}}, port);
      }
    }
  }
  tables_.swap(next_tables_);
  health_.swap(next_health_);
  next_tables_.clear();
  next_health_.clear();
  return routes;
}

std::vector<model::IPAddress> RoutesBuilder::service_addresses(const std::vector<model::ServicePortState>& ports) {
  std::vector<model::IPAddress> out;
  for (const auto& p : ports) {
    if (p.name.protocol == model::Protocol::SCTP) continue;
    if (!p.cluster_ip.is_unspecified()) out.push_back(p.cluster_ip);
    out.insert(out.end(), p.external_ips.begin(), p.external_ips.end());
    out.insert(out.end(), p.load_balancer_ips.begin(), p.load_balancer_ips.end());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace svcproxy::userspace
