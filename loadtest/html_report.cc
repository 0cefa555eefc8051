#include "loadtest/html_report.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "loadtest/html_charts.h"
#include "loadtest/svg_plot.h"

namespace svcproxy::loadtest {

std::string html_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      case '\t':
      case '\n': out += c; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
          out += "\xEF\xBF\xBD";  // U+FFFD
        } else {
          out += c;
        }
    }
  }
  return out;
}

namespace {

using svg::fixed;

// No script and nothing from elsewhere: the policy turns any stray reference
// into a refused load (and a console error the Chromium test would see).
constexpr std::string_view kHead = R"(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
)";

constexpr std::string_view kStyle = R"(<style>
body { font-family: sans-serif; margin: 1.5em auto; max-width: 60em; color: #222; padding: 0 1em; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { font-size: 1.15em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
.run { color: #555; margin-top: 0; }
.tiles { display: flex; flex-wrap: wrap; gap: 0.6em; }
.tile { border: 1px solid #ccc; border-radius: 4px; padding: 0.4em 0.8em; min-width: 8em; }
.tile .v { font-size: 1.35em; font-weight: bold; } .tile .k { color: #555; font-size: 0.85em; }
.tile.bad { border-color: #c62828; background: #fdecea; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.2em 0.7em; text-align: right; }
td { white-space: nowrap; } #changes td { white-space: normal; }
th:first-child, td:first-child { text-align: left; }
tr.violation td { color: #c62828; font-weight: bold; }
.alert { border-left: 4px solid #c62828; background: #fdecea; padding: 0.4em 0.8em; }
.warn { border-left: 4px solid #ef8f00; background: #fff4e0; padding: 0.4em 0.8em; }
.note { color: #555; font-size: 0.9em; }
svg { display: block; margin: 0.5em 0; max-width: 100%; height: auto; font-size: 11px; }
svg .grid { stroke: #e3e3e3; } svg .axis { stroke: #888; }
svg .label { fill: #555; } svg .title { fill: #222; font-weight: bold; }
svg .curve { fill: none; stroke: #1565c0; stroke-width: 2; }
svg .rps { fill: none; stroke: #1565c0; stroke-width: 1.5; }
svg .p99 { fill: none; stroke: #6a1b9a; stroke-width: 1.5; }
svg circle.corrected { fill: #1565c0; } svg circle.uncorrected { fill: #fff; stroke: #ef6c00; stroke-width: 2; }
svg .bar { fill: #64b5f6; } svg .bar.violation { fill: #c62828; }
svg .errors { fill: #e53935; }
svg .expected { stroke: #222; stroke-width: 2; }
svg text.violation { fill: #c62828; font-weight: bold; }
svg .change { stroke: #ef6c00; stroke-width: 1.5; stroke-dasharray: 4 3; }
svg text.change { fill: #ef6c00; stroke: none; font-weight: bold; }
svg .nodata { fill: #888; font-size: 14px; }
</style>
</head>
)";

std::string tile(std::string_view key, const std::string& value, bool bad = false) {
  return std::string("<div class=\"tile") + (bad ? " bad" : "") + "\"><div class=\"v\">" + value +
         "</div><div class=\"k\">" + std::string(key) + "</div></div>\n";
}

std::string cell(const std::string& escaped) { return "<td>" + escaped + "</td>"; }

std::string seconds(int64_t at_us) { return fixed(static_cast<double>(at_us) / 1e6, 2) + " s"; }

std::string signed_latency(int64_t us) {
  return us < 0 ? "−" + svg::latency(static_cast<double>(-us)) : svg::latency(static_cast<double>(us));
}

std::string joined(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + html_escape(item);
  return out.empty() ? "—" : out;
}

// --- header and headline numbers --------------------------------------------

std::string run_line(const Report& r) {
  std::string out = "<p class=\"run\">" + html_escape(r.address.empty() ? r.target : r.address) + " · mode " +
                    html_escape(to_string(r.mode)) + " · ";
  out += r.open_loop ? "open loop at " + fixed(r.rate, 0) + " requests/s" : "closed loop (no --rate)";
  out += " · concurrency " + std::to_string(r.concurrency) + " · threads " + std::to_string(r.threads) + " · " +
         fixed(r.duration_s, 1) + " s</p>\n";
  return out;
}

std::string headline(const Report& r) {
  const double per_s = r.duration_s > 0 ? static_cast<double>(r.requests) / r.duration_s : 0;
  const double error_share = r.requests ? static_cast<double>(r.errors.total()) / r.requests : 0;
  std::string out = "<div class=\"tiles\" id=\"headline\">\n";
  out += tile("requests", svg::count(r.requests));
  out += tile("requests/s", svg::count(static_cast<uint64_t>(std::llround(std::max(per_s, 0.0)))));
  out += tile("errors (" + svg::percent(error_share) + ")", svg::count(r.errors.total()), r.errors.total() > 0);
  out += tile("p50", svg::latency(static_cast<double>(r.latency.p50_us)));
  out += tile("p99 (uncorrected " + svg::latency(static_cast<double>(r.latency_uncorrected.p99_us)) + ")",
              svg::latency(static_cast<double>(r.latency.p99_us)));
  out += tile("fairness p (chi-square)", fixed(r.fairness.chi2_p, 3), r.fairness.chi2_p < 0.01);
  out += tile("violations", svg::count(r.violations.size()), !r.violations.empty());
  return out + "</div>\n";
}

std::string warnings(const Report& r) {
  std::string items;
  if (r.schedule_misses > 0) {
    items += "<li>The generator missed its schedule " + svg::count(r.schedule_misses) +
             " times: it, not the target, was the bottleneck for those requests.</li>\n";
  }
  for (const auto& w : r.warnings) items += "<li>" + html_escape(w) + "</li>\n";
  return items.empty() ? "" : "<div class=\"warn\" id=\"warnings\"><ul>\n" + items + "</ul></div>\n";
}

// --- sections ---------------------------------------------------------------

std::string latency_section(const Report& r) {
  std::string out = "<h2>Latency</h2>\n" + charts::latency_curve(r);
  out += "<p class=\"note\">";
  out += r.open_loop ? "Corrected latency counts from each request's intended send time, so a stall also delays "
                       "the requests queued behind it (no coordinated omission); uncorrected counts from the "
                       "actual send."
                     : "Closed loop: each request is sent when the previous one on its connection finished, so "
                       "corrected and uncorrected latency are the same measurement.";
  out += "</p>\n<table id=\"latency\"><tr><th></th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th>"
         "<th>max</th></tr>\n";
  for (const auto& [name, p] : {std::pair{"corrected", &r.latency}, {"uncorrected", &r.latency_uncorrected}}) {
    out += std::string("<tr>") + cell(name);
    for (uint64_t v : {p->p50_us, p->p90_us, p->p99_us, p->p999_us, p->max_us}) {
      out += cell(svg::latency(static_cast<double>(v)));
    }
    out += "</tr>\n";
  }
  return out + "</table>\n";
}

std::string fairness_line(const Report& r) {
  const auto& f = r.fairness;
  std::string out = "<p id=\"fairness\">Chi-square p-value <b>" + fixed(f.chi2_p, 3) + "</b> over " +
                    std::to_string(f.compared) + " endpoints (" +
                    html_escape(f.basis.empty() ? "answered" : f.basis) + "), busiest/least busy <b>" +
                    fixed(f.max_min_ratio, 2) + "</b>. ";
  out += f.chi2_p < 0.01 ? "The spread is <b>not</b> even (p &lt; 0.01)." : "Consistent with an even spread.";
  return out + "</p>\n";
}

std::string violations_box(const Report& r) {
  if (r.violations.empty()) return "";
  std::string out = "<div class=\"alert\" id=\"violations\"><b>Violations</b>: answers from endpoints that must "
                    "not serve this client.<ul>\n";
  for (const auto& v : r.violations) {
    out += "<li><code>" + html_escape(v.endpoint) + "</code>: " + svg::count(v.count) + " answers" +
           (v.reason.empty() ? "" : " (" + html_escape(v.reason) + ")") + "</li>\n";
  }
  return out + "</ul></div>\n";
}

std::string endpoint_table(const Report& r) {
  std::string out = "<table id=\"endpoint-table\"><tr><th>endpoint</th><th>answers</th><th>share</th>"
                    "<th>expected</th><th>p50</th><th>p99</th><th>max</th><th>first</th><th>last</th></tr>\n";
  for (const auto& e : r.endpoints) {
    out += e.expected ? "<tr>" : "<tr class=\"violation\">";
    out += cell(html_escape(e.endpoint) + (e.expected ? "" : " ✗")) + cell(svg::count(e.count)) +
           cell(svg::percent(e.share)) + cell(e.expected_share ? svg::percent(*e.expected_share) : "—") +
           cell(svg::latency(static_cast<double>(e.latency.p50_us))) +
           cell(svg::latency(static_cast<double>(e.latency.p99_us))) +
           cell(svg::latency(static_cast<double>(e.latency.max_us))) +
           cell(e.first_at_us ? seconds(*e.first_at_us) : "—") + cell(e.last_at_us ? seconds(*e.last_at_us) : "—");
    out += "</tr>\n";
  }
  return out + "</table>\n";
}

std::string endpoints_section(const Report& r) {
  return "<h2>Endpoints</h2>\n" + fairness_line(r) + violations_box(r) + charts::endpoint_bars(r) + endpoint_table(r);
}

std::string changes_table(const Report& r) {
  if (r.changes.empty()) return "";
  std::string out = "<table id=\"changes\"><tr><th>#</th><th>at</th><th>removed / unready</th><th>added / ready</th>"
                    "<th>last answer from removed</th><th>first answer from added</th></tr>\n";
  for (size_t i = 0; i < r.changes.size(); ++i) {
    const auto& c = r.changes[i];
    out += "<tr>" + cell(std::to_string(i + 1)) + cell(seconds(c.at_us)) + cell(joined(c.removed)) +
           cell(joined(c.added)) + cell(c.drain_us ? signed_latency(*c.drain_us) : "—") +
           cell(c.first_answer_us ? signed_latency(*c.first_answer_us) : "—") + "</tr>\n";
  }
  return out + "</table>\n<p class=\"note\">Times count from the change; negative: before the change was seen.</p>\n";
}

std::string timeline_section(const Report& r) {
  return "<h2>Timeline</h2>\n" + charts::timeline(r) + changes_table(r);
}

std::string errors_section(const Report& r) {
  const auto& e = r.errors;
  std::string out = "<h2>Errors</h2>\n<table id=\"errors\"><tr><th>cause</th><th>count</th><th>usually</th></tr>\n";
  const std::pair<const char*, std::pair<uint64_t, const char*>> rows[] = {
      {"refused", {e.refused, "a reject rule, or no listener"}},
      {"timeout", {e.timeout, "a drop rule, or a dead path"}},
      {"reset", {e.reset, "the server or a middlebox reset an established connection"}},
      {"other", {e.other, "see the samples below"}},
  };
  for (const auto& [name, row] : rows) {
    out += "<tr>" + cell(name) + cell(svg::count(row.first)) + cell(row.second) + "</tr>\n";
  }
  if (r.mode == Mode::udp) {
    out += "<tr>" + cell("udp lost") + cell(svg::count(e.udp_lost)) + cell("no reply (also counted as timeout)") +
           "</tr>\n";
  }
  out += "</table>\n";
  if (!r.error_samples.empty()) {
    out += "<ul id=\"error-samples\">\n";
    for (const auto& s : r.error_samples) out += "<li><code>" + html_escape(s) + "</code></li>\n";
    out += "</ul>\n";
  }
  return out;
}

}  // namespace

std::string render_html(const Report& r) {
  const std::string subject = html_escape(r.target.empty() ? r.address : r.target);
  std::string out(kHead);
  out += "<title>svcproxy loadtest: " + subject + "</title>\n";
  out += kStyle;
  out += "<body>\n<h1>svcproxy loadtest: " + subject + "</h1>\n" + run_line(r);
  out += warnings(r) + headline(r) + latency_section(r) + endpoints_section(r) + timeline_section(r) +
         errors_section(r);
  return out + "</body>\n</html>\n";
}

}  // namespace svcproxy::loadtest
