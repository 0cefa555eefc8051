#include "proxy/zpages.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <random>

#include <CLI/CLI.hpp>

#include "base/json.h"

namespace svcproxy::proxy {

namespace {

using base::json_string;

constexpr std::string_view kComponent = "svcproxy";
constexpr std::string_view kGroup = "config.k8s.io";
constexpr std::string_view kDisclaimer =
    "Warning: This endpoint is not meant to be machine parseable, has no formatting compatibility guarantees and is "
    "for debugging purposes only.\n";

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// One clause of an Accept header: "type/subtype;k=v;...".
struct MediaRange {
  std::string_view type, subtype;
  std::string_view as, version, group;
  double q = 1;
  bool matches(std::string_view t, std::string_view st) const {
    return (type == "*" || type == t) && (subtype == "*" || subtype == st);
  }
};

std::optional<MediaRange> parse_media_range(std::string_view clause) {
  MediaRange r;
  const auto semi = clause.find(';');
  const auto type = trim(clause.substr(0, semi));
  const auto slash = type.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  r.type = type.substr(0, slash);
  r.subtype = type.substr(slash + 1);
  for (auto rest = semi == std::string_view::npos ? std::string_view() : clause.substr(semi + 1); !rest.empty();) {
    const auto next = rest.find(';');
    const auto param = trim(rest.substr(0, next));
    rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 1);
    const auto eq = param.find('=');
    if (eq == std::string_view::npos) continue;
    const auto key = trim(param.substr(0, eq));
    auto value = trim(param.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
    if (key == "as") r.as = value;
    if (key == "v") r.version = value;
    if (key == "g") r.group = value;
    if (key == "q") {
      double q = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), q);
      r.q = ec == std::errc() ? q : 0;
    }
  }
  return r;
}

std::string format_unix_date(std::chrono::system_clock::time_point t) {
  // Go's time.UnixDate ("Sun Dec  6 11:20:41 UTC 2026"), in UTC.
  const time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm parts{};
  gmtime_r(&secs, &parts);
  std::array<char, 64> buf{};
  const size_t n = std::strftime(buf.data(), buf.size(), "%a %b %e %H:%M:%S UTC %Y", &parts);
  return {buf.data(), n};
}

std::string format_rfc3339_seconds(std::chrono::system_clock::time_point t) {
  const time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm parts{};
  gmtime_r(&secs, &parts);
  std::array<char, 32> buf{};
  const size_t n = std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%SZ", &parts);
  return {buf.data(), n};
}

int64_t uptime_seconds(const StatuszInfo& info, std::chrono::system_clock::time_point now) {
  return std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(now - info.started).count());
}

std::string format_uptime(int64_t s) {
  std::array<char, 64> buf{};
  const int n = std::snprintf(buf.data(), buf.size(), "%lld hr %02lld min %02lld sec", static_cast<long long>(s / 3600),
                              static_cast<long long>((s / 60) % 60), static_cast<long long>(s % 60));
  return {buf.data(), static_cast<size_t>(std::max(n, 0))};
}

// k8s.io/apimachinery's Status for 406, as ErrorNegotiated writes it.
ZpageAnswer not_acceptable() {
  return {406, "application/json",
          "{\n  \"kind\": \"Status\",\n  \"apiVersion\": \"v1\",\n  \"metadata\": {},\n  \"status\": \"Failure\",\n"
          "  \"message\": \"only the following media types are accepted: application/json, application/yaml, "
          "text/plain\",\n  \"reason\": \"NotAcceptable\",\n  \"code\": 406\n}\n",
          ""};
}

std::string structured_content_type(const ZpageFormat& f, std::string_view kind) {
  return std::string(f.kind == ZpageFormat::Json ? "application/json" : "application/yaml") +
         ";g=" + std::string(kGroup) + ";v=" + f.version + ";as=" + std::string(kind);
}

// One field of a Statusz or Flagz object: a JSON scalar (its JSON text), a
// list of strings or a map of strings.
struct Field {
  std::string key;
  std::string scalar;
  std::optional<std::vector<std::string>> list;
  std::optional<FlagValues> map;
};

std::string json_value(const Field& f) {
  if (f.list) {
    std::string out = "[";
    for (size_t i = 0; i < f.list->size(); ++i) out += (i ? "," : "") + json_string((*f.list)[i]);
    return out + "]";
  }
  if (f.map) {
    std::string out = "{";
    for (size_t i = 0; i < f.map->size(); ++i)
      out += (i ? "," : "") + json_string((*f.map)[i].first) + ":" + json_string((*f.map)[i].second);
    return out + "}";
  }
  return f.scalar;
}

