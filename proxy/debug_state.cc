#include "proxy/debug_state.h"

#include <time.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>
#include <map>
#include <set>
#include <tuple>

#include "model/service_ports.h"

namespace svcproxy::proxy {

namespace json = boost::json;

namespace {

std::string_view type_name(model::ServiceType type) {
  switch (type) {
    case model::ServiceType::ClusterIP:
      return "ClusterIP";
    case model::ServiceType::NodePort:
      return "NodePort";
    case model::ServiceType::LoadBalancer:
      return "LoadBalancer";
    case model::ServiceType::ExternalName:
      return "ExternalName";
  }
  return "";
}

std::string family_name(model::IPFamily family) { return family == model::IPFamily::V6 ? "IPv6" : "IPv4"; }

const ServicePortTraffic* find_traffic(const TrafficSnapshot* traffic, const DebugService& service,
                                       const DebugPort& port) {
  if (!traffic) return nullptr;
  for (const auto& t : traffic->ports)
    if (t.ns == service.ns && t.service == service.name && t.port == port.port && t.protocol == port.protocol)
      return &t;
  return nullptr;
}

// The endpoints of one service port, from the slices of its family.
std::vector<DebugEndpoint> port_endpoints(const model::ServicePortState& state,
                                          const std::vector<const model::EndpointSlice*>& slices,
                                          const std::string& node_name) {
  std::set<model::EndpointAddress> used(state.cluster_endpoints.begin(), state.cluster_endpoints.end());
  used.insert(state.local_endpoints.begin(), state.local_endpoints.end());
  std::map<std::string, DebugEndpoint> out;  // by address: one row per endpoint
  const auto type = state.name.family == model::IPFamily::V6 ? model::AddressType::IPv6 : model::AddressType::IPv4;
  for (const auto* slice : slices) {
    if (slice->address_type != type) continue;
    for (const auto& p : slice->ports) {
      if (p.name != state.name.port_name || p.protocol != state.name.protocol || !p.port) continue;
      for (const auto& e : slice->endpoints) {
        if (!e.address) continue;
        DebugEndpoint d;
        d.address = model::format_endpoint(*e.address, *p.port);
        d.ready = e.conditions.ready;
        d.serving = e.conditions.serving;
        d.terminating = e.conditions.terminating;
        d.zone = e.zone;
        d.node = e.node_name;
        d.local = !e.node_name.empty() && e.node_name == node_name;
        d.used = used.contains({*e.address, *p.port});
        out.emplace(d.address, std::move(d));
      }
    }
  }
  std::vector<DebugEndpoint> list;
  list.reserve(out.size());
  for (auto& [address, e] : out) list.push_back(std::move(e));
  return list;
}

void add_traffic(DebugPort& port, const ServicePortTraffic* t) {
  if (!t) return;
  port.accepted = t->accepted;
  port.rejected = t->rejected;
  port.dropped = t->dropped;
  for (auto& e : port.endpoints) {
    for (const auto& et : t->endpoints)
      if (et.endpoint == e.address) e.traffic = et.count;
  }
}

}  // namespace

std::string format_time(std::chrono::system_clock::time_point t) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const time_t seconds = static_cast<time_t>(ms / 1000);
  tm utc{};
  gmtime_r(&seconds, &utc);
  char buffer[96];
  std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, static_cast<int>(ms % 1000));
  return buffer;
}

std::vector<DebugService> collect_services(const model::ClusterState& cluster, const model::NodeConfig& node,
                                           const TrafficSnapshot* traffic) {
  const auto state = model::build_proxy_state(cluster, node);
  std::map<model::ObjectRef, std::vector<const model::EndpointSlice*>> slices;
  for (const auto& s : cluster.endpoint_slices) slices[{s.ref.ns, s.service_name}].push_back(&s);
  std::map<model::ObjectRef, const model::Service*> by_ref;
  for (const auto& s : cluster.services) by_ref[s.ref] = &s;

  std::vector<DebugService> out;
  for (const auto& p : state.ports) {
    const auto& ref = p.name.service;
    if (out.empty() || out.back().ns != ref.ns || out.back().name != ref.name) {
      DebugService service{ref.ns, ref.name, {}, {}};
      if (const auto it = by_ref.find(ref); it != by_ref.end()) service.type = type_name(it->second->type);
      out.push_back(std::move(service));
    }
    DebugPort port;
    port.name = p.name.str();
    port.port = p.name.port_name.empty() ? std::to_string(p.port) : p.name.port_name;
    port.protocol = model::to_string(p.name.protocol);
    port.family = family_name(p.name.family);
    port.cluster_ip = p.cluster_ip.str();
    port.number = p.port;
    port.node_port = p.node_port;
    port.endpoints = port_endpoints(p, slices[ref], node.node_name);
    add_traffic(port, find_traffic(traffic, out.back(), port));
    out.back().ports.push_back(std::move(port));
  }
  return out;
}

