#include "proxy/debug_page.h"

#include <array>
#include <cstdio>
#include <random>
#include <sstream>

namespace svcproxy::proxy {

namespace {

constexpr std::string_view kStyle = R"css(
body{font:13px/1.4 system-ui,sans-serif;margin:1em;color:#222}
h1{font-size:18px}h2{font-size:15px;margin-top:1.5em}
table{border-collapse:collapse;margin:.3em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
tr.svc th{background:#e3f2fd}tr.port td{background:#f5f5f5}
td.yes{color:#1b5e20}td.no{color:#b71c1c;font-weight:bold}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 12px}dt{font-weight:bold}dd{margin:0}
.muted{color:#777}
)css";

// Re-renders the tables from /debug/state (same markup as the server's),
// filters as one types, and refreshes every 2 s. textContent only.
constexpr std::string_view kScript = R"js(
"use strict";
(function () {
  const box = document.getElementById("filter");
  let last = null;
  function cell(tr, text, cls) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }
  function yn(tr, v, good = true) { cell(tr, v ? "yes" : "no", v === good ? "yes" : "no"); }
  function count(c) { return c ? [String(c.packets), String(c.bytes)] : ["\u2014", "\u2014"]; }
  function portLine(p) {
    const ip = p.clusterIP.includes(":") ? "[" + p.clusterIP + "]" : p.clusterIP;
    let s = p.port + "/" + p.protocol + " " + p.family;
    if (p.clusterIP) s += " " + ip + ":" + p.number;
    if (p.nodePort) s += " nodePort " + p.nodePort;
    const a = count(p.accepted), r = count(p.rejected), d = count(p.dropped);
    return s + " \u00b7 accepted " + a[0] + " pkts / " + a[1] + " B, rejected " + r[0] + ", dropped " + d[0];
  }
  function matches(s, f) {
    if (!f) return true;
    if ((s.namespace + "/" + s.name).includes(f)) return true;
    return s.ports.some(p => p.name.includes(f) || p.clusterIP.includes(f) ||
      p.endpoints.some(e => e.address.includes(f) || e.node.includes(f) || e.zone.includes(f)));
  }
  function renderServices(state) {
    const body = document.getElementById("services-body");
    const f = box.value;
    const rows = document.createDocumentFragment();
    for (const s of state.services.filter(x => matches(x, f))) {
      const tr = document.createElement("tr");
      tr.className = "svc";
      const ref = s.namespace ? s.namespace + "/" + s.name : s.name;
      tr.dataset.service = ref;
      const th = document.createElement("th");
      th.colSpan = 10;
      th.textContent = ref + (s.type ? " (" + s.type + ")" : "");
      tr.appendChild(th);
      rows.append(tr);
      for (const p of s.ports) {
        const pr = document.createElement("tr");
        pr.className = "port";
        pr.dataset.port = p.name;
        cell(pr, portLine(p)).colSpan = 10;
        rows.append(pr);
        if (p.endpoints.length === 0) {
          const er = document.createElement("tr");
          cell(er, "no endpoints", "muted").colSpan = 10;
          rows.append(er);
        }
        for (const e of p.endpoints) {
          const er = document.createElement("tr");
          er.className = "ep";
          er.dataset.endpoint = e.address;
          er.dataset.ready = String(e.ready);
          cell(er, e.address);
          yn(er, e.ready); yn(er, e.serving); yn(er, e.terminating, false);
          cell(er, e.zone); cell(er, e.node);
          cell(er, e.local ? "yes" : "no"); yn(er, e.used);
          const c = count(e.traffic);
          cell(er, c[0]); cell(er, c[1]);
          rows.append(er);
        }
      }
    }
    body.replaceChildren(rows);
  }
  function renderSyncs(state) {
    const body = document.getElementById("syncs-body");
    const rows = document.createDocumentFragment();
    for (const s of state.syncs.slice().reverse()) {
      const tr = document.createElement("tr");
      cell(tr, s.time); cell(tr, s.reason); cell(tr, s.mode);
      cell(tr, String(s.operations)); cell(tr, String(s.durationUs));
      cell(tr, s.error, s.error ? "no" : "");
      rows.append(tr);
    }
    body.replaceChildren(rows);
  }
  function renderWatch(state) {
    const w = state.watch;
    document.getElementById("watch-summary").textContent =
      "source " + w.source + ", relists " + w.relists + ", errors " + w.errors + (w.problem ? ", problem: " + w.problem : "");
    const body = document.getElementById("watch-body");
    const rows = document.createDocumentFragment();
    for (const r of w.resources) {
      const tr = document.createElement("tr");
      cell(tr, r.resource); cell(tr, r.resourceVersion); cell(tr, String(r.lists));
      cell(tr, String(r.failures)); cell(tr, r.lastError);
      rows.append(tr);
    }
    body.replaceChildren(rows);
  }
  function render() {
    if (!last) return;
    renderServices(last);
    renderSyncs(last);
    renderWatch(last);
    document.getElementById("updated").textContent = last.time;
  }
  async function refresh() {
    try {
      const reply = await fetch("/debug/state", {cache: "no-store"});
      if (!reply.ok) throw new Error("HTTP " + reply.status);
      last = await reply.json();
      render();
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || "0") + 1);
      document.getElementById("status").textContent = "";
    } catch (e) {
      document.getElementById("status").textContent = "refresh failed: " + e.message;
    }
  }
  box.addEventListener("input", render);
  document.getElementById("filter-form").addEventListener("submit", ev => { ev.preventDefault(); render(); });
  refresh();
  setInterval(refresh, 2000);
})();
)js";

// Green when `v` is the healthy value, red otherwise.
std::string yes_no_cell(bool v, bool good = true) {
  return std::string("<td class=\"") + (v == good ? "yes" : "no") + "\">" + (v ? "yes" : "no") + "</td>";
}

std::pair<std::string, std::string> count_text(const std::optional<PacketCount>& c) {
  if (!c) return {"\u2014", "\u2014"};
  return {std::to_string(c->packets), std::to_string(c->bytes)};
}

// "IP:port", an IPv6 address in brackets.
std::string host_port(const std::string& ip, uint16_t port) {
  return (ip.find(':') == std::string::npos ? ip : "[" + ip + "]") + ":" + std::to_string(port);
}

std::string port_line(const DebugPort& p) {
  std::string s = p.port + "/" + p.protocol + " " + p.family;
  if (!p.cluster_ip.empty()) s += " " + host_port(p.cluster_ip, p.number);
  if (p.node_port) s += " nodePort " + std::to_string(p.node_port);
  const auto a = count_text(p.accepted), r = count_text(p.rejected), d = count_text(p.dropped);
  return s + " \u00b7 accepted " + a.first + " pkts / " + a.second + " B, rejected " + r.first + ", dropped " + d.first;
}

void services_html(std::string& out, const std::vector<DebugService>& services) {
  for (const auto& s : services) {
    const std::string ref = s.ns.empty() ? s.name : s.ns + "/" + s.name;
    out += "<tr class=\"svc\" data-service=\"" + html_escape(ref) + "\"><th colspan=\"10\">" + html_escape(ref) +
           (s.type.empty() ? "" : " (" + html_escape(s.type) + ")") + "</th></tr>\n";
    for (const auto& p : s.ports) {
      out += "<tr class=\"port\" data-port=\"" + html_escape(p.name) + "\"><td colspan=\"10\">" +
             html_escape(port_line(p)) + "</td></tr>\n";
      if (p.endpoints.empty()) out += "<tr><td colspan=\"10\" class=\"muted\">no endpoints</td></tr>\n";
      for (const auto& e : p.endpoints) {
        const auto c = count_text(e.traffic);
        out += "<tr class=\"ep\" data-endpoint=\"" + html_escape(e.address) + "\" data-ready=\"" +
               (e.ready ? "true" : "false") + "\"><td>" + html_escape(e.address) + "</td>" + yes_no_cell(e.ready) +
               yes_no_cell(e.serving) + yes_no_cell(e.terminating, false) + "<td>" + html_escape(e.zone) + "</td><td>" +
               html_escape(e.node) + "</td><td>" + (e.local ? "yes" : "no") + "</td>" + yes_no_cell(e.used) + "<td>" +
               c.first + "</td><td>" + c.second + "</td></tr>\n";
      }
    }
  }
}

std::string join(const std::vector<std::string>& list) {
  std::string out;
  for (const auto& s : list) out += (out.empty() ? "" : ", ") + s;
  return out;
}

void node_html(std::string& out, const DebugNode& n) {
  auto row = [&](std::string_view name, const std::string& value) {
    out += "<dt>" + std::string(name) + "</dt><dd>" + html_escape(value) + "</dd>\n";
  };
  out += "<dl id=\"node\">\n";
  row("Node", n.name);
  row("Zone", n.zone);
  row("IPs", join(n.ips));
  row("NodePort addresses", join(n.nodeport_addresses));
  row("Detect local", n.detect_local + (n.local_interface.empty() ? "" : " " + n.local_interface));
  row("Cluster CIDRs", join(n.cluster_cidrs));
  row("Mode", n.mode);
  row("Sync period", std::to_string(n.sync_period_ms) + " ms (min " + std::to_string(n.min_sync_period_ms) + " ms)");
  out += "</dl>\n";
}

void syncs_html(std::string& out, const std::vector<SyncRecord>& syncs) {
  for (auto it = syncs.rbegin(); it != syncs.rend(); ++it) {
    out += "<tr><td>" + format_time(it->time) + "</td><td>" + html_escape(it->reason) + "</td><td>" +
           html_escape(it->mode) + "</td><td>" + std::to_string(it->operations) + "</td><td>" +
           std::to_string(it->duration.count()) + "</td><td" + (it->error.empty() ? "" : " class=\"no\"") + ">" +
           html_escape(it->error) + "</td></tr>\n";
  }
}

void watch_html(std::string& out, const DebugWatch& w) {
  out += "<p id=\"watch-summary\">source " + html_escape(w.source) + ", relists " + std::to_string(w.relists) +
         ", errors " + std::to_string(w.errors) + (w.problem.empty() ? "" : ", problem: " + html_escape(w.problem)) +
         "</p>\n<table><thead><tr><th>Resource</th><th>resourceVersion</th><th>Lists</th><th>Failures</th>"
         "<th>Last error</th></tr></thead><tbody id=\"watch-body\">\n";
  for (const auto& r : w.resources)
    out += "<tr><td>" + html_escape(r.resource) + "</td><td>" + html_escape(r.resource_version) + "</td><td>" +
           std::to_string(r.lists) + "</td><td>" + std::to_string(r.failures) + "</td><td>" +
           html_escape(r.last_error) + "</td></tr>\n";
  out += "</tbody></table>\n";
}

}  // namespace

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string query_parameter(std::string_view query, std::string_view name) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    const size_t eq = pair.find('=');
    if (pair.substr(0, eq) != name) continue;
    const std::string_view value = eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    std::string out;
    for (size_t i = 0; i < value.size(); ++i) {
      if (value[i] == '+') {
        out += ' ';
      } else if (value[i] == '%' && i + 2 < value.size() && hex(value[i + 1]) >= 0 && hex(value[i + 2]) >= 0) {
        out += static_cast<char>(hex(value[i + 1]) * 16 + hex(value[i + 2]));
        i += 2;
      } else {
        out += value[i];
      }
    }
    return out;
  }
  return {};
}

