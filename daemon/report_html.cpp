#include "daemon/report_html.h"

#include <time.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <optional>
#include <set>
#include <vector>

namespace guardian {

namespace {

using nlohmann::json;

// Colours live here once: the CSS rules and the legends are both written from these tables.
struct PhaseColour {
  const char* phase;
  const char* colour;
};
constexpr PhaseColour kPhases[] = {
    {"detect", "#9e9e9e"},   {"backup", "#5c6bc0"}, {"remediate", "#ef6c00"}, {"verify", "#2e7d32"},
    {"rollback", "#ad1457"}, {"probe", "#00838f"},  {"observe", "#8d6e63"},   {"wait", "#c5cae9"},
};
// The trend's modes, assigned in sorted mode order (Tableau 10: distinct, colour-blind aware).
constexpr const char* kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

constexpr double kWidth = 720;  // every chart's width in px

// HTML-escapes text for both element content and quoted attributes. ':' too, so a URL in a
// check's message is shown as text but the page still contains no "http://" anywhere.
std::string Escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
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
      case ':':
        out += "&#58;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Fixed-point text; std::to_chars never looks at the C locale, unlike printf's %f.
std::string Fixed(double v, int digits) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, digits);
  if (ec != std::errc()) return "0";
  return std::string(buf, end);
}

std::string Px(double v) { return Fixed(v, 1); }

// A number field of an object, or nullopt when it is missing, null, not a number or not finite.
// As double: epoch milliseconds stay exact (< 2^53) and the chart arithmetic cannot overflow.
std::optional<double> Num(const json& obj, const char* key) {
  if (!obj.is_object()) return std::nullopt;
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_number()) return std::nullopt;
  double v = it->get<double>();
  if (!std::isfinite(v)) return std::nullopt;
  return v;
}

std::string Str(const json& obj, const char* key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : "";
}

const json& Field(const json& obj, const char* key) {
  static const json kNull;
  if (!obj.is_object()) return kNull;
  auto it = obj.find(key);
  return it == obj.end() ? kNull : *it;
}

const json& AsArray(const json& j) {
  static const json kEmpty = json::array();
  return j.is_array() ? j : kEmpty;
}

std::string Int(std::optional<double> v) { return v ? Fixed(*v, 0) : "–"; }

std::string FormatMs(double ms) {
  if (std::fabs(ms) < 10000) return Fixed(ms, 0) + " ms";
  return Fixed(ms / 1000, 1) + " s";
}

std::string FormatMs(std::optional<double> ms) { return ms ? FormatMs(*ms) : "–"; }

