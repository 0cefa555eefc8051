// RulesetCompiler: one TableState per family (dataplane/compile/, where
// each part of a table's state has a file of its own) behind compile.h.
#include "dataplane/compile.h"

#include <algorithm>
#include <map>
#include <set>

#include "dataplane/compile/table_state.h"

namespace svcproxy::dataplane {

using detail::sanitize;
using detail::TableState;
using model::IPFamily;
using model::ServicePortState;

std::string service_port_id(const model::ServicePortName& name) {
  // FNV-1a 64 over the full name (family included), base32: short, stable,
  // and unique enough to keep readable names apart after truncation.
  const std::string key = name.str() + "/" + std::string(model::to_string(name.family));
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  std::string hash;
  for (int i = 0; i < 8; ++i) {
    hash.push_back(kAlphabet[h & 31]);
    h >>= 5;
  }
  std::string readable = sanitize(name.str());
  // Keep chain names well under the kernel's 256-byte limit even with an
  // endpoint suffix appended.
  if (readable.size() > 160) readable.resize(160);
  return hash + "-" + readable;
}

PortCounterNames port_counter_names(const model::ServicePortName& name) {
  const std::string id = service_port_id(name);
  return {"service-" + id, "rejected-" + id, "dropped-" + id};
}

std::string endpoint_counter_name(const model::EndpointAddress& endpoint, model::Protocol protocol) {
  return "endpoint-" + sanitize(endpoint.ip.str()) + "/" + std::string(model::to_lower(protocol)) + "/" +
         std::to_string(endpoint.port);
}

struct RulesetCompiler::Impl {
  model::NodeConfig node;
  std::vector<TableState> tables;
  explicit Impl(model::NodeConfig n) : node(std::move(n)) {
    tables.emplace_back(IPFamily::V4, node);
    tables.emplace_back(IPFamily::V6, node);
  }

  RulesetDiff apply(const std::set<model::ObjectRef>& services, const std::vector<ServicePortState>& ports,
                    bool record) {
    std::vector<const ServicePortState*> pointers;
    pointers.reserve(ports.size());
    for (const auto& p : ports) pointers.push_back(&p);
    RulesetDiff diff;
    for (auto& table : tables) {
      TableDiff table_diff;
      table_diff.family = table.family();
      table.update(services, pointers, record ? &table_diff : nullptr, diff.needs_full_sync,
                   record ? &diff.stale_udp_flows : nullptr);
      diff.tables.push_back(std::move(table_diff));
    }
    std::sort(diff.stale_udp_flows.begin(), diff.stale_udp_flows.end());
    diff.stale_udp_flows.erase(std::unique(diff.stale_udp_flows.begin(), diff.stale_udp_flows.end()),
                               diff.stale_udp_flows.end());
    return diff;
  }
};

RulesetCompiler::RulesetCompiler(model::NodeConfig node) : impl_(std::make_unique<Impl>(std::move(node))) {}
RulesetCompiler::~RulesetCompiler() = default;
RulesetCompiler::RulesetCompiler(RulesetCompiler&&) noexcept = default;
RulesetCompiler& RulesetCompiler::operator=(RulesetCompiler&&) noexcept = default;

RulesetDiff RulesetCompiler::update(const std::vector<model::ObjectRef>& services,
                                    const std::vector<model::ServicePortState>& ports) {
  return impl_->apply(std::set<model::ObjectRef>(services.begin(), services.end()), ports, true);
}

RulesetDiff RulesetCompiler::replace_all(const std::vector<model::ServicePortState>& ports) {
  // Compared with the ports the tables hold (no second copy of the state is
  // kept for this): a service changed if it is new, gone, or any port differs.
  std::map<model::ObjectRef, std::vector<const ServicePortState*>> wanted;
  for (const auto& p : ports) wanted[p.name.service].push_back(&p);
  std::set<model::ObjectRef> changed;
  std::vector<ServicePortState> changed_ports;
  for (const auto& table : impl_->tables)
    table.each_service([&](const model::ObjectRef& service) {
      if (!wanted.contains(service)) changed.insert(service);
    });
  for (const auto& [service, list] : wanted) {
    size_t known = 0;
    for (const auto& table : impl_->tables) known += table.port_count(service);
    bool same = known == list.size();
    for (size_t i = 0; same && i < list.size(); ++i) {
      const ServicePortState* held = impl_->tables[list[i]->name.family == IPFamily::V4 ? 0 : 1].port(list[i]->name);
      same = held && *held == *list[i];
    }
    if (same) continue;
    changed.insert(service);
    for (const auto* p : list) changed_ports.push_back(*p);
  }
  return impl_->apply(changed, changed_ports, true);
}

ir::Ruleset RulesetCompiler::ruleset() const {
  ir::Ruleset ruleset;
  for (const auto& table : impl_->tables) ruleset.tables.push_back(table.table());
  return ruleset;
}

ir::Ruleset RulesetCompiler::take_ruleset() && {
  ir::Ruleset ruleset;
  for (auto& table : impl_->tables) ruleset.tables.push_back(table.take_table());
  impl_.reset();
  return ruleset;
}

ir::RulesetRef RulesetCompiler::ruleset_ref() const {
  ir::RulesetRef ref;
  ref.storage = std::make_shared<ir::RulesetRef::Storage>();
  for (const auto& table : impl_->tables) table.ref(ref.tables.emplace_back(), *ref.storage);
  return ref;
}

std::vector<std::string> RulesetCompiler::take_warnings() {
  std::vector<std::string> out;
  for (auto& table : impl_->tables) {
    out.insert(out.end(), table.warnings.begin(), table.warnings.end());
    table.warnings.clear();
  }
  return out;
}

const model::NodeConfig& RulesetCompiler::node() const { return impl_->node; }

const ir::Set* RulesetCompiler::set_definition(IPFamily family, const std::string& name) const {
  return impl_->tables[family == IPFamily::V4 ? 0 : 1].definition(name);
}

bool RulesetDiff::empty() const {
  return std::all_of(tables.begin(), tables.end(), [](const auto& t) { return t.empty(); }) && !needs_full_sync &&
         stale_udp_flows.empty();
}

size_t RulesetDiff::operations() const {
  size_t n = 0;
  for (const auto& t : tables) n += t.operations();
  return n;
}

void RulesetCompiler::reset(const std::vector<model::ServicePortState>& ports) {
  model::NodeConfig node = impl_->node;
  impl_ = std::make_unique<Impl>(std::move(node));
  // The state is empty, so there are no held ports of any service to
  // remove: no set of the services is needed (it was ~5 MiB at 50k).
  impl_->apply({}, ports, false);
}

CompileResult compile(const std::vector<model::ServicePortState>& ports, const model::NodeConfig& node) {
  RulesetCompiler compiler(node);
  compiler.reset(ports);
  auto warnings = compiler.take_warnings();
  return CompileResult{std::move(compiler).take_ruleset(), std::move(warnings)};
}

}  // namespace svcproxy::dataplane
