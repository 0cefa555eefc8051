// kube-proxy's pages on the metrics port besides /metrics, as Kubernetes
// v1.37 serves them (k8s.io/apiserver pkg/server/{statusz,flagz},
// component-base/configz), checked against the real kube-proxy v1.37.2:
//   /statusz, /flagz  text for people by default (a random key/value
//                     delimiter per answer, so that nobody parses it), or a
//                     config.k8s.io Statusz/Flagz object as JSON when the
//                     Accept header asks for one (v1beta1; v1alpha1 with a
//                     deprecation Warning); 406 for anything else;
//   /configz          {"kubeproxy.config.k8s.io": KubeProxyConfiguration}.
// Pure functions of their inputs: proxy/http_server.cc serves them.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/config.h"

namespace CLI {
class App;
}

namespace svcproxy::proxy {

// The kube-proxy release line whose behaviour svcproxy follows: /statusz's
// "emulation version".
inline constexpr std::string_view kKubeProxyLine = "1.37";

struct ZpageAnswer {
  int status = 200;
  std::string content_type;
  std::string body;
  std::string warning;  // a Warning header ("299 - ..."); empty: none
};

// Every flag of the command with its effective value as text, by name
// (without dashes), sorted: what /flagz lists.
using FlagValues = std::vector<std::pair<std::string, std::string>>;

// Every long option of `command`: its value as given, else its default;
// then the effective value of each setting `effective` holds (a config
// file's included), as kube-proxy's /flagz shows its flags after --config.
FlagValues flag_values(const CLI::App& command, const DaemonSettings& effective);

struct StatuszInfo {
  std::chrono::system_clock::time_point started;
  std::string binary_version;      // svcproxy's version
  std::string emulation_version;   // the kube-proxy release line svcproxy follows
  std::vector<std::string> paths;  // the server's pages, first path segment, sorted
};

// What an Accept header negotiates for a z-page of `kind` ("Statusz",
// "Flagz"): text (also for an empty header, text/* or */*), or the object
// as JSON or YAML in a version of config.k8s.io, which the media type must
// name (application/json;as=Statusz;v=v1beta1;g=config.k8s.io), or nothing
// acceptable. Clauses are tried by falling q-value, then in order.
struct ZpageFormat {
  enum Kind { Text, Json, Yaml, NotAcceptable } kind = Text;
  std::string version;  // v1alpha1 or v1beta1 for Json and Yaml
  bool operator==(const ZpageFormat&) const = default;
};
ZpageFormat negotiate_zpage(std::string_view accept, std::string_view kind);

// One of kube-proxy's delimiters (":", ": ", "=", " "), at random.
std::string_view random_zpage_delimiter();

ZpageAnswer statusz_page(const StatuszInfo& info, std::string_view accept, std::chrono::system_clock::time_point now,
                         std::string_view delimiter);
ZpageAnswer flagz_page(const FlagValues& flags, std::string_view accept, std::string_view delimiter);

// The effective configuration in KubeProxyConfiguration's shape
// (kubeproxy.config.k8s.io/v1alpha1, every field kube-proxy writes, in its
// order): svcproxy's values where it has the setting, kube-proxy's zero
// values for the modes and knobs it does not have (iptables, ipvs,
// winkernel), as kube-proxy itself shows them in nftables mode.
std::string configz_json(const DaemonSettings& settings);

}  // namespace svcproxy::proxy
