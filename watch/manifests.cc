// Decoding Kubernetes manifests (kubectl -o yaml|json output) into model
// values. Every field is read through `Field`, which knows its path in the
// object; a field that cannot be used throws FieldError, which the object's
// decoder turns into exactly one Diagnostic while the rest of the stream goes
// on. Nothing here throws to the caller.
#include "watch/manifests.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

namespace svcproxy::watch {
namespace {

using model::AddressType;
using model::CIDR;
using model::IPAddress;
using model::IPFamily;
using model::ObjectRef;
using model::Protocol;
using model::TrafficPolicy;

// A field that cannot be used. Thrown inside one object's decoder, caught by
// Decoder::decode_object and reported; it never leaves this file.
struct FieldError {
  std::string field;    // path relative to the object, e.g. "spec.ports[1].port"
  std::string message;
  int line = -1;        // 0-based line within the parsed document; -1 unknown
};

std::string quote(std::string_view text) {
  constexpr size_t kMax = 64;
  std::string out = "\"";
  for (char c : text.substr(0, kMax)) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  if (text.size() > kMax) out += "...";
  return out + "\"";
}

std::string_view type_name(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Null:
      return "null";
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

std::string join_path(std::string_view base, std::string_view key) {
  if (base.empty()) return std::string(key);
  if (key.empty()) return std::string(base);
  std::string out(base);
  if (key.front() != '[') out += '.';
  out += key;
  return out;
}

// One node of a document together with its field path. Absent keys and YAML
// nulls both read as "not set" (kubectl prints nil slices as `null`); any
// other mismatch between the node and what the reader expects is a FieldError.
class Field {
 public:
  // The object itself: an empty path, so field paths are relative to it.
  static Field object(const YAML::Node& node) { return Field(node, true, "", line_of(node, -1)); }

  // The same node as an object of its own (a List item): paths restart.
  Field as_object() const { return Field(node_, defined_, "", line_); }

  bool exists() const { return defined_; }
  bool present() const { return defined_ && !node_.IsNull(); }
  const std::string& path() const { return path_; }

  [[noreturn]] void fail(std::string message) const {
    throw FieldError{path_, std::move(message), line_};
  }

  // Requires a mapping (an absent one is allowed: every child is then absent).
  Field get(const char* key) const {
    if (!present()) return Field(YAML::Node(), false, join_path(path_, key), line_);
    if (!node_.IsMap()) fail(std::string("expected a mapping, got ") + std::string(type_name(node_)));
    const YAML::Node& map = node_;
    const YAML::Node child = map[key];
    if (!child.IsDefined()) return Field(YAML::Node(), false, join_path(path_, key), line_);
    return Field(child, true, join_path(path_, key), line_of(child, line_));
  }

  // A mapping that must be there, e.g. each element of spec.ports.
  void expect_map() const {
    if (!present() || !node_.IsMap()) {
      fail(std::string("expected a mapping, got ") + std::string(type_name(node_)));
    }
  }

  // Requires a list; absent or null reads as empty.
  std::vector<Field> items() const {
    std::vector<Field> out;
    if (!present()) return out;
    if (!node_.IsSequence()) fail(std::string("expected a list, got ") + std::string(type_name(node_)));
    out.reserve(node_.size());
    size_t index = 0;
    for (const YAML::Node& child : node_) {
      std::string key = "[" + std::to_string(index++) + "]";
      out.push_back(Field(child, true, join_path(path_, key), line_of(child, line_)));
    }
    return out;
  }

  // A scalar as text; absent or null reads as "".
  std::string text() const {
    if (!present()) return "";
    if (!node_.IsScalar()) fail(std::string("expected a string, got ") + std::string(type_name(node_)));
    return node_.Scalar();
  }

  // YAML 1.1 booleans (true/false, yes/no, on/off), as the Kubernetes YAML
  // reader accepts them; absent or null reads as `fallback`.
  bool boolean(bool fallback) const {
    if (!present()) return fallback;
    const std::string value = text();
    bool result = false;
    if (!YAML::convert<bool>::decode(node_, result)) fail("expected true or false, got " + quote(value));
    return result;
  }

  // A decimal integer within [low, high]; absent or null reads as nullopt.
  std::optional<int64_t> integer(int64_t low, int64_t high) const {
    if (!present()) return std::nullopt;
    const std::string value = text();
    int64_t number = 0;
    const char* end = value.data() + value.size();
    const auto [ptr, ec] = std::from_chars(value.data(), end, number);
    if (ec == std::errc::result_out_of_range) {
      fail(quote(value) + " is out of range " + std::to_string(low) + ".." + std::to_string(high));
    }
    if (ec != std::errc() || ptr != end) fail("expected an integer, got " + quote(value));
    if (number < low || number > high) {
      fail(std::to_string(number) + " is out of range " + std::to_string(low) + ".." +
           std::to_string(high));
    }
    return number;
  }

 private:
  Field(YAML::Node node, bool defined, std::string path, int line)
      : node_(std::move(node)), defined_(defined), path_(std::move(path)), line_(line) {}

  static int line_of(const YAML::Node& node, int fallback) {
    if (!node.IsDefined()) return fallback;
    const YAML::Mark mark = node.Mark();
    return mark.is_null() ? fallback : mark.line;
  }

  YAML::Node node_;
  bool defined_ = false;
  std::string path_;
  int line_ = -1;
};

// ---- field readers shared by the kinds ------------------------------------

uint16_t port_number(const Field& field, int64_t low, bool required) {
  const auto value = field.integer(low, 65535);
  if (!value) {
    if (required) field.fail("required");
    return 0;
  }
  return static_cast<uint16_t>(*value);
}

Protocol protocol(const Field& field) {
  const std::string text = field.text();
  if (text.empty()) return Protocol::TCP;
  if (const auto parsed = model::parse_protocol(text)) return *parsed;
  field.fail("unknown protocol " + quote(text) + " (want TCP, UDP or SCTP)");
}

IPAddress ip_address(const Field& field) {
  const std::string text = field.text();
  if (const auto ip = IPAddress::parse(text)) return *ip;
  field.fail(text.empty() ? std::string("required") : "invalid IP address " + quote(text));
}

std::vector<IPAddress> ip_addresses(const Field& list) {
  std::vector<IPAddress> out;
  for (const Field& item : list.items()) out.push_back(ip_address(item));
  return out;
}

CIDR cidr(const Field& field, std::string_view text) {
  if (const auto parsed = CIDR::parse(text)) return *parsed;
  field.fail(text.empty() ? std::string("required") : "invalid CIDR " + quote(text));
}

std::vector<CIDR> cidrs(const Field& list) {
  std::vector<CIDR> out;
  for (const Field& item : list.items()) out.push_back(cidr(item, item.text()));
  return out;
}

TrafficPolicy traffic_policy(const Field& field) {
  const std::string text = field.text();
  // "Global" is the pre-1.22 spelling of Cluster for externalTrafficPolicy.
  if (text.empty() || text == "Cluster" || text == "Global") return TrafficPolicy::Cluster;
  if (text == "Local") return TrafficPolicy::Local;
  field.fail("unknown traffic policy " + quote(text) + " (want Cluster or Local)");
}

std::string_view trim(std::string_view text) {
  constexpr std::string_view kSpace = " \t\r\n";
  const size_t first = text.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return text.substr(first, text.find_last_not_of(kSpace) - first + 1);
}

// metadata.name (required) and, for namespaced kinds, metadata.namespace
// (absent means "default", as kubectl apply would have it).
ObjectRef object_ref(const Field& object, bool namespaced) {
  const Field metadata = object.get("metadata");
  ObjectRef ref;
  ref.name = metadata.get("name").text();
  if (ref.name.empty()) metadata.get("name").fail("required");
  if (namespaced) {
    ref.ns = metadata.get("namespace").text();
    if (ref.ns.empty()) ref.ns = "default";
  }
  return ref;
}

// ---- the kinds -------------------------------------------------------------

model::ServiceType service_type(const Field& field) {
  const std::string text = field.text();
  if (text.empty() || text == "ClusterIP") return model::ServiceType::ClusterIP;
  if (text == "NodePort") return model::ServiceType::NodePort;
  if (text == "LoadBalancer") return model::ServiceType::LoadBalancer;
  if (text == "ExternalName") return model::ServiceType::ExternalName;
  field.fail("unknown service type " + quote(text) +
             " (want ClusterIP, NodePort, LoadBalancer or ExternalName)");
}

model::TargetPort target_port(const Field& field, uint16_t port) {
  const std::string text = field.text();
  if (text.empty()) return {.number = port, .name = ""};
  const bool numeric = std::isdigit(static_cast<unsigned char>(text[0])) ||
                       (text.size() > 1 && (text[0] == '-' || text[0] == '+') &&
                        std::isdigit(static_cast<unsigned char>(text[1])));
  if (numeric) return {.number = port_number(field, 1, true), .name = ""};
  return {.number = 0, .name = text};
}

model::ServicePort service_port(const Field& field) {
  field.expect_map();
  model::ServicePort port;
  port.name = field.get("name").text();
  port.protocol = protocol(field.get("protocol"));
  port.port = port_number(field.get("port"), 1, true);
  port.target_port = target_port(field.get("targetPort"), port.port);
  port.node_port = port_number(field.get("nodePort"), 0, false);
  return port;
}

model::Service decode_service(const Field& object, ObjectRef ref) {
  model::Service service;
  service.ref = std::move(ref);
  const Field metadata = object.get("metadata");
  service.resource_version = metadata.get("resourceVersion").text();
  service.has_service_proxy_name =
      metadata.get("labels").get("service.kubernetes.io/service-proxy-name").exists();

  const Field spec = object.get("spec");
  service.type = service_type(spec.get("type"));

  std::vector<Field> cluster_ips = spec.get("clusterIPs").items();
  if (cluster_ips.empty() && spec.get("clusterIP").present()) cluster_ips.push_back(spec.get("clusterIP"));
  const std::string first_ip = cluster_ips.empty() ? "" : cluster_ips.front().text();
  service.headless = first_ip.empty() || first_ip == "None";
  if (!service.headless) {
    for (const Field& ip : cluster_ips) service.cluster_ips.push_back(ip_address(ip));
  }

  for (const Field& port : spec.get("ports").items()) service.ports.push_back(service_port(port));
  service.external_ips = ip_addresses(spec.get("externalIPs"));

  for (const Field& ingress : object.get("status").get("loadBalancer").get("ingress").items()) {
    ingress.expect_map();
    // ipMode Proxy: the load balancer proxies to the node itself, so
    // kube-proxy must not short-circuit traffic to that IP. Hostname-only
    // entries carry nothing to program.
    if (ingress.get("ipMode").text() == "Proxy" || !ingress.get("ip").present()) continue;
    service.load_balancer_ips.push_back(ip_address(ingress.get("ip")));
  }
  for (const Field& range : spec.get("loadBalancerSourceRanges").items()) {
    service.load_balancer_source_ranges.push_back(cidr(range, trim(range.text())));
  }

  service.external_traffic_policy = traffic_policy(spec.get("externalTrafficPolicy"));
  service.internal_traffic_policy = traffic_policy(spec.get("internalTrafficPolicy"));

  const Field affinity = spec.get("sessionAffinity");
  const std::string affinity_text = affinity.text();
  if (affinity_text == "ClientIP") {
    service.session_affinity_client_ip = true;
  } else if (!affinity_text.empty() && affinity_text != "None") {
    affinity.fail("unknown session affinity " + quote(affinity_text) + " (want None or ClientIP)");
  }
  const Field timeout = spec.get("sessionAffinityConfig").get("clientIP").get("timeoutSeconds");
  service.session_affinity_timeout_seconds =
      static_cast<uint32_t>(timeout.integer(1, 86400).value_or(10800));
  service.health_check_node_port = port_number(spec.get("healthCheckNodePort"), 0, false);
  return service;
}

AddressType address_type(const Field& field) {
  const std::string text = field.text();
  if (text == "IPv4") return AddressType::IPv4;
  if (text == "IPv6") return AddressType::IPv6;
  if (text == "FQDN") return AddressType::FQDN;
  field.fail(text.empty() ? std::string("required")
                          : "unknown address type " + quote(text) + " (want IPv4, IPv6 or FQDN)");
}

std::vector<std::string> hint_names(const Field& list) {
  std::vector<std::string> names;
  for (const Field& hint : list.items()) names.push_back(hint.get("name").text());
  return names;
}

model::Endpoint endpoint(const Field& field, AddressType type) {
  field.expect_map();
  model::Endpoint endpoint;
  const Field addresses = field.get("addresses");
  const std::vector<Field> items = addresses.items();
  if (type != AddressType::FQDN) {
    if (items.empty()) addresses.fail("required: at least one address");
    const IPAddress ip = ip_address(items.front());
    const IPFamily want = type == AddressType::IPv4 ? IPFamily::V4 : IPFamily::V6;
    if (ip.family != want) {
      items.front().fail(quote(items.front().text()) + " is not an " +
                         std::string(model::to_string(want)) + " address (addressType " +
                         std::string(model::to_string(want)) + ")");
    }
    endpoint.address = ip;
  }
  const Field conditions = field.get("conditions");
  endpoint.conditions.ready = conditions.get("ready").boolean(true);
  endpoint.conditions.serving = conditions.get("serving").boolean(true);
  endpoint.conditions.terminating = conditions.get("terminating").boolean(false);
  endpoint.node_name = field.get("nodeName").text();
  endpoint.zone = field.get("zone").text();
  const Field hints = field.get("hints");
  endpoint.hint_zones = hint_names(hints.get("forZones"));
  endpoint.hint_nodes = hint_names(hints.get("forNodes"));
  return endpoint;
}

model::EndpointPort endpoint_port(const Field& field) {
  field.expect_map();
  model::EndpointPort port;
  port.name = field.get("name").text();
  port.protocol = protocol(field.get("protocol"));
  if (const auto number = field.get("port").integer(1, 65535)) {
    port.port = static_cast<uint16_t>(*number);
  }
  return port;
}

model::EndpointSlice decode_endpoint_slice(const Field& object, ObjectRef ref) {
  model::EndpointSlice slice;
  slice.ref = std::move(ref);
  const Field metadata = object.get("metadata");
  slice.resource_version = metadata.get("resourceVersion").text();
  slice.service_name = metadata.get("labels").get("kubernetes.io/service-name").text();
  slice.last_change_trigger_time =
      metadata.get("annotations").get("endpoints.kubernetes.io/last-change-trigger-time").text();
  slice.address_type = address_type(object.get("addressType"));
  for (const Field& item : object.get("endpoints").items()) {
    slice.endpoints.push_back(endpoint(item, slice.address_type));
  }
  for (const Field& item : object.get("ports").items()) slice.ports.push_back(endpoint_port(item));
  return slice;
}

model::Node decode_node(const Field& object, ObjectRef ref) {
  model::Node node;
  node.name = std::move(ref.name);
  const Field metadata = object.get("metadata");
  node.resource_version = metadata.get("resourceVersion").text();
  node.zone = metadata.get("labels").get("topology.kubernetes.io/zone").text();
  node.being_deleted = metadata.get("deletionTimestamp").present();

  const Field spec = object.get("spec");
  if (spec.get("podCIDRs").present()) {
    node.pod_cidrs = cidrs(spec.get("podCIDRs"));
  } else if (spec.get("podCIDR").present()) {
    node.pod_cidrs.push_back(cidr(spec.get("podCIDR"), spec.get("podCIDR").text()));
  }
  for (const Field& taint : spec.get("taints").items()) {
    taint.expect_map();
    node.taints.push_back({.key = taint.get("key").text(), .effect = taint.get("effect").text()});
  }
  for (const Field& address : object.get("status").get("addresses").items()) {
    address.expect_map();
    if (address.get("type").text() == "InternalIP") {
      node.internal_ips.push_back(ip_address(address.get("address")));
    }
  }
  return node;
}

model::ServiceCIDR decode_service_cidr(const Field& object, ObjectRef ref) {
  model::ServiceCIDR service_cidr;
  service_cidr.name = std::move(ref.name);
  service_cidr.cidrs = cidrs(object.get("spec").get("cidrs"));
  return service_cidr;
}

enum class KindId { Service, EndpointSlice, Node, ServiceCIDR };

struct KindSpec {
  KindId id;
  std::string_view kind;
  std::string_view group;  // "" for the core API
  std::array<std::string_view, 2> versions;  // unused slots empty
  bool namespaced;
};

constexpr std::array<KindSpec, 4> kKinds{{
    {KindId::Service, "Service", "", {"v1", ""}, true},
    {KindId::EndpointSlice, "EndpointSlice", "discovery.k8s.io", {"v1", ""}, true},
    {KindId::Node, "Node", "", {"v1", ""}, false},
    // v1beta1 (Kubernetes 1.31-1.32) has the same spec.cidrs.
    {KindId::ServiceCIDR, "ServiceCIDR", "networking.k8s.io", {"v1", "v1beta1"}, false},
}};

const KindSpec* find_kind(std::string_view kind) {
  for (const KindSpec& spec : kKinds) {
    if (spec.kind == kind) return &spec;
  }
  return nullptr;
}

enum class ApiMatch { Yes, OtherGroup, OtherVersion };

ApiMatch match_api_version(const KindSpec& spec, std::string_view api_version) {
  if (api_version.empty()) return ApiMatch::Yes;  // an item of a typed list, or hand-written
  const size_t slash = api_version.find('/');
  const std::string_view group = slash == std::string_view::npos ? "" : api_version.substr(0, slash);
  const std::string_view version =
      slash == std::string_view::npos ? api_version : api_version.substr(slash + 1);
  if (group != spec.group) return ApiMatch::OtherGroup;
  for (const std::string_view known : spec.versions) {
    if (!known.empty() && known == version) return ApiMatch::Yes;
  }
  return ApiMatch::OtherVersion;
}

// ---- the stream -------------------------------------------------------------

struct Chunk {
  std::string_view text;
  int first_line = 0;  // 0-based line of `text` in the stream
};

bool is_marker(std::string_view line, std::string_view marker) {
  if (line.substr(0, 3) != marker) return false;
  return line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r' || line[3] == '\n';
}

// Whether a chunk holds anything but blank lines, comments and bare markers.
bool has_content(std::string_view chunk) {
  while (!chunk.empty()) {
    const size_t newline = chunk.find('\n');
    std::string_view line = chunk.substr(0, newline);
    chunk = newline == std::string_view::npos ? std::string_view() : chunk.substr(newline + 1);
    if (is_marker(line, "---") || is_marker(line, "...")) line.remove_prefix(3);
    line = trim(line);
    if (!line.empty() && line.front() != '#' && line.front() != '%') return true;
  }
  return false;
}

// Splits a stream at YAML document markers ("---" starts a document, "..."
// ends one; both only at column 0, as YAML requires), so that each document is
// parsed on its own and one malformed document cannot take the others down.
std::vector<Chunk> split_documents(std::string_view text) {
  std::vector<Chunk> chunks;
  size_t begin = 0;
  int begin_line = 0;
  int line_number = 0;
  auto close = [&](size_t end, size_t next, int next_line) {
    if (end > begin) chunks.push_back({text.substr(begin, end - begin), begin_line});
    begin = next;
    begin_line = next_line;
  };
  for (size_t pos = 0; pos < text.size(); ++line_number) {
    const size_t newline = text.find('\n', pos);
    const size_t line_end = newline == std::string_view::npos ? text.size() : newline + 1;
    const std::string_view line = text.substr(pos, line_end - pos);
    if (is_marker(line, "---")) {
      close(pos, pos, line_number);
    } else if (is_marker(line, "...")) {
      close(line_end, line_end, line_number + 1);
    }
    pos = line_end;
  }
  close(text.size(), text.size(), line_number);
  return chunks;
}

class Decoder {
 public:
  Decoder(const std::string& origin, DecodeResult& out) : origin_(origin), out_(out) {
    for (const auto& s : out.state.services) seen_.insert({KindId::Service, s.ref});
    for (const auto& s : out.state.endpoint_slices) seen_.insert({KindId::EndpointSlice, s.ref});
    for (const auto& n : out.state.nodes) seen_.insert({KindId::Node, {"", n.name}});
    for (const auto& c : out.state.service_cidrs) seen_.insert({KindId::ServiceCIDR, {"", c.name}});
  }

  void decode_stream(std::string_view text) {
    if (text.starts_with("\xFF\xFE") || text.starts_with("\xFE\xFF")) {
      report("", "", "", "the file is UTF-16; re-encode it as UTF-8");
      return;
    }
    if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // UTF-8 byte order mark
    for (const Chunk& chunk : split_documents(text)) {
      if (!has_content(chunk.text)) continue;
      first_line_ = chunk.first_line;
      std::vector<YAML::Node> documents;
      try {
        documents = YAML::LoadAll(std::string(chunk.text));
      } catch (const YAML::Exception& e) {
        ++document_;
        std::string where;
        if (!e.mark.is_null()) {
          // yaml-cpp often notices only at the end of the input, one line past
          // the document; name the document's last line instead.
          const auto lines = static_cast<int>(std::count(chunk.text.begin(), chunk.text.end(), '\n'));
          const int last = chunk.text.ends_with('\n') ? lines - 1 : lines;
          const bool past_end = e.mark.line > last;
          where = " at line " + std::to_string(first_line_ + std::min(e.mark.line, last) + 1);
          if (!past_end) where += ", column " + std::to_string(e.mark.column + 1);
        }
        report("", document_name(), "", "malformed YAML" + where + ": " + e.msg);
        continue;
      }
      for (const YAML::Node& document : documents) {
        ++document_;
        if (document.IsNull()) continue;
        decode_object(Field::object(document), "", "", "");
      }
    }
  }

 private:
  std::string document_name() const { return "document " + std::to_string(document_); }

  void report(std::string kind, std::string object, std::string field, std::string message) {
    out_.diagnostics.push_back({.file = origin_,
                                .kind = std::move(kind),
                                .object = std::move(object),
                                .field = std::move(field),
                                .message = std::move(message)});
  }

  // One object, or a list of them. `kind` and `api_version` are inherited
  // from a typed list (ServiceList items may omit both); `location` is the
  // object's path in the document ("items[3]"), used only while the object
  // has no name to be reported by.
  void decode_object(const Field& object, std::string kind, std::string api_version,
                     const std::string& location) {
    std::string name;  // "namespace/name" once known
    try {
      object.expect_map();
      if (std::string own = object.get("kind").text(); !own.empty()) kind = std::move(own);
      if (std::string own = object.get("apiVersion").text(); !own.empty()) api_version = std::move(own);
      if (kind.empty()) {
        object.get("kind").fail(location.empty()
                                    ? "missing; not a Kubernetes object"
                                    : "missing; items of a plain List must carry their kind "
                                      "(typed lists such as NodeList may omit it)");
      }

      if (kind.ends_with("List") && object.get("items").exists()) {
        // Items of a typed list may omit kind and apiVersion; those of a
        // plain List must carry their own.
        const bool typed = kind != "List";
        const std::string item_kind = typed ? kind.substr(0, kind.size() - 4) : "";
        const std::string item_api_version = typed ? api_version : "";
        size_t index = 0;
        for (const Field& item : object.get("items").items()) {
          const std::string item_location = join_path(location, "items[" + std::to_string(index++) + "]");
          decode_object(item.as_object(), item_kind, item_api_version, item_location);
        }
        return;
      }

      const KindSpec* spec = find_kind(kind);
      if (spec == nullptr) return;  // not a kind svcproxy uses
      const ApiMatch match = match_api_version(*spec, api_version);
      if (match == ApiMatch::OtherGroup) return;  // a Knative Service, say

      ObjectRef ref = object_ref(object, spec->namespaced);
      name = ref.str();
      if (match == ApiMatch::OtherVersion) {
        const std::string want = spec->group.empty() ? "v1" : std::string(spec->group) + "/v1";
        object.get("apiVersion").fail(quote(api_version) + " is not supported (want " + want + ")");
      }
      if (seen_.contains({spec->id, ref})) {
        report(kind, name, "", "duplicate of an object decoded earlier; the first one is kept");
        return;
      }
      switch (spec->id) {
        case KindId::Service:
          out_.state.services.push_back(decode_service(object, ref));
          break;
        case KindId::EndpointSlice:
          out_.state.endpoint_slices.push_back(decode_endpoint_slice(object, ref));
          break;
        case KindId::Node:
          out_.state.nodes.push_back(decode_node(object, ref));
          break;
        case KindId::ServiceCIDR:
          out_.state.service_cidrs.push_back(decode_service_cidr(object, ref));
          break;
      }
      seen_.insert({spec->id, std::move(ref)});
    } catch (const FieldError& e) {
      std::string message = e.message;
      if (e.line >= 0) message += " (line " + std::to_string(first_line_ + e.line + 1) + ")";
      if (name.empty()) {
        report(kind, document_name(), join_path(location, e.field), std::move(message));
      } else {
        report(kind, name, e.field, std::move(message));
      }
    } catch (const std::exception& e) {  // yaml-cpp, should a node surprise us
      report(kind, name.empty() ? document_name() : name, name.empty() ? location : "", e.what());
    }
  }

  const std::string& origin_;
  DecodeResult& out_;
  int document_ = 0;    // 1-based number of the current document in the stream
  int first_line_ = 0;  // 0-based line where the current document starts
  std::set<std::pair<KindId, ObjectRef>> seen_;
};

void decode_into(std::string_view text, const std::string& origin, DecodeResult& out) {
  try {
    Decoder(origin, out).decode_stream(text);
  } catch (const std::exception& e) {
    out.diagnostics.push_back({.file = origin, .kind = "", .object = "", .field = "", .message = e.what()});
  }
}

bool read_file(const std::filesystem::path& path, std::string& text, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = std::string("cannot open: ") + std::strerror(errno);
    return false;
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) {
    error = std::string("cannot read: ") + std::strerror(errno);
    return false;
  }
  text = std::move(buffer).str();
  return true;
}

bool is_manifest_name(const std::filesystem::path& path) {
  const std::string extension = path.extension().string();
  return extension == ".yaml" || extension == ".yml" || extension == ".json";
}

}  // namespace

std::string Diagnostic::str() const {
  std::string out = file + ": skipped";
  if (!kind.empty()) out += " " + kind;
  if (!object.empty()) out += " " + object;
  out += ": ";
  if (!field.empty()) out += field + ": ";
  out += message;
  std::replace_if(out.begin(), out.end(), [](char c) { return c == '\n' || c == '\r'; }, ' ');
  return out;
}

void decode_manifests(std::string_view text, const std::string& origin, DecodeResult& out) {
  decode_into(text, origin, out);
  out.state.sort();
}

DecodeResult load_manifests(const std::string& path) {
  namespace fs = std::filesystem;
  DecodeResult result;
  auto fail = [&](const std::string& file, std::string message) {
    result.diagnostics.push_back(
        {.file = file, .kind = "", .object = "", .field = "", .message = std::move(message)});
  };

  std::error_code ec;
  const fs::path root(path);
  const bool directory = fs::is_directory(root, ec);
  if (ec) {
    fail(path, "cannot read: " + ec.message());
    return result;
  }
  std::vector<fs::path> files;
  if (!directory) {
    files.push_back(root);
  } else {
    fs::directory_iterator it(root, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      std::error_code file_ec;
      if (is_manifest_name(it->path()) && it->is_regular_file(file_ec)) files.push_back(it->path());
    }
    if (ec) {
      fail(path, "cannot list directory: " + ec.message());
      return result;
    }
    std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
      return a.filename().native() < b.filename().native();
    });
  }

  for (const fs::path& file : files) {
    std::string text;
    std::string error;
    if (read_file(file, text, error)) {
      decode_into(text, file.string(), result);
    } else {
      fail(file.string(), std::move(error));
    }
  }
  result.state.sort();
  return result;
}

}  // namespace svcproxy::watch