// YAML as Go's marshaller writes it from the JSON: keys sorted; every JSON
// scalar is a valid YAML scalar of the same value, so scalars are written
// as their JSON text (strings always quoted).
std::string yaml_value(const Field& f) {
  std::string out;
  if (f.list) {
    if (f.list->empty()) return " []\n";
    for (const auto& item : *f.list) out += "\n- " + json_string(item);
    return out + "\n";
  }
  if (f.map) {
    for (const auto& [k, v] : *f.map) out += "\n  " + k + ": " + json_string(v);
    return out + "\n";
  }
  return " " + f.scalar + "\n";
}

// The object as JSON (kind, apiVersion, metadata, then `fields` in order)
// or YAML, with kube-proxy's content type and deprecation warning.
ZpageAnswer structured(const ZpageFormat& f, std::string_view kind, std::string_view page, std::vector<Field> fields) {
  ZpageAnswer a{200, structured_content_type(f, kind), "", ""};
  if (f.version == "v1alpha1")
    a.warning =
        "299 - \"This version of the " + std::string(page) + " endpoint is deprecated. Please use a newer version.\"";
  const std::string api_version = std::string(kGroup) + "/" + f.version;
  if (f.kind == ZpageFormat::Json) {
    a.body = "{\"kind\":" + json_string(kind) + ",\"apiVersion\":" + json_string(api_version) +
             ",\"metadata\":{\"name\":" + json_string(kComponent) + "}";
    for (const auto& field : fields) a.body += "," + json_string(field.key) + ":" + json_value(field);
    a.body += "}\n";
    return a;
  }
  fields.push_back({"apiVersion", json_string(api_version), {}, {}});
  fields.push_back({"kind", json_string(kind), {}, {}});
  fields.push_back({"metadata", "", {}, FlagValues{{"name", std::string(kComponent)}}});
  std::sort(fields.begin(), fields.end(), [](const Field& x, const Field& y) { return x.key < y.key; });
  for (const auto& field : fields) a.body += field.key + ":" + yaml_value(field);
  return a;
}

}  // namespace

ZpageFormat negotiate_zpage(std::string_view accept, std::string_view kind) {
  if (trim(accept).empty()) return {ZpageFormat::Text, ""};
  std::vector<MediaRange> ranges;
  for (std::string_view rest = accept; !rest.empty();) {
    const auto comma = rest.find(',');
    if (auto r = parse_media_range(rest.substr(0, comma)); r && r->q > 0) ranges.push_back(*r);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
  }
  std::stable_sort(ranges.begin(), ranges.end(), [](const auto& a, const auto& b) { return a.q > b.q; });
  for (const auto& r : ranges) {
    if (r.as.empty()) {
      // Text is the one representation without a kind.
      if (r.version.empty() && r.group.empty() && r.matches("text", "plain")) return {ZpageFormat::Text, ""};
      continue;
    }
    if (r.as != kind || r.group != kGroup || (r.version != "v1alpha1" && r.version != "v1beta1")) continue;
    if (r.matches("application", "json")) return {ZpageFormat::Json, std::string(r.version)};
    if (r.matches("application", "yaml")) return {ZpageFormat::Yaml, std::string(r.version)};
  }
  return {ZpageFormat::NotAcceptable, ""};
}

std::string_view random_zpage_delimiter() {
  static constexpr std::array<std::string_view, 4> kDelimiters = {":", ": ", "=", " "};
  thread_local std::mt19937 rng{std::random_device{}()};
  return kDelimiters[std::uniform_int_distribution<size_t>(0, kDelimiters.size() - 1)(rng)];
}