std::string make_nonce() {
  static constexpr std::string_view kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::random_device random;
  std::string out;
  for (int i = 0; i < 22; ++i) out += kAlphabet[random() % 64];
  return out;
}

std::string debug_page_csp(std::string_view nonce) {
  const std::string n(nonce);
  return "default-src 'none'; script-src 'nonce-" + n + "'; style-src 'nonce-" + n +
         "'; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";
}

std::string render_debug_page(const DebugState& state, std::string_view filter, std::string_view nonce) {
  const std::string n = html_escape(nonce);
  std::string out = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>svcproxy " +
                    html_escape(state.node.name) + "</title>\n<style nonce=\"" + n + "\">" + std::string(kStyle) +
                    "</style></head>\n<body>\n<h1>svcproxy on " + html_escape(state.node.name) +
                    "</h1>\n<p>State at <span id=\"updated\">" + html_escape(state.time) +
                    "</span> <span id=\"status\" class=\"no\"></span></p>\n";
  out += "<h2>Node</h2>\n";
  node_html(out, state.node);
  out +=
      "<h2>Services</h2>\n<form id=\"filter-form\" method=\"get\" action=\"\"><label>Filter "
      "<input id=\"filter\" name=\"filter\" value=\"" +
      html_escape(filter) +
      "\" placeholder=\"namespace/name, IP, node, zone\"></label> <button>Filter</button>"
      "</form>\n";
  out += state.counters
             ? ""
             : "<p class=\"muted\">Traffic counters: " +
                   html_escape(state.counters_error.empty() ? "none in this mode" : state.counters_error) + "</p>\n";
  out +=
      "<table id=\"services\"><thead><tr><th>Endpoint</th><th>Ready</th><th>Serving</th><th>Terminating</th>"
      "<th>Zone</th><th>Node</th><th>Local</th><th>Used</th><th>Packets</th><th>Bytes</th></tr></thead>"
      "<tbody id=\"services-body\">\n";
  services_html(out, state.services);
  out +=
      "</tbody></table>\n<h2>Last syncs</h2>\n<table><thead><tr><th>Time</th><th>Reason</th><th>Mode</th>"
      "<th>Operations</th><th>Duration (µs)</th><th>Error</th></tr></thead><tbody id=\"syncs-body\">\n";
  syncs_html(out, state.syncs);
  out += "</tbody></table>\n<h2>Watch</h2>\n";
  watch_html(out, state.watch);
  out += "<script nonce=\"" + n + "\">" + std::string(kScript) + "</script>\n</body></html>\n";
  return out;
}

