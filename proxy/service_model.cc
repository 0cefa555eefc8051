#include "proxy/service_model.h"

namespace svcproxy::proxy {

namespace {

std::string skip_line(const model::SkipReason& s) { return "skipped " + s.object.str() + ": " + s.reason; }

}  // namespace

void ServiceModel::erase(const model::ObjectRef& service) {
  const auto it = services_.find(service);
  if (it == services_.end()) return;
  no_local_ -= it->second.no_local;
  if (it->second.health_check) health_checks_changed_ = true;
  with_skips_.erase(service);
  with_health_check_.erase(service);
  services_.erase(it);
}

void ServiceModel::set(const model::ObjectRef& service, std::vector<model::ServicePortState> ports,
                       std::vector<std::string> skipped) {
  erase(service);
  if (ports.empty() && skipped.empty()) return;
  Entry entry;
  entry.no_local = count_no_local_endpoints(ports);
  for (const auto& p : ports) entry.health_check = entry.health_check || p.health_check_node_port != 0;
  entry.ports = std::move(ports);
  entry.skipped = std::move(skipped);
  no_local_ += entry.no_local;
  if (!entry.skipped.empty()) with_skips_.insert(service);
  if (entry.health_check) {
    with_health_check_.insert(service);
    health_checks_changed_ = true;
  }
  services_.insert_or_assign(service, std::move(entry));
}

void ServiceModel::rebuild(const model::ClusterState& cluster, const model::NodeConfig& node) {
  services_.clear();
  with_skips_.clear();
  with_health_check_.clear();
  no_local_ = {};
  health_checks_changed_ = true;
  auto state = model::build_proxy_state(cluster, node);
  // Ports are sorted by name, so each service's are together; a skip reason
  // names its service (the store holds no duplicates to report).
  std::map<model::ObjectRef, std::vector<std::string>> skipped;
  for (const auto& s : state.skipped) skipped[s.object].push_back(skip_line(s));
  auto it = state.ports.begin();
  while (it != state.ports.end()) {
    const model::ObjectRef service = it->name.service;
    auto end = it;
    while (end != state.ports.end() && end->name.service == service) ++end;
    std::vector<std::string> lines;
    if (const auto s = skipped.find(service); s != skipped.end()) lines = std::move(s->second), skipped.erase(s);
    set(service, {std::make_move_iterator(it), std::make_move_iterator(end)}, std::move(lines));
    it = end;
  }
  for (auto& [service, lines] : skipped) set(service, {}, std::move(lines));
}

std::vector<model::ServicePortState> ServiceModel::recompute(const watch::Store& store,
                                                             const std::set<model::ObjectRef>& services,
                                                             const model::NodeConfig& node) {
  std::vector<model::ServicePortState> changed;
  for (const auto& ref : services) {
    auto objects = store.service_objects(ref);
    if (!objects.service) {
      erase(ref);
      continue;
    }
    auto state = model::build_service_state(*objects.service, objects.slices, node);
    std::vector<std::string> lines;
    for (const auto& s : state.skipped) lines.push_back(skip_line(s));
    changed.insert(changed.end(), state.ports.begin(), state.ports.end());
    set(ref, std::move(state.ports), std::move(lines));
  }
  return changed;
}

std::vector<model::ServicePortState> ServiceModel::all_ports() const {
  std::vector<model::ServicePortState> out;
  for (const auto& [ref, entry] : services_) out.insert(out.end(), entry.ports.begin(), entry.ports.end());
  return out;
}

std::vector<std::string> ServiceModel::skip_warnings() const {
  std::vector<std::string> out;
  for (const auto& ref : with_skips_) {
    const auto& lines = services_.at(ref).skipped;
    out.insert(out.end(), lines.begin(), lines.end());
  }
  return out;
}

std::optional<std::map<uint16_t, HealthCheckService>> ServiceModel::take_health_check_services() {
  if (!health_checks_changed_) return std::nullopt;
  health_checks_changed_ = false;
  // In namespace/name order, as health_check_services over every port.
  std::vector<model::ServicePortState> ports;
  for (const auto& ref : with_health_check_) {
    const auto& p = services_.at(ref).ports;
    ports.insert(ports.end(), p.begin(), p.end());
  }
  return health_check_services(ports);
}

}  // namespace svcproxy::proxy
