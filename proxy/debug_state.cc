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
    case model::ServiceType::ClusterIP: return "ClusterIP";
    case model::ServiceType::NodePort: return "NodePort";
    case model::ServiceType::LoadBalancer: return "LoadBalancer";
    case model::ServiceType::ExternalName: return "ExternalName";
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
    case model::LocalDetect::CIDRs: out.detect_local = "ClusterCIDR"; break;
    case model::LocalDetect::BridgeInterface: out.detect_local = "BridgeInterface"; break;
    case model::LocalDetect::InterfaceNamePrefix: out.detect_local = "InterfaceNamePrefix"; break;
  }
  for (const auto& c : node.cluster_cidrs) out.cluster_cidrs.push_back(c.str());
  out.local_interface = node.local_interface;
  return out;
}

namespace {

// "ns/name/tcp[/port]" into the service and port it names.
std::optional<std::pair<model::ObjectRef, std::pair<std::string, std::string>>> split_port_name(std::string_view s) {
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
  return std::make_pair(model::ObjectRef{parts[0], parts[1]},
                        std::make_pair(parts.size() == 4 ? parts[3] : std::string(), protocol));
}

// "<prefix>-<hash>-<rest>": the rest, or empty.
std::string_view after_hash(std::string_view chain, std::string_view prefix) {
  if (!chain.starts_with(prefix)) return {};
  const size_t dash = chain.find('-', prefix.size());
  return dash == std::string_view::npos ? std::string_view{} : chain.substr(dash + 1);
}

}  // namespace

std::vector<DebugService> services_from_ruleset(const dataplane::ir::Ruleset& ruleset) {
  // (service, family, port name) -> port
  std::map<std::tuple<model::ObjectRef, std::string, std::string>, DebugPort> ports;
  auto port_of = [&](std::string_view name, model::IPFamily family) -> DebugPort* {
    const auto split = split_port_name(name);
    if (!split) return nullptr;
    auto& port = ports[{split->first, family_name(family), std::string(name)}];
    port.name = std::string(name);
    port.port = split->second.first;
    port.protocol = split->second.second;
    port.family = family_name(family);
    return &port;
  };
  for (const auto& table : ruleset.tables) {
    for (const auto& chain : table.chains) {
      if (const auto name = after_hash(chain.name, "svc-"); !name.empty()) port_of(name, table.family);
      const auto rest = after_hash(chain.name, "endpoint-");
      const size_t sep = rest.find("__");
      const size_t slash = rest.rfind('/');
      if (rest.empty() || sep == std::string_view::npos || slash == std::string_view::npos || slash < sep) continue;
      auto* port = port_of(rest.substr(0, sep), table.family);
      const auto ip = model::IPAddress::parse(std::string(rest.substr(sep + 2, slash - sep - 2)));
      unsigned number = 0;
      for (const char c : rest.substr(slash + 1)) number = number * 10 + static_cast<unsigned>(c - '0');
      if (!port || !ip || number > 65535) continue;
      DebugEndpoint e;
      e.address = model::format_endpoint(*ip, static_cast<uint16_t>(number));
      e.ready = e.serving = e.used = true;
      port->endpoints.push_back(std::move(e));
    }
    // The ClusterIP and port each service chain is reached by.
    if (const auto* map = table.find_set("service-ips")) {
      for (const auto& element : map->elements) {
        if (!element.verdict || element.key.size() != 3) continue;
        const auto name = after_hash(element.verdict->chain, "svc-");
        const auto address = element.key[0];
        const auto service_port = element.key[2];
        const auto* ip = std::get_if<model::IPAddress>(&address);
        const auto* number = std::get_if<uint16_t>(&service_port);
        if (name.empty() || !ip || !number) continue;
        if (auto* port = port_of(name, table.family)) {
          port->cluster_ip = ip->str();
          port->number = *number;
        }
      }
    }
  }
  std::vector<DebugService> out;
  for (auto& [key, port] : ports) {
    const auto& ref = std::get<0>(key);
    if (out.empty() || out.back().ns != ref.ns || out.back().name != ref.name)
      out.push_back({ref.ns, ref.name, {}, {}});
    out.back().ports.push_back(std::move(port));
  }
  return out;
}

std::vector<DebugService> filter_services(std::vector<DebugService> services, std::string_view filter) {
  if (filter.empty()) return services;
  auto has = [&](const std::string& text) { return text.find(filter) != std::string::npos; };
  std::erase_if(services, [&](const DebugService& s) {
    if (has(s.ns + "/" + s.name)) return false;
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
  return {{"address", e.address}, {"ready", e.ready},     {"serving", e.serving}, {"terminating", e.terminating},
          {"zone", e.zone},       {"node", e.node},       {"local", e.local},     {"used", e.used},
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
  json::object out{{"origin", state.origin},
                   {"time", state.time},
                   {"node", node_json(state.node)},
                   {"services", std::move(services)},
                   {"syncs", std::move(syncs)},
                   {"watch", watch_json(state.watch)},
                   {"counters", state.counters},
                   {"countersError", state.counters_error}};
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
  return {n.str("name"),          n.str("zone"),  n.strings("ips"),      n.strings("nodePortAddresses"),
          n.str("detectLocal"),   n.strings("clusterCIDRs"), n.str("localInterface"), n.str("mode"),
          n.num("syncPeriodMs"), n.num("minSyncPeriodMs")};
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