namespace {

// Control characters (a newline in a name) would break the terminal's lines.
std::string printable(std::string_view text) {
  std::string out;
  for (const char c : text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "\\x%02x", static_cast<unsigned char>(c));
      out += buffer;
    } else {
      out += c;
    }
  }
  return out;
}

std::string flags(const DebugEndpoint& e) {
  std::string out = e.ready ? "ready" : "unready";
  if (e.serving) out += ",serving";
  if (e.terminating) out += ",terminating";
  if (e.local) out += ",local";
  if (!e.used) out += ",unused";
  return out;
}

}  // namespace

std::string render_status_text(const DebugState& state) {
  std::ostringstream out;
  const auto& n = state.node;
  out << "svcproxy status (" << printable(state.origin) << ", " << printable(state.time) << ")\n";
  if (!n.name.empty()) {
    out << "node " << printable(n.name) << " zone " << (n.zone.empty() ? "-" : printable(n.zone)) << " ips "
        << printable(join(n.ips)) << " nodeports " << printable(join(n.nodeport_addresses)) << "\n";
    out << "mode " << printable(n.mode) << " detect-local " << printable(n.detect_local) << " sync-period "
        << n.sync_period_ms << "ms min " << n.min_sync_period_ms << "ms\n";
  }
  if (!state.watch.source.empty())
    out << "watch " << printable(state.watch.source) << " relists " << state.watch.relists << " errors "
        << state.watch.errors << (state.watch.problem.empty() ? "" : " problem: " + printable(state.watch.problem))
        << "\n";
  for (const auto& r : state.watch.resources)
    out << "  " << printable(r.resource) << " rv " << printable(r.resource_version) << " lists " << r.lists
        << " failures " << r.failures << "\n";
  out << "\n";
  for (const auto& s : state.services) {
    out << (s.ns.empty() ? "" : printable(s.ns) + "/") << printable(s.name)
        << (s.type.empty() ? "" : " (" + printable(s.type) + ")") << "\n";
    for (const auto& p : s.ports) {
      out << "  " << printable(p.port) << "/" << p.protocol << " " << p.family;
      if (!p.cluster_ip.empty()) out << " " << printable(host_port(p.cluster_ip, p.number));
      if (p.node_port) out << " nodePort " << p.node_port;
      if (p.accepted) out << " packets " << p.accepted->packets << " bytes " << p.accepted->bytes;
      out << " endpoints " << p.endpoints.size() << "\n";
      for (const auto& e : p.endpoints) {
        out << "    " << printable(e.address) << " " << flags(e);
        if (!e.node.empty()) out << " node " << printable(e.node);
        if (!e.zone.empty()) out << " zone " << printable(e.zone);
        if (e.traffic) out << " packets " << e.traffic->packets << " bytes " << e.traffic->bytes;
        out << "\n";
      }
    }
  }
  if (!state.syncs.empty()) {
    out << "\nLAST SYNCS (newest first)\n";
    for (auto it = state.syncs.rbegin(); it != state.syncs.rend(); ++it)
      out << "  " << format_time(it->time) << " " << printable(it->reason) << " " << it->mode << " ops "
          << it->operations << " " << it->duration.count() << "us"
          << (it->error.empty() ? "" : " error: " + printable(it->error)) << "\n";
  }
  return out.str();
}

}  // namespace svcproxy::proxy
