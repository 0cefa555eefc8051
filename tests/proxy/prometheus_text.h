// A small parser of the Prometheus text exposition format (0.0.4) for
// tests: strict about what svcproxy must get right (every sample's family
// has HELP and TYPE before its samples, well-formed labels and values,
// histograms with increasing bounds, cumulative buckets, +Inf == _count).
#pragma once

#include <cmath>
#include <cstdlib>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace svcproxy::testing {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct PromFamily {
  std::string help;
  std::string type;
  std::vector<PromSample> samples;
};

struct PromText {
  std::map<std::string, PromFamily> families;

  // The value of the one sample `name` with exactly `labels`; throws if absent.
  double value(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
    for (const auto& [fname, f] : families)
      for (const auto& s : f.samples)
        if (s.name == name && s.labels == labels) return s.value;
    throw std::runtime_error("no sample " + name);
  }
};

inline double parse_prom_value(const std::string& text, int line) {
  if (text == "+Inf") return INFINITY;
  if (text == "-Inf") return -INFINITY;
  if (text == "NaN") return NAN;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0') throw std::runtime_error("line " + std::to_string(line) + ": bad value " + text);
  return v;
}

inline bool valid_metric_name(const std::string& name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
                    (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

// Throws std::runtime_error naming the line on any violation.
inline PromText parse_prometheus_text(const std::string& text) {
  PromText out;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  auto fail = [&](const std::string& why) { throw std::runtime_error("line " + std::to_string(n) + ": " + why); };
  auto family_of = [&](const std::string& sample) -> std::string {
    if (out.families.count(sample)) return sample;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s(suffix);
      if (sample.size() > s.size() && sample.compare(sample.size() - s.size(), s.size(), s) == 0) {
        const auto base = sample.substr(0, sample.size() - s.size());
        auto it = out.families.find(base);
        if (it != out.families.end() && (it->second.type == "histogram" || it->second.type == "summary"))
          return base;
      }
    }
    return {};
  };
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream words(line);
      std::string hash, kind, name;
      words >> hash >> kind >> name;
      if (kind != "HELP" && kind != "TYPE") continue;  // a comment
      if (!valid_metric_name(name)) fail("bad metric name in " + kind);
      std::string rest;
      std::getline(words, rest);
      if (!rest.empty() && rest[0] == ' ') rest.erase(0, 1);
      auto& f = out.families[name];
      if (!f.samples.empty()) fail(kind + " after samples of " + name);
      if (kind == "HELP") {
        if (!f.help.empty()) fail("second HELP for " + name);
        if (rest.empty()) fail("empty HELP for " + name);
        f.help = rest;
      } else {
        if (!f.type.empty()) fail("second TYPE for " + name);
        if (rest != "counter" && rest != "gauge" && rest != "histogram" && rest != "summary" && rest != "untyped")
          fail("bad TYPE " + rest);
        f.type = rest;
      }
      continue;
    }
    PromSample s;
    size_t pos = 0;
    while (pos < line.size() && line[pos] != '{' && line[pos] != ' ') ++pos;
    s.name = line.substr(0, pos);
    if (!valid_metric_name(s.name)) fail("bad sample name " + s.name);
    if (pos < line.size() && line[pos] == '{') {
      ++pos;
      while (pos < line.size() && line[pos] != '}') {
        const auto eq = line.find('=', pos);
        if (eq == std::string::npos) fail("label without =");
        const std::string key = line.substr(pos, eq - pos);
        if (!valid_metric_name(key)) fail("bad label name " + key);
        pos = eq + 1;
        if (pos >= line.size() || line[pos] != '"') fail("label value not quoted");
        ++pos;
        std::string value;
        while (pos < line.size() && line[pos] != '"') {
          if (line[pos] == '\\') {
            ++pos;
            if (pos >= line.size()) fail("dangling escape");
            value += line[pos] == 'n' ? '\n' : line[pos];
          } else {
            value += line[pos];
          }
          ++pos;
        }
        if (pos >= line.size()) fail("unterminated label value");
        ++pos;
        if (s.labels.count(key)) fail("duplicate label " + key);
        s.labels[key] = value;
        if (pos < line.size() && line[pos] == ',') ++pos;
      }
      if (pos >= line.size()) fail("unterminated label set");
      ++pos;
    }
    if (pos >= line.size() || line[pos] != ' ') fail("no value");
    std::istringstream rest(line.substr(pos + 1));
    std::string value, timestamp, extra;
    rest >> value >> timestamp >> extra;
    if (!extra.empty()) fail("trailing text");
    s.value = parse_prom_value(value, n);
    const auto family = family_of(s.name);
    if (family.empty()) fail("sample " + s.name + " has no HELP/TYPE before it");
    auto& f = out.families[family];
    if (f.help.empty() || f.type.empty()) fail("sample " + s.name + " lacks HELP or TYPE");
    f.samples.push_back(std::move(s));
  }
  // Histograms: per label set (without le), increasing bounds, cumulative
  // counts, +Inf last and equal to _count.
  for (const auto& [name, f] : out.families) {
    if (f.type != "histogram") continue;
    std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> buckets;
    std::map<std::map<std::string, std::string>, double> counts;
    bool has_sum = false;
    for (const auto& s : f.samples) {
      if (s.name == name + "_bucket") {
        auto labels = s.labels;
        auto le = labels.find("le");
        if (le == labels.end()) throw std::runtime_error(name + ": bucket without le");
        const double bound = parse_prom_value(le->second, 0);
        labels.erase(le);
        buckets[labels].push_back({bound, s.value});
      } else if (s.name == name + "_count") {
        counts[s.labels] = s.value;
      } else if (s.name == name + "_sum") {
        has_sum = true;
      } else {
        throw std::runtime_error(name + ": unexpected sample " + s.name);
      }
    }
    if (!has_sum) throw std::runtime_error(name + ": no _sum");
    if (buckets.empty()) throw std::runtime_error(name + ": no buckets");
    for (const auto& [labels, list] : buckets) {
      for (size_t i = 1; i < list.size(); ++i) {
        if (!(list[i].first > list[i - 1].first)) throw std::runtime_error(name + ": bounds not increasing");
        if (list[i].second < list[i - 1].second) throw std::runtime_error(name + ": buckets not cumulative");
      }
      if (!std::isinf(list.back().first)) throw std::runtime_error(name + ": last bucket is not +Inf");
      auto c = counts.find(labels);
      if (c == counts.end()) throw std::runtime_error(name + ": no _count");
      if (c->second != list.back().second) throw std::runtime_error(name + ": +Inf bucket != _count");
    }
  }
  return out;
}

}  // namespace svcproxy::testing