std::string IsoUtc(int64_t ms) {
  // Floor division, so a (theoretical) time before 1970 still lands on the right second.
  time_t secs = static_cast<time_t>(ms / 1000 - (ms % 1000 < 0 ? 1 : 0));
  struct tm tm {};
  if (!gmtime_r(&secs, &tm)) return "–";
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

std::string IsoUtc(std::optional<double> ms) {
  // Beyond ±8.64e15 ms (the JavaScript date range) it is not a time anyone stored.
  if (!ms || std::fabs(*ms) > 8.64e15) return "–";
  return IsoUtc(static_cast<int64_t>(std::llround(*ms)));
}

std::string Style() {
  std::string css =
      "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;max-width:60em}"
      "h1{font-size:1.5em;margin:0}h2{font-size:1.2em;margin-top:1.8em}"
      "header p{color:#555;margin:.3em 0}"
      "table{border-collapse:collapse;margin:.6em 0}"
      "th,td{border-bottom:1px solid #ddd;padding:.25em .7em;text-align:right}"
      "th:first-child,td:first-child{text-align:left}"
      "tr.over td{color:#b71c1c}"
      ".chart{display:block;margin:.4em 0;font-size:12px}"
      ".chart text{fill:#333}.chart text.none{fill:#888;font-style:italic}"
      ".bar.p95{fill:#90caf9}.bar.p50{fill:#1565c0}"
      ".bar.p95.over{fill:#ef9a9a}.bar.p50.over{fill:#c62828}"
      ".max{stroke:#222;stroke-width:2}"
      ".target{stroke:#d32f2f;stroke-width:1.5;stroke-dasharray:4 3}"
      ".recovered{stroke:#1b5e20;stroke-width:2}"
      ".axis{stroke:#999;stroke-width:1}"
      ".phase{fill:#78909c}"
      ".phase.failed{stroke:#b71c1c;stroke-width:2}"
      ".phase.interrupted{stroke:#555;stroke-width:1.5;stroke-dasharray:3 2}"
      ".mode-line{fill:none;stroke-width:2}"
      ".legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.4em 1.2em}"
      ".sw{display:inline-block;width:.9em;height:.9em;margin-right:.35em;"
      "vertical-align:-.1em;border:1px solid #0003}"
      ".sw.failed{background:#fff;border:2px solid #b71c1c}"
      ".sw.target{background:#fff;border:1px dashed #d32f2f}"
      ".sw.recovered{background:#1b5e20}";
  for (const auto& p : kPhases) {
    css += std::string(".phase.") + p.phase + ",.sw." + p.phase + "{fill:" + p.colour +
           ";background:" + p.colour + "}";
  }
  return css;
}

void RenderHeader(const ReportInput& in, std::string& out) {
  size_t n = AsArray(in.incidents).size();
  std::string when = IsoUtc(in.generated_at_ms);
  out += "<header><h1>Guardian MTTR report</h1>\n<p>Generated <time datetime=\"" + when + "\">" +
         when + "</time> by guardiand " + Escape(in.version.empty() ? "(unknown)" : in.version) +
         " · " + std::to_string(n) + (n == 1 ? " incident" : " incidents") + "</p></header>\n";
}

struct ModeRow {
  std::string mode;
  double count = 0;
  std::optional<double> target, mttd_p50, p50, p95, max;
  std::optional<bool> over;  // nullopt: not judged (no incidents or no target)
};

ModeRow ReadModeRow(const json& j) {
  ModeRow r;
  r.mode = Str(j, "mode");
  r.count = Num(j, "count").value_or(0);
  r.target = Num(j, "target_ms");
  r.mttd_p50 = Num(j, "mttd_p50_ms");
  r.p50 = Num(j, "mttr_p50_ms");
  r.p95 = Num(j, "mttr_p95_ms");
  r.max = Num(j, "mttr_max_ms");
  if (r.count > 0 && r.p95) {
    // The API's own verdict when it gave one; else the same rule (p95 over the target).
    const json& over = Field(j, "over_target");
    if (over.is_boolean()) {
      r.over = over.get<bool>();
    } else if (r.target) {
      r.over = *r.p95 > *r.target;
    }
  }
  return r;
}

// One row per mode: p95 bar, p50 bar over it, a tick at max and the dashed target line.
void RenderModeChart(const std::vector<ModeRow>& rows, std::string& out) {
  constexpr double kRow = 30, kLeft = 150, kPlot = kWidth - kLeft - 20;
  double height = rows.size() * kRow + 8;
  out += "<svg class=\"chart mode-chart\" width=\"" + Px(kWidth) + "\" height=\"" + Px(height) +
         "\" viewBox=\"0 0 " + Px(kWidth) + " " + Px(height) +
         "\" role=\"img\" aria-label=\"MTTR per mode\">\n";
  for (size_t i = 0; i < rows.size(); ++i) {
    const ModeRow& r = rows[i];
    double y = 4 + i * kRow;
    // Per row, so a fast mode is not a sliver next to a slow one, and the target always fits.
    double scale = std::max(r.target.value_or(0), r.max.value_or(r.p95.value_or(0))) * 1.1;
    if (scale <= 0) scale = 1;
    auto x = [&](double v) { return kLeft + std::clamp(v / scale, 0.0, 1.0) * kPlot; };
    std::string mode = Escape(r.mode);
    out += "<text x=\"" + Px(kLeft - 8) + "\" y=\"" + Px(y + 19) + "\" text-anchor=\"end\">" +
           mode + "</text>\n";
    if (r.count <= 0 || !r.p95) {
      out += "<text class=\"none\" x=\"" + Px(kLeft + 4) + "\" y=\"" + Px(y + 19) + "\">" +
             (r.count <= 0 ? "no incidents" : "no data") + "</text>\n";
    } else {
      std::string over = r.over.value_or(false) ? " over" : "";
      std::string numbers = mode + ": MTTR p50 " + FormatMs(r.p50) + ", p95 " + FormatMs(r.p95) +
                            ", max " + FormatMs(r.max) + ", target " + FormatMs(r.target) + ", " +
                            Int(r.count) + " incidents";
      auto bar = [&](const char* cls, std::optional<double> v) {
        if (!v) return;
        out += "<rect class=\"bar " + std::string(cls) + over + "\" x=\"" + Px(kLeft) + "\" y=\"" +
               Px(y + 6) + "\" width=\"" + Px(x(*v) - kLeft) + "\" height=\"18\"><title>" +
               numbers + "</title></rect>\n";
      };
      bar("p95", r.p95);
      bar("p50", r.p50);
      if (r.max) {
        out += "<line class=\"max\" x1=\"" + Px(x(*r.max)) + "\" x2=\"" + Px(x(*r.max)) +
               "\" y1=\"" + Px(y + 3) + "\" y2=\"" + Px(y + 27) + "\"><title>" + mode +
               ": MTTR max " + FormatMs(r.max) + "</title></line>\n";
      }
    }
    if (r.target) {
      out += "<line class=\"target\" x1=\"" + Px(x(*r.target)) + "\" x2=\"" + Px(x(*r.target)) +
             "\" y1=\"" + Px(y + 1) + "\" y2=\"" + Px(y + 29) + "\"><title>" + mode + ": target " +
             FormatMs(r.target) + "</title></line>\n";
    }
  }
  out += "</svg>\n";
}

void RenderModes(const json& mttr, std::string& out) {
  out += "<section id=\"modes\">\n<h2>MTTR per mode</h2>\n";
  std::vector<ModeRow> rows;
  for (const json& j : AsArray(Field(mttr, "modes"))) {
    if (j.is_object()) rows.push_back(ReadModeRow(j));
  }
  if (rows.empty()) {
    out += "<p class=\"empty\">No modes in the MTTR report.</p>\n</section>\n";
    return;
  }
  out +=
      "<table>\n<thead><tr><th>mode</th><th>count</th><th>MTTD p50</th><th>MTTR p50</th>"
      "<th>MTTR p95</th><th>MTTR max</th><th>target</th><th>p95 within target</th></tr>"
      "</thead>\n<tbody>\n";
  for (const ModeRow& r : rows) {
    std::string within = !r.over ? "–" : (*r.over ? "no" : "yes");
    out += std::string(r.over.value_or(false) ? "<tr class=\"over\">" : "<tr>") + "<td>" +
           Escape(r.mode) + "</td><td>" + Int(r.count) + "</td><td>" + FormatMs(r.mttd_p50) +
           "</td><td>" + FormatMs(r.p50) + "</td><td>" + FormatMs(r.p95) + "</td><td>" +
           FormatMs(r.max) + "</td><td>" + FormatMs(r.target) + "</td><td>" + within +
           "</td></tr>\n";
  }
  out += "</tbody>\n</table>\n";
  RenderModeChart(rows, out);
  out += "</section>\n";
}

// One incident's row: detection in gray, then each step in its phase's colour, on an axis from
// onset to the last thing that happened.
void RenderTimeline(const json& inc, std::string& out) {
  constexpr double kLeft = 10, kPlot = kWidth - 2 * kLeft, kMinWidth = 2;
  const json& steps = AsArray(Field(inc, "steps"));
  std::optional<double> detected = Num(inc, "detected_at"), recovered = Num(inc, "recovered_at");
  double onset = Num(inc, "onset_at").value_or(detected.value_or(0));
  double end = std::max(onset, std::max(detected.value_or(onset), recovered.value_or(onset)));
  for (const json& s : steps) {
    // started_at too: a step still running must start inside the axis.
    end = std::max(end, Num(s, "started_at").value_or(onset));
    end = std::max(end, Num(s, "ended_at").value_or(onset));
  }
  double span = std::max(end - onset, 1.0);
  auto x = [&](double t) { return kLeft + std::clamp((t - onset) / span, 0.0, 1.0) * kPlot; };

  std::optional<double> mttr = Num(inc, "mttr_ms");
  if (!mttr && recovered) mttr = *recovered - onset;
  std::optional<double> id = Num(inc, "id");
  std::string label = "#" + (id ? Fixed(*id, 0) : std::string("?")) + " " +
                      Escape(Str(inc, "check")) + " (" + Escape(Str(inc, "mode")) + ") " +
                      Escape(Str(inc, "state")) + " MTTR " + FormatMs(mttr);

  out += "<svg class=\"chart timeline\" width=\"" + Px(kWidth) + "\" height=\"50\" viewBox=\"0 0 " +
         Px(kWidth) + " 50\">\n";
  out += "<text class=\"label\" x=\"" + Px(kLeft) + "\" y=\"13\">" + label + "</text>\n";
  out += "<text class=\"span\" x=\"" + Px(kLeft + kPlot) + "\" y=\"13\" text-anchor=\"end\">" +
         FormatMs(end - onset) + "</text>\n";
  out += "<line class=\"axis\" x1=\"" + Px(kLeft) + "\" x2=\"" + Px(kLeft + kPlot) +
         "\" y1=\"42.5\" y2=\"42.5\"/>\n";

  auto rect = [&](const std::string& cls, double x0, double x1, const std::string& title) {
    out += "<rect class=\"phase " + cls + "\" x=\"" + Px(x0) + "\" y=\"20\" width=\"" +
           Px(std::max(x1 - x0, kMinWidth)) + "\" height=\"20\"><title>" + title +
           "</title></rect>\n";
  };
  double det = detected.value_or(onset);
  rect("detect", x(onset), x(det), "detect: MTTD " + FormatMs(det - onset));
  for (const json& s : steps) {
    if (!s.is_object()) continue;
    std::string phase = Str(s, "phase"), status = Str(s, "status");
    if (phase.empty()) phase = "unknown";
    double started = Num(s, "started_at").value_or(onset);
    std::optional<double> ended = Num(s, "ended_at");
    std::string cls = Escape(phase);
    if (status == "failed") cls += " failed";
    if (status == "interrupted") cls += " interrupted";
    std::string title = Escape(phase) + ", " + Escape(status) + ", " +
                        (ended ? FormatMs(*ended - started) : std::string("still running"));
    if (std::string message = Str(s, "message"); !message.empty()) title += ": " + Escape(message);
    rect(cls, x(started), ended ? x(*ended) : kLeft + kPlot, title);
  }
  if (recovered) {
    out += "<line class=\"recovered\" x1=\"" + Px(x(*recovered)) + "\" x2=\"" + Px(x(*recovered)) +
           "\" y1=\"16\" y2=\"46\"><title>recovered after " + FormatMs(*recovered - onset) +
           "</title></line>\n";
  }
  if (std::optional<double> target = Num(inc, "target_ms");
      target && *target >= 0 && onset + *target <= end) {
    out += "<line class=\"target\" x1=\"" + Px(x(onset + *target)) + "\" x2=\"" +
           Px(x(onset + *target)) + "\" y1=\"16\" y2=\"46\"><title>target " + FormatMs(target) +
           "</title></line>\n";
  }
  out += "</svg>\n";
}

void RenderTimelines(const ReportInput& in, std::string& out) {
  out += "<section id=\"timelines\">\n<h2>Incident timelines</h2>\n";
  const json& incidents = AsArray(in.incidents);
  if (incidents.empty()) {
    out += "<p class=\"empty\">No incidents recorded.</p>\n</section>\n";
    return;
  }
  out += "<ul class=\"legend\">";
  for (const auto& p : kPhases) {
    out += std::string("<li><span class=\"sw ") + p.phase + "\"></span>" + p.phase + "</li>";
  }
  out +=
      "<li><span class=\"sw failed\"></span>failed step</li>"
      "<li><span class=\"sw recovered\"></span>recovered</li>"
      "<li><span class=\"sw target\"></span>target</li></ul>\n";
  // The array is newest first: its head is the newest incidents.
  size_t n = std::min(incidents.size(), in.max_timelines);
  for (size_t i = 0; i < n; ++i) {
    if (incidents[i].is_object()) RenderTimeline(incidents[i], out);
  }
  if (n < incidents.size()) {
    out += "<p>" + std::to_string(incidents.size() - n) + " older incidents not drawn.</p>\n";
  }
  out += "</section>\n";
}

// A run's p95 MTTR for a mode as a ratio to that mode's target, when both are there.
std::optional<double> TargetRatio(const json& run, const std::string& mode) {
  const json& m = Field(Field(run, "modes"), mode.c_str());
  std::optional<double> p95 = Num(Field(m, "mttr_ms"), "p95"), target = Num(m, "target_ms");
  if (!p95 || !target || *target <= 0) return std::nullopt;
  return *p95 / *target;
}

void RenderTrendChart(const std::vector<const json*>& runs, std::string& out) {
  std::set<std::string> modes;  // sorted: the palette order
  for (const json* run : runs) {
    const json& m = Field(*run, "modes");
    if (!m.is_object()) continue;
    for (const auto& [name, value] : m.items()) modes.insert(name);
  }
  double largest = 0;
  for (const json* run : runs) {
    for (const std::string& mode : modes) {
      largest = std::max(largest, TargetRatio(*run, mode).value_or(0));
    }
  }
  double y_max = std::max(1.2, largest * 1.1);

  constexpr double kLeft = 50, kRight = kWidth - 20, kTop = 10, kBottom = 200, kHeight = 230;
  size_t n = runs.size();
  auto x = [&](size_t i) {
    return n == 1 ? (kLeft + kRight) / 2 : kLeft + i * (kRight - kLeft) / (n - 1);
  };
  auto y = [&](double r) { return kBottom - std::min(r / y_max, 1.0) * (kBottom - kTop); };

  out += "<svg class=\"chart trend\" width=\"" + Px(kWidth) + "\" height=\"" + Px(kHeight) +
         "\" viewBox=\"0 0 " + Px(kWidth) + " " + Px(kHeight) +
         "\" role=\"img\" aria-label=\"MTTR p95 to target per chaos run\">\n";
  out += "<line class=\"axis\" x1=\"" + Px(kLeft) + "\" x2=\"" + Px(kRight) + "\" y1=\"" +
         Px(kBottom) + "\" y2=\"" + Px(kBottom) + "\"/>\n";
  out += "<line class=\"axis\" x1=\"" + Px(kLeft) + "\" x2=\"" + Px(kLeft) + "\" y1=\"" + Px(kTop) +
         "\" y2=\"" + Px(kBottom) + "\"/>\n";
  out += "<text x=\"" + Px(kLeft - 6) + "\" y=\"" + Px(kBottom + 4) +
         "\" text-anchor=\"end\">0</text>\n";
  out += "<text x=\"" + Px(kLeft - 6) + "\" y=\"" + Px(kTop + 4) + "\" text-anchor=\"end\">" +
         Fixed(y_max, 1) + "×</text>\n";
  out += "<line class=\"target\" x1=\"" + Px(kLeft) + "\" x2=\"" + Px(kRight) + "\" y1=\"" +
         Px(y(1)) + "\" y2=\"" + Px(y(1)) + "\"/>\n";
  out += "<text class=\"target-label\" x=\"" + Px(kRight) + "\" y=\"" + Px(y(1) - 4) +
         "\" text-anchor=\"end\">target</text>\n";
  // Every run's id when they fit; with many runs every k-th, always including the newest.
  size_t every = std::max<size_t>(1, (n + 11) / 12);
  for (size_t i = 0; i < n; ++i) {
    if ((n - 1 - i) % every != 0) continue;
    out += "<text x=\"" + Px(x(i)) + "\" y=\"" + Px(kBottom + 16) + "\" text-anchor=\"middle\">#" +
           Int(Num(*runs[i], "id")) + "</text>\n";
  }

  size_t colour = 0;
  std::string legend = "<ul class=\"legend\">";
  for (const std::string& mode : modes) {
    const char* c = kPalette[colour++ % std::size(kPalette)];
    std::string points;
    size_t count = 0;
    double last_x = 0, last_y = 0;
    for (size_t i = 0; i < n; ++i) {
      std::optional<double> r = TargetRatio(*runs[i], mode);
      if (!r) continue;
      last_x = x(i);
      last_y = y(*r);
      points += (count++ ? " " : "") + Px(last_x) + "," + Px(last_y);
    }
    std::string name = Escape(mode);
    out += "<polyline class=\"mode-line\" data-mode=\"" + name + "\" stroke=\"" + c +
           "\" points=\"" + points + "\"><title>" + name + "</title></polyline>\n";
    if (count == 1) {
      out += "<circle class=\"mode-point\" cx=\"" + Px(last_x) + "\" cy=\"" + Px(last_y) +
             "\" r=\"3.5\" fill=\"" + c + "\"><title>" + name + "</title></circle>\n";
    }
    legend += "<li><span class=\"sw\" style=\"background:" + std::string(c) + "\"></span>" + name +
              "</li>";
  }
  out += "</svg>\n" + legend + "</ul>\n";
}

void RenderTrend(const ReportInput& in, std::string& out) {
  out += "<section id=\"trend\">\n<h2>Chaos runs</h2>\n";
  std::vector<const json*> newest_first;
  for (const json& run : AsArray(in.chaos_runs)) {
    if (run.is_object()) newest_first.push_back(&run);
  }
  if (newest_first.empty()) {
    out +=
        "<p class=\"empty\">No chaos runs are stored yet: <code>chaos/run</code> stores each run "
        "it makes.</p>\n</section>\n";
    return;
  }
  out += "<p>MTTR p95 of each mode as a ratio to its target, oldest run to newest.</p>\n";
  RenderTrendChart({newest_first.rbegin(), newest_first.rend()}, out);
  out +=
      "<table>\n<thead><tr><th>id</th><th>started</th><th>ok</th><th>experiments</th>"
      "<th>failed</th></tr></thead>\n<tbody>\n";
  for (const json* run : newest_first) {
    const json& ok = Field(*run, "ok");
    std::string ok_text = ok.is_boolean() ? (ok.get<bool>() ? "yes" : "no") : "–";
    out += "<tr><td>#" + Int(Num(*run, "id")) + "</td><td>" + IsoUtc(Num(*run, "started_at")) +
           "</td><td>" + ok_text + "</td><td>" + Int(Num(*run, "experiments")) + "</td><td>" +
           Int(Num(*run, "failed")) + "</td></tr>\n";
  }
  out += "</tbody>\n</table>\n</section>\n";
}

}  // namespace

std::string RenderReportHtml(const ReportInput& in) {
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src "
      "'unsafe-inline'\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<title>Guardian MTTR report</title>\n<style>" +
      Style() + "</style>\n</head>\n<body>\n";
  RenderHeader(in, out);
  RenderModes(in.mttr, out);
  RenderTimelines(in, out);
  RenderTrend(in, out);
  out += "</body>\n</html>\n";
  return out;
}

}  // namespace guardian
