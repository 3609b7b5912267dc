#include "daemon/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <system_error>

namespace guardian {

namespace {

bool IsNameStart(char c, bool allow_colon) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (allow_colon && c == ':');
}

bool IsNameChar(char c, bool allow_colon) {
  return IsNameStart(c, allow_colon) || (c >= '0' && c <= '9');
}

bool ValidName(const std::string& s, bool allow_colon) {
  if (s.empty() || !IsNameStart(s[0], allow_colon)) return false;
  for (char c : s) {
    if (!IsNameChar(c, allow_colon)) return false;
  }
  return true;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

void ValidateBuckets(const std::string& name, const std::vector<double>& bounds) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      throw std::invalid_argument("metrics: histogram '" + name +
                                  "' has a non-finite bucket bound (+Inf is implied)");
    }
    if (i > 0 && !(bounds[i] > bounds[i - 1])) {
      throw std::invalid_argument("metrics: histogram '" + name +
                                  "' bucket bounds are not strictly increasing");
    }
  }
}

// Shortest text that parses back to the same double (what Go's client prints too), except that
// integers are printed in full rather than as 1e+06, and the specials use Prometheus' spelling.
std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return "0";  // also -0, which some parsers would keep as a distinct value
  char buf[64];
  std::to_chars_result r;
  // Below 2^53 every integer is exact, so the fixed form has no spurious digits.
  if (std::fabs(v) <= 9007199254740992.0 && v == std::trunc(v)) {
    r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  } else {
    r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::general);
  }
  return std::string(buf, r.ptr);
}

// The text format escapes backslash and newline in HELP text, and the double quote too in
// label values.
std::string Escape(const std::string& s, bool quote) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"}` (plus an optional trailing le pair), or "" when there are no labels at all.
std::string LabelSet(const Labels& names, const Labels& values, const std::string* le = nullptr) {
  if (names.empty() && le == nullptr) return "";
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    out += Escape(values[i], true);
    out += '"';
  }
  if (le != nullptr) {
    if (!names.empty()) out += ',';
    out += "le=\"";
    out += *le;
    out += '"';
  }
  out += '}';
  return out;
}

}  // namespace

const char* MetricsRegistry::TypeName(Kind kind) {
  switch (kind) {
    case Kind::kCounter:
      return "counter";
    case Kind::kGauge:
      return "gauge";
    case Kind::kHistogram:
      break;
  }
  return "histogram";
}

MetricsRegistry::Family& MetricsRegistry::Declare(const std::string& name, const std::string& help,
                                                  const Labels& label_names, Kind kind) {
  if (!ValidName(name, /*allow_colon=*/true)) {
    throw std::invalid_argument("metrics: invalid metric name '" + name + "'");
  }
  if (families_.count(name) != 0) {
    throw std::invalid_argument("metrics: metric '" + name + "' declared twice");
  }
  for (size_t i = 0; i < label_names.size(); ++i) {
    const std::string& label = label_names[i];
    if (!ValidName(label, /*allow_colon=*/false) || label.compare(0, 2, "__") == 0) {
      throw std::invalid_argument("metrics: invalid label name '" + label + "' in '" + name + "'");
    }
    if (kind == Kind::kHistogram && label == "le") {
      throw std::invalid_argument("metrics: histogram '" + name + "' may not use label 'le'");
    }
    if (std::find(label_names.begin(), label_names.begin() + i, label) != label_names.begin() + i) {
      throw std::invalid_argument("metrics: label '" + label + "' repeated in '" + name + "'");
    }
  }
  Family& f = families_[name];
  f.kind = kind;
  f.help = help;
  f.label_names = label_names;
  return f;
}

MetricsRegistry::Family& MetricsRegistry::Find(const std::string& name, const Labels& labels,
                                               const char* op, Kind kind,
                                               std::optional<Kind> or_kind) {
  auto it = families_.find(name);
  if (it == families_.end()) {
    throw std::invalid_argument(std::string("metrics: ") + op + " on undeclared metric '" + name +
                                "'");
  }
  Family& f = it->second;
  if (f.kind != kind && f.kind != or_kind) {
    throw std::invalid_argument(std::string("metrics: ") + op + " on " + TypeName(f.kind) + " '" +
                                name + "'");
  }
  if (labels.size() != f.label_names.size()) {
    throw std::invalid_argument("metrics: '" + name + "' takes " +
                                std::to_string(f.label_names.size()) + " label values, got " +
                                std::to_string(labels.size()));
  }
  return f;
}

void MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                 const Labels& label_names) {
  if (!EndsWith(name, "_total")) {
    throw std::invalid_argument("metrics: counter '" + name + "' must end in _total");
  }
  Declare(name, help, label_names, Kind::kCounter);
}

void MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                               const Labels& label_names) {
  Declare(name, help, label_names, Kind::kGauge);
}

void MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                   const Labels& label_names,
                                   const std::vector<double>& default_buckets) {
  // Validate before declaring so a refused histogram leaves no family behind.
  ValidateBuckets(name, default_buckets);
  Declare(name, help, label_names, Kind::kHistogram).default_buckets = default_buckets;
}

void MetricsRegistry::Inc(const std::string& name, const Labels& labels, double by) {
  Family& f = Find(name, labels, "Inc", Kind::kCounter, Kind::kGauge);
  if (f.kind == Kind::kCounter && !(by >= 0)) {
    throw std::invalid_argument("metrics: counter '" + name + "' incremented by " +
                                FormatValue(by));
  }
  f.values[labels] += by;
}

void MetricsRegistry::Set(const std::string& name, const Labels& labels, double value) {
  Find(name, labels, "Set", Kind::kGauge).values[labels] = value;
}

void MetricsRegistry::Observe(const std::string& name, const Labels& labels, double value,
                              const std::vector<double>* buckets_if_new) {
  Family& f = Find(name, labels, "Observe", Kind::kHistogram);
  auto it = f.histograms.find(labels);
  if (it == f.histograms.end()) {
    const std::vector<double>& bounds = buckets_if_new ? *buckets_if_new : f.default_buckets;
    ValidateBuckets(name, bounds);
    HistogramSeries s;
    s.bounds = bounds;
    s.counts.assign(bounds.size() + 1, 0);
    it = f.histograms.emplace(labels, std::move(s)).first;
  }
  if (std::isnan(value)) return;
  HistogramSeries& s = it->second;
  // First bound >= value: buckets are "less than or equal" (le).
  size_t i = std::lower_bound(s.bounds.begin(), s.bounds.end(), value) - s.bounds.begin();
  ++s.counts[i];
  ++s.count;
  s.sum += value;
}

void MetricsRegistry::ResetGauge(const std::string& name) {
  auto it = families_.find(name);
  if (it == families_.end() || it->second.kind != Kind::kGauge) {
    throw std::invalid_argument("metrics: ResetGauge on '" + name + "', which is not a gauge");
  }
  it->second.values.clear();
}

std::string MetricsRegistry::Render() const {
  std::string out;
  for (const auto& [name, f] : families_) {
    out += "# HELP " + name + " " + Escape(f.help, false) + "\n";
    out += "# TYPE " + name + " " + TypeName(f.kind) + "\n";
    if (f.kind != Kind::kHistogram) {
      for (const auto& [labels, value] : f.values) {
        out += name + LabelSet(f.label_names, labels) + " " + FormatValue(value) + "\n";
      }
      continue;
    }
    for (const auto& [labels, s] : f.histograms) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i <= s.bounds.size(); ++i) {
        cumulative += s.counts[i];
        std::string le = i < s.bounds.size() ? FormatValue(s.bounds[i]) : "+Inf";
        out += name + "_bucket" + LabelSet(f.label_names, labels, &le) + " " +
               std::to_string(cumulative) + "\n";
      }
      std::string ls = LabelSet(f.label_names, labels);
      out += name + "_sum" + ls + " " + FormatValue(s.sum) + "\n";
      out += name + "_count" + ls + " " + std::to_string(s.count) + "\n";
    }
  }
  return out;
}

std::vector<double> BucketsAroundTarget(double target_seconds) {
  if (!std::isfinite(target_seconds) || !(target_seconds > 0)) {
    throw std::invalid_argument("metrics: MTTR target must be finite and > 0, got " +
                                FormatValue(target_seconds));
  }
  static const double kFactors[] = {0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5};
  std::vector<double> out;
  for (double f : kFactors) {
    // Round to 15 significant digits: 0.3 * 0.75 is 0.22499999999999998 in binary and would be
    // the le label; any decimal of 15 digits round-trips, so a target like 0.3 stays exact.
    // to_chars/from_chars rather than printf/strtod: they ignore the locale.
    char buf[32];
    auto end =
        std::to_chars(buf, buf + sizeof(buf), target_seconds * f, std::chars_format::general, 15)
            .ptr;
    double rounded = 0;
    std::from_chars(buf, end, rounded);
    out.push_back(rounded);
  }
  // Tiny or huge targets can round neighbours together or overflow; keep the result valid.
  out.erase(std::remove_if(out.begin(), out.end(), [](double b) { return !std::isfinite(b); }),
            out.end());
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<double> LatencyBuckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

}  // namespace guardian
