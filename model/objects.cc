#include "model/objects.h"

#include <algorithm>

namespace svcproxy::model {

namespace {

// Orders by `key` first; objects with the same key (only possible with
// malformed input) fall back to their full value, so the result does not
// depend on the order the objects arrived in.
template <typename T, typename Key>
void sort_by(std::vector<T>& objects, Key key) {
  std::sort(objects.begin(), objects.end(), [&key](const T& a, const T& b) {
    const auto& ka = key(a);
    const auto& kb = key(b);
    if (ka != kb) return ka < kb;
    return a < b;
  });
}

}  // namespace

std::string_view to_string(Protocol protocol) {
  switch (protocol) {
    case Protocol::TCP:
      return "TCP";
    case Protocol::UDP:
      return "UDP";
    case Protocol::SCTP:
      return "SCTP";
  }
  return "UNKNOWN";
}

std::string_view to_lower(Protocol protocol) {
  switch (protocol) {
    case Protocol::TCP:
      return "tcp";
    case Protocol::UDP:
      return "udp";
    case Protocol::SCTP:
      return "sctp";
  }
  return "unknown";
}

std::optional<Protocol> parse_protocol(std::string_view text) {
  // Case-sensitive, as the API server validates it.
  if (text == "TCP") return Protocol::TCP;
  if (text == "UDP") return Protocol::UDP;
  if (text == "SCTP") return Protocol::SCTP;
  return std::nullopt;
}

void ClusterState::sort() {
  sort_by(services, [](const Service& s) -> const ObjectRef& { return s.ref; });
  sort_by(endpoint_slices, [](const EndpointSlice& s) -> const ObjectRef& { return s.ref; });
  sort_by(nodes, [](const Node& n) -> const std::string& { return n.name; });
  sort_by(service_cidrs, [](const ServiceCIDR& c) -> const std::string& { return c.name; });
}

}  // namespace svcproxy::model