ZpageAnswer statusz_page(const StatuszInfo& info, std::string_view accept, std::chrono::system_clock::time_point now,
                         std::string_view delimiter) {
  const auto format = negotiate_zpage(accept, "Statusz");
  if (format.kind == ZpageFormat::NotAcceptable) return not_acceptable();
  const int64_t up = uptime_seconds(info, now);
  if (format.kind == ZpageFormat::Text) {
    const std::string d(delimiter);
    std::string paths;
    for (const auto& p : info.paths) paths += (paths.empty() ? "" : " ") + p;
    // No "Go version" line: svcproxy is not a Go program.
    std::string body = "\n" + std::string(kComponent) + " statusz\n" + std::string(kDisclaimer) + "\nStarted" + d +
                       " " + format_unix_date(info.started) + "\nUp" + d + " " + format_uptime(up) +
                       "\nBinary version" + d + " " + info.binary_version + "\n";
    if (!info.emulation_version.empty()) body += "Emulation version" + d + " " + info.emulation_version;
    body += "\n";
    if (!paths.empty()) body += "Paths" + d + " " + paths;
    body += "\n";
    return {200, "text/plain; charset=utf-8", std::move(body), ""};
  }
  std::vector<Field> fields = {{"startTime", json_string(format_rfc3339_seconds(info.started)), {}, {}},
                               {"uptimeSeconds", std::to_string(up), {}, {}},
                               {"goVersion", json_string(""), {}, {}},  // not a Go program
                               {"binaryVersion", json_string(info.binary_version), {}, {}}};
  if (!info.emulation_version.empty())
    fields.push_back({"emulationVersion", json_string(info.emulation_version), {}, {}});
  fields.push_back({"paths", "", info.paths, {}});
  return structured(format, "Statusz", "statusz", std::move(fields));
}

ZpageAnswer flagz_page(const FlagValues& flags, std::string_view accept, std::string_view delimiter) {
  const auto format = negotiate_zpage(accept, "Flagz");
  if (format.kind == ZpageFormat::NotAcceptable) return not_acceptable();
  FlagValues sorted = flags;
  std::sort(sorted.begin(), sorted.end());
  if (format.kind == ZpageFormat::Text) {
    std::string body = "\n" + std::string(kComponent) + " flagz\n" + std::string(kDisclaimer);
    for (const auto& [name, value] : sorted) body += name + std::string(delimiter) + value + "\n";
    return {200, "text/plain; charset=utf-8", std::move(body), ""};
  }
  // Flagz's flags are omitempty.
  std::vector<Field> fields;
  if (!sorted.empty()) fields.push_back({"flags", "", {}, sorted});
  return structured(format, "Flagz", "flagz", std::move(fields));
}

namespace {

std::string json_list(const std::vector<std::string>& items) {
  if (items.empty()) return "null";  // a nil slice, as kube-proxy marshals it
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + json_string(items[i]);
  return out + "]";
}

std::string join(const std::vector<std::string>& items, std::string_view sep) {
  std::string out;
  for (const auto& i : items) out += (out.empty() ? "" : std::string(sep)) + i;
  return out;
}

std::string json_bool(bool b) { return b ? "true" : "false"; }

std::string json_duration(std::chrono::nanoseconds d) { return json_string(format_go_duration(d)); }

}  // namespace