DebugNode describe_node(const model::NodeConfig& node) {
  DebugNode out;
  out.name = node.node_name;
  out.zone = node.zone;
  for (const auto& ip : node.node_ips) out.ips.push_back(ip.str());
  for (const auto& ip : node.nodeport_ips) out.nodeport_addresses.push_back(ip.str());
  if (node.nodeport_all_local_v4) out.nodeport_addresses.emplace_back("0.0.0.0/0");
  if (node.nodeport_all_local_v6) out.nodeport_addresses.emplace_back("::/0");
  switch (node.local_detect) {
    case model::LocalDetect::CIDRs:
      out.detect_local = "ClusterCIDR";
      break;
    case model::LocalDetect::BridgeInterface:
      out.detect_local = "BridgeInterface";
      break;
    case model::LocalDetect::InterfaceNamePrefix:
      out.detect_local = "InterfaceNamePrefix";
      break;
  }
  for (const auto& c : node.cluster_cidrs) out.cluster_cidrs.push_back(c.str());
  out.local_interface = node.local_interface;
  return out;
}

namespace {

// "ns/name/tcp[/port]" into the service, its port's name and protocol.
struct NamedPort {
  model::ObjectRef service;
  std::string port;
  std::string protocol;
};
std::optional<NamedPort> split_port_name(std::string_view s) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (;;) {
    const size_t slash = s.find('/', start);
    parts.emplace_back(s.substr(start, slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (parts.size() < 3 || parts.size() > 4) return std::nullopt;
  std::string protocol = parts[2];
  std::transform(protocol.begin(), protocol.end(), protocol.begin(), ::toupper);
  return NamedPort{{parts[0], parts[1]}, parts.size() == 4 ? parts[3] : std::string(), protocol};
}

// "<prefix>-<hash>-<rest>": the rest, or empty.
std::string_view after_hash(std::string_view chain, std::string_view prefix) {
  if (!chain.starts_with(prefix)) return {};
  const size_t dash = chain.find('-', prefix.size());
  return dash == std::string_view::npos ? std::string_view{} : chain.substr(dash + 1);
}

// A service port as the kernel finds it: by destination address (or, for a
// NodePort, by port alone), protocol and port.
struct KernelKey {
  std::string family;
  std::string address;  // empty: a NodePort
  std::string protocol;
  uint16_t port = 0;
  auto operator<=>(const KernelKey&) const = default;
};

class KernelServices {
 public:
  // The address maps (dnat-N, dnat-nodeport-N): key -> endpoint per slot.
  void read_dnat_map(const dataplane::ir::Set& map, const std::string& family) {
    if (map.data.empty() || map.name.find("shortcut") != std::string::npos) return;
    for (const auto& element : map.elements) {
      if (element.key.size() < 3 || element.data.size() != 2) continue;
      const auto first = element.key[0];
      const bool by_address = std::holds_alternative<model::IPAddress>(first);
      const auto protocol = element.key[by_address ? 1 : 0];
      const auto port = element.key[by_address ? 2 : 1];
      const auto ip = element.data[0];
      const auto target = element.data[1];
      if (!std::holds_alternative<model::Protocol>(protocol) || !std::holds_alternative<uint16_t>(port) ||
          !std::holds_alternative<model::IPAddress>(ip) || !std::holds_alternative<uint16_t>(target))
        continue;
      const KernelKey key{family, by_address ? std::get<model::IPAddress>(first).str() : "",
                          std::string(model::to_string(std::get<model::Protocol>(protocol))), std::get<uint16_t>(port)};
      add_endpoint(port_at(key), model::format_endpoint(std::get<model::IPAddress>(ip), std::get<uint16_t>(target)));
    }
  }
  // Ports whose addresses are in no-endpoints (rejected).
  void read_no_endpoints(const dataplane::ir::Set& set, const std::string& family) {
    for (const auto& element : set.elements) {
      if (element.key.size() != 3) continue;
      const auto ip = element.key[0];
      const auto protocol = element.key[1];
      const auto port = element.key[2];
      if (!std::holds_alternative<model::IPAddress>(ip) || !std::holds_alternative<model::Protocol>(protocol) ||
          !std::holds_alternative<uint16_t>(port))
        continue;
      port_at({family, std::get<model::IPAddress>(ip).str(),
               std::string(model::to_string(std::get<model::Protocol>(protocol))), std::get<uint16_t>(port)});
    }
  }
  // Session affinity: svc-<hash>-<port name> chains, reached from the
  // service-ips map, with endpoint-<hash>-<port name>__<ip>/<port> chains.
  void read_affinity(const dataplane::ir::Table& table, const std::string& family) {
    std::map<std::string, KernelKey, std::less<>> by_chain;
    if (const auto* map = table.find_set("service-ips")) {
      for (const auto& element : map->elements) {
        if (!element.verdict || element.key.size() != 3) continue;
        const auto ip = element.key[0];
        const auto protocol = element.key[1];
        const auto port = element.key[2];
        if (!std::holds_alternative<model::IPAddress>(ip) || !std::holds_alternative<model::Protocol>(protocol) ||
            !std::holds_alternative<uint16_t>(port))
          continue;
        const KernelKey key{family, std::get<model::IPAddress>(ip).str(),
                            std::string(model::to_string(std::get<model::Protocol>(protocol))),
                            std::get<uint16_t>(port)};
        const auto name = after_hash(element.verdict->chain, "svc-");
        if (!name.empty()) by_chain.emplace(std::string(name), key);
      }
    }
    for (const auto& chain : table.chains) {
      const auto rest = after_hash(chain.name, "endpoint-");
      const size_t sep = rest.find("__");
      const size_t slash = rest.rfind('/');
      if (rest.empty() || sep == std::string_view::npos || slash == std::string_view::npos || slash < sep) continue;
      const auto it = by_chain.find(rest.substr(0, sep));
      const auto ip = model::IPAddress::parse(std::string(rest.substr(sep + 2, slash - sep - 2)));
      unsigned number = 0;
      for (const char c : rest.substr(slash + 1)) number = number * 10 + static_cast<unsigned>(c - '0');
      if (it == by_chain.end() || !ip || number > 65535) continue;
      add_endpoint(port_at(it->second), model::format_endpoint(*ip, static_cast<uint16_t>(number)));
    }
    for (const auto& [name, key] : by_chain) {
      if (const auto named = split_port_name(name)) names_[key] = *named;
    }
  }

  std::vector<DebugService> services() {
    std::map<model::ObjectRef, std::vector<DebugPort>> grouped;
    for (auto& [key, port] : ports_) {
      model::ObjectRef service{"", key.address.empty() ? "NodePorts" : key.address};
      if (const auto it = names_.find(key); it != names_.end()) {
        service = it->second.service;
        port.name = name_of(it->second, key);
        port.port = it->second.port.empty() ? std::to_string(key.port) : it->second.port;
      }
      grouped[service].push_back(std::move(port));
    }
    std::vector<DebugService> out;
    out.reserve(grouped.size());
    for (auto& [ref, ports] : grouped) out.push_back({ref.ns, ref.name, "", std::move(ports)});
    return out;
  }

 private:
  static std::string name_of(const NamedPort& n, const KernelKey& key) {
    std::string protocol = key.protocol;
    std::transform(protocol.begin(), protocol.end(), protocol.begin(), ::tolower);
    return n.service.str() + "/" + protocol + (n.port.empty() ? "" : "/" + n.port);
  }
  DebugPort& port_at(const KernelKey& key) {
    auto [it, added] = ports_.try_emplace(key);
    if (added) {
      auto& p = it->second;
      p.port = std::to_string(key.port);
      p.protocol = key.protocol;
      p.family = key.family;
      p.cluster_ip = key.address;
      p.number = key.address.empty() ? 0 : key.port;
      p.node_port = key.address.empty() ? key.port : 0;
      p.name = (key.address.empty() ? std::string("*") : key.address) + "/" + key.protocol + "/" + p.port;
    }
    return it->second;
  }
  static void add_endpoint(DebugPort& port, std::string address) {
    for (const auto& e : port.endpoints)
      if (e.address == address) return;
    DebugEndpoint e;
    e.address = std::move(address);
    e.ready = e.serving = e.used = true;  // only usable endpoints are programmed
    port.endpoints.push_back(std::move(e));
  }

  std::map<KernelKey, DebugPort> ports_;
  std::map<KernelKey, NamedPort> names_;
};

}  // namespace

std::vector<DebugService> services_from_ruleset(const dataplane::ir::Ruleset& ruleset) {
  KernelServices found;
  for (const auto& table : ruleset.tables) {
    const std::string family = family_name(table.family);
    for (const auto& set : table.sets) {
      if (set.name.starts_with("dnat-")) found.read_dnat_map(set, family);
      if (set.name == "no-endpoints") found.read_no_endpoints(set, family);
    }
    found.read_affinity(table, family);
  }
  return found.services();
}

std::vector<DebugService> filter_services(std::vector<DebugService> services, std::string_view filter) {
  if (filter.empty()) return services;
  auto has = [&](const std::string& text) { return text.find(filter) != std::string::npos; };
  std::erase_if(services, [&](const DebugService& s) {
    if (has(s.ns.empty() ? s.name : s.ns + "/" + s.name)) return false;
    for (const auto& p : s.ports) {
      if (has(p.name) || has(p.cluster_ip)) return false;
      for (const auto& e : p.endpoints)
        if (has(e.address) || has(e.node) || has(e.zone)) return false;
    }
    return true;
  });
  return services;
}

// ---- JSON ------------------------------------------------------------------

namespace {

json::value count_json(const std::optional<PacketCount>& c) {
  if (!c) return nullptr;
  return json::object{{"packets", c->packets}, {"bytes", c->bytes}};
}

json::array strings_json(const std::vector<std::string>& list) {
  json::array out;
  for (const auto& s : list) out.emplace_back(s);
  return out;
}

json::object endpoint_json(const DebugEndpoint& e) {
  return {{"address", e.address},
          {"ready", e.ready},
          {"serving", e.serving},
          {"terminating", e.terminating},
          {"zone", e.zone},
          {"node", e.node},
          {"local", e.local},
          {"used", e.used},
          {"traffic", count_json(e.traffic)}};
}

json::object port_json(const DebugPort& p) {
  json::array endpoints;
  for (const auto& e : p.endpoints) endpoints.emplace_back(endpoint_json(e));
  return {{"name", p.name},
          {"port", p.port},
          {"protocol", p.protocol},
          {"family", p.family},
          {"clusterIP", p.cluster_ip},
          {"number", p.number},
          {"nodePort", p.node_port},
          {"accepted", count_json(p.accepted)},
          {"rejected", count_json(p.rejected)},
          {"dropped", count_json(p.dropped)},
          {"endpoints", std::move(endpoints)}};
}

json::object node_json(const DebugNode& n) {
  return {{"name", n.name},
          {"zone", n.zone},
          {"ips", strings_json(n.ips)},
          {"nodePortAddresses", strings_json(n.nodeport_addresses)},
          {"detectLocal", n.detect_local},
          {"clusterCIDRs", strings_json(n.cluster_cidrs)},
          {"localInterface", n.local_interface},
          {"mode", n.mode},
          {"syncPeriodMs", n.sync_period_ms},
          {"minSyncPeriodMs", n.min_sync_period_ms}};
}

json::object watch_json(const DebugWatch& w) {
  json::array resources;
  for (const auto& r : w.resources)
    resources.emplace_back(json::object{{"resource", r.resource},
                                        {"resourceVersion", r.resource_version},
                                        {"lists", r.lists},
                                        {"failures", r.failures},
                                        {"lastError", r.last_error}});
  return {{"source", w.source},
          {"relists", w.relists},
          {"errors", w.errors},
          {"problem", w.problem},
          {"resources", std::move(resources)}};
}

json::object sync_json(const SyncRecord& s) {
  return {{"time", format_time(s.time)},
          {"timeUnixMs", std::chrono::duration_cast<std::chrono::milliseconds>(s.time.time_since_epoch()).count()},
          {"reason", s.reason},
          {"mode", s.mode},
          {"operations", s.operations},
          {"durationUs", s.duration.count()},
          {"error", s.error}};
}

}  // namespace

std::string to_json(const DebugState& state) {
  json::array services;
  for (const auto& s : state.services) {
    json::array ports;
    for (const auto& p : s.ports) ports.emplace_back(port_json(p));
    services.emplace_back(
        json::object{{"namespace", s.ns}, {"name", s.name}, {"type", s.type}, {"ports", std::move(ports)}});
  }
  json::array syncs;
  for (const auto& s : state.syncs) syncs.emplace_back(sync_json(s));
  json::object out{{"origin", state.origin},        {"time", state.time},
                   {"node", node_json(state.node)}, {"services", std::move(services)},
                   {"syncs", std::move(syncs)},     {"watch", watch_json(state.watch)},
                   {"counters", state.counters},    {"countersError", state.counters_error}};
  return json::serialize(out) + "\n";
}

namespace {

// Readers that tolerate missing fields (an older or newer daemon).
struct Reader {
  const json::object& o;
  std::string str(std::string_view key) const {
    const auto* v = o.if_contains(key);
    return v && v->is_string() ? std::string(v->get_string()) : std::string();
  }
  uint64_t num(std::string_view key) const {
    const auto* v = o.if_contains(key);
    if (!v) return 0;
    if (v->is_uint64()) return v->get_uint64();
    if (v->is_int64()) return static_cast<uint64_t>(std::max<int64_t>(0, v->get_int64()));
    return 0;
  }
  bool flag(std::string_view key) const {
    const auto* v = o.if_contains(key);
    return v && v->is_bool() && v->get_bool();
  }
  std::optional<PacketCount> count(std::string_view key) const {
    const auto* v = o.if_contains(key);
    if (!v || !v->is_object()) return std::nullopt;
    const Reader r{v->get_object()};
    return PacketCount{r.num("packets"), r.num("bytes")};
  }
  std::vector<std::string> strings(std::string_view key) const {
    std::vector<std::string> out;
    if (const auto* v = o.if_contains(key); v && v->is_array())
      for (const auto& s : v->get_array())
        if (s.is_string()) out.emplace_back(s.get_string());
    return out;
  }
  template <typename F>
  void each(std::string_view key, F&& f) const {
    if (const auto* v = o.if_contains(key); v && v->is_array())
      for (const auto& item : v->get_array())
        if (item.is_object()) f(Reader{item.get_object()});
  }
  Reader sub(std::string_view key) const {
    static const json::object empty;
    const auto* v = o.if_contains(key);
    return Reader{v && v->is_object() ? v->get_object() : empty};
  }
};

DebugPort read_port(const Reader& r) {
  DebugPort p;
  p.name = r.str("name");
  p.port = r.str("port");
  p.protocol = r.str("protocol");
  p.family = r.str("family");
  p.cluster_ip = r.str("clusterIP");
  p.number = static_cast<uint16_t>(r.num("number"));
  p.node_port = static_cast<uint16_t>(r.num("nodePort"));
  p.accepted = r.count("accepted");
  p.rejected = r.count("rejected");
  p.dropped = r.count("dropped");
  r.each("endpoints", [&](const Reader& e) {
    p.endpoints.push_back({e.str("address"), e.flag("ready"), e.flag("serving"), e.flag("terminating"), e.str("zone"),
                           e.str("node"), e.flag("local"), e.flag("used"), e.count("traffic")});
  });
  return p;
}

DebugNode read_node(const Reader& n) {
  return {n.str("name"),           n.str("zone"),
          n.strings("ips"),        n.strings("nodePortAddresses"),
          n.str("detectLocal"),    n.strings("clusterCIDRs"),
          n.str("localInterface"), n.str("mode"),
          n.num("syncPeriodMs"),   n.num("minSyncPeriodMs")};
}

}  // namespace

base::Result<DebugState> debug_state_from_json(std::string_view text) {
  boost::system::error_code ec;
  const json::value doc = json::parse(text, ec);
  if (ec) return base::Error{"not JSON: " + ec.message()};
  if (!doc.is_object()) return base::Error{"not a JSON object"};
  const Reader r{doc.get_object()};
  DebugState out;
  out.origin = r.str("origin");
  out.time = r.str("time");
  out.node = read_node(r.sub("node"));
  r.each("services", [&](const Reader& s) {
    DebugService service{s.str("namespace"), s.str("name"), s.str("type"), {}};
    s.each("ports", [&](const Reader& p) { service.ports.push_back(read_port(p)); });
    out.services.push_back(std::move(service));
  });
  r.each("syncs", [&](const Reader& s) {
    SyncRecord sync;
    sync.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(s.num("timeUnixMs")));
    sync.reason = s.str("reason");
    sync.mode = s.str("mode");
    sync.operations = s.num("operations");
    sync.duration = std::chrono::microseconds(s.num("durationUs"));
    sync.error = s.str("error");
    out.syncs.push_back(std::move(sync));
  });
  const Reader w = r.sub("watch");
  out.watch = {w.str("source"), w.num("relists"), w.num("errors"), w.str("problem"), {}};
  w.each("resources", [&](const Reader& x) {
    out.watch.resources.push_back(
        {x.str("resource"), x.str("resourceVersion"), x.num("lists"), x.num("failures"), x.str("lastError")});
  });
  out.counters = r.flag("counters");
  out.counters_error = r.str("countersError");
  return out;
}

}  // namespace svcproxy::proxy