std::string configz_json(const DaemonSettings& s) {
  const auto& n = s.node;
  // bindAddress: --bind-address as given, else the node IP override (the
  // first --node-ip), else any.
  const std::string bind_address = !s.bind_address.empty() ? s.bind_address
                                   : n.node_ips.empty()    ? "0.0.0.0"
                                                           : n.node_ips.front();
  const ConntrackSettings& ct = s.conntrack;
  // Unset, NodePorts answer on the node's primary IPs: kube-proxy's "primary".
  const std::vector<std::string> nodeport_addresses =
      n.nodeport_addresses.empty() ? std::vector<std::string>{"primary"} : n.nodeport_addresses;
  std::string c = "{\"kind\":\"KubeProxyConfiguration\",\"apiVersion\":\"kubeproxy.config.k8s.io/v1alpha1\"";
  c += ",\"clientConnection\":{\"kubeconfig\":" + json_string(s.kubeconfig) +
       ",\"acceptContentTypes\":\"\",\"contentType\":\"application/json\",\"qps\":0,\"burst\":0}";
  c += ",\"logging\":{\"format\":" + json_string(to_string(s.log_format)) +
       ",\"flushFrequency\":\"0s\",\"verbosity\":" + std::to_string(s.verbosity) +
       ",\"options\":{\"text\":{\"infoBufferSize\":\"0\"},\"json\":{\"infoBufferSize\":\"0\"}}}";
  c += ",\"hostnameOverride\":" + json_string(n.hostname_override) + ",\"bindAddress\":" + json_string(bind_address) +
       ",\"healthzBindAddress\":" + json_string(s.healthz_bind_address) +
       ",\"metricsBindAddress\":" + json_string(s.metrics_bind_address) +
       ",\"bindAddressHardFail\":true,\"enableProfiling\":false,\"showHiddenMetricsForVersion\":\"\"" +
       ",\"mode\":" + json_string(to_string(s.proxy_mode));
  // Modes svcproxy does not have: their zero values (the masquerade bit is
  // the one bit for every mode, as kube-proxy copies it).
  c += ",\"iptables\":{\"masqueradeBit\":" + std::to_string(n.masquerade_bit) +
       ",\"masqueradeAll\":false,\"localhostNodePorts\":false,\"syncPeriod\":\"0s\",\"minSyncPeriod\":\"0s\"}";
  c += ",\"ipvs\":{\"syncPeriod\":\"0s\",\"minSyncPeriod\":\"0s\",\"scheduler\":\"\",\"excludeCIDRs\":null,"
       "\"strictARP\":false,\"tcpTimeout\":\"0s\",\"tcpFinTimeout\":\"0s\",\"udpTimeout\":\"0s\"}";
  c += ",\"nftables\":{\"masqueradeBit\":" + std::to_string(n.masquerade_bit) +
       ",\"masqueradeAll\":" + json_bool(n.masquerade_all) + ",\"syncPeriod\":" + json_duration(s.sync_period) +
       ",\"minSyncPeriod\":" + json_duration(s.min_sync_period) + "}";
  c += ",\"winkernel\":{\"networkName\":\"\",\"sourceVip\":\"\",\"enableDSR\":false,\"rootHnsEndpointName\":\"\","
       "\"forwardHealthCheckVip\":false}";
  c += ",\"detectLocalMode\":" + json_string(to_string(n.detect_local_mode)) +
       ",\"detectLocal\":{\"bridgeInterface\":" + json_string(n.bridge_interface) +
       ",\"interfaceNamePrefix\":" + json_string(n.interface_name_prefix) + "}";
  c += ",\"clusterCIDR\":" + json_string(join(n.cluster_cidrs, ",")) +
       ",\"nodePortAddresses\":" + json_list(nodeport_addresses) +
       ",\"oomScoreAdj\":" + (s.oom_score_adj ? std::to_string(*s.oom_score_adj) : std::string("null"));
  // The conntrack sysctls svcproxy sets at start (proxy/conntrack_sysctls.h).
  c += ",\"conntrack\":{\"maxPerCore\":" + std::to_string(ct.max_per_core) + ",\"min\":" + std::to_string(ct.min) +
       ",\"tcpEstablishedTimeout\":" + json_duration(ct.tcp_established_timeout) +
       ",\"tcpCloseWaitTimeout\":" + json_duration(ct.tcp_close_wait_timeout) +
       ",\"tcpBeLiberal\":" + json_bool(ct.tcp_be_liberal) + ",\"udpTimeout\":" + json_duration(ct.udp_timeout) +
       ",\"udpStreamTimeout\":" + json_duration(ct.udp_stream_timeout) + "}";
  c += ",\"configSyncPeriod\":\"0s\",\"portRange\":\"\"}";
  return "{\"kubeproxy.config.k8s.io\":" + c + "}";
}

FlagValues flag_values(const CLI::App& command, const DaemonSettings& effective) {
  std::map<std::string, std::string> values;
  for (const CLI::Option* opt : command.get_options()) {
    for (const auto& name : opt->get_lnames()) {
      const bool flag = opt->get_expected_max() == 0;  // takes no value
      std::string value = opt->count() > 0 ? join(opt->results(), ",") : flag ? "false" : opt->get_default_str();
      values[name] = value;
    }
  }
  // Only names the command has: a setting without its flag is not a flag.
  auto set = [&](const std::string& name, std::string value) {
    if (auto it = values.find(name); it != values.end()) it->second = std::move(value);
  };
  const auto& n = effective.node;
  set("hostname-override", n.hostname_override);
  set("node-ip", join(n.node_ips, ","));
  set("nodeport-addresses", join(n.nodeport_addresses, ","));
  set("cluster-cidr", join(n.cluster_cidrs, ","));
  set("masquerade-all", n.masquerade_all ? "true" : "false");
  set("masquerade-bit", std::to_string(n.masquerade_bit));
  set("detect-local-mode", std::string(to_string(n.detect_local_mode)));
  set("pod-bridge-interface", n.bridge_interface);
  set("pod-interface-name-prefix", n.interface_name_prefix);
  set("kubeconfig", effective.kubeconfig);
  set("proxy-mode", std::string(to_string(effective.proxy_mode)));
  set("healthz-bind-address", effective.healthz_bind_address);
  set("metrics-bind-address", effective.metrics_bind_address);
  set("sync-period", format_go_duration(effective.sync_period));
  set("min-sync-period", format_go_duration(effective.min_sync_period));
  set("v", std::to_string(effective.verbosity));
  set("log-format", std::string(to_string(effective.log_format)));
  return {values.begin(), values.end()};
}

}  // namespace svcproxy::proxy
