// RenderReportHtml: the page's sections, its chart elements counted against the input, escaping
// of everything that came from the store, empty input, the timeline limit and determinism.
#include "daemon/report_html.h"

#include <doctest/doctest.h>

#include <string>

using namespace guardian;
using nlohmann::json;

namespace {

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos;
       pos = haystack.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// The text of the first element that starts with `open`, up to `close`.
std::string Element(const std::string& html, const std::string& open, const std::string& close) {
  size_t start = html.find(open);
  if (start == std::string::npos) return "";
  size_t end = html.find(close, start);
  return html.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

json Step(const std::string& phase, int64_t started, json ended, const std::string& status,
          const std::string& message) {
  return {{"phase", phase},    {"attempt", 1},     {"started_at", started},
          {"ended_at", ended}, {"status", status}, {"message", message}};
}

json Incident(int64_t id, const std::string& check, const std::string& mode, int64_t onset,
              json steps) {
  return {{"id", id},
          {"check", check},
          {"mode", mode},
          {"state", "resolved"},
          {"onset_at", onset},
          {"detected_at", onset + 300},
          {"recovered_at", onset + 2000},
          {"mttr_ms", 2000},
          {"target_ms", 1500},
          {"steps", std::move(steps)}};
}

json ModeStats(int64_t target, json p95) {
  return {{"count", 2},
          {"ok", 2},
          {"failed", 0},
          {"target_ms", target},
          {"mttd_ms", {{"p50", 100}, {"p95", 200}, {"max", 250}}},
          {"mttr_ms", {{"p50", 300}, {"p95", p95}, {"max", 900}}}};
}

ReportInput Realistic() {
  ReportInput in;
  in.generated_at_ms = 1795511411000;  // 2026-11-24T09:10:11Z
  in.version = "0.1.0";
  in.mttr = {{"modes",
              {{{"mode", "missing_config"},
                {"count", 4},
                {"target_ms", 5000},
                {"mttd_p50_ms", 120},
                {"mttd_p95_ms", 300},
                {"mttd_max_ms", 310},
                {"mttr_p50_ms", 393},
                {"mttr_p95_ms", 900},
                {"mttr_max_ms", 1200},
                {"over_target", false}},
               {{"mode", "disk_full"},
                {"count", 3},
                {"target_ms", 3000},
                {"mttd_p50_ms", 200},
                {"mttd_p95_ms", 400},
                {"mttd_max_ms", 410},
                {"mttr_p50_ms", 2500},
                {"mttr_p95_ms", 4400},
                {"mttr_max_ms", 14400},
                {"over_target", true}},
               {{"mode", "port_conflict"},
                {"count", 0},
                {"target_ms", 2000},
                {"mttd_p50_ms", nullptr},
                {"mttd_p95_ms", nullptr},
                {"mttd_max_ms", nullptr},
                {"mttr_p50_ms", nullptr},
                {"mttr_p95_ms", nullptr},
                {"mttr_max_ms", nullptr},
                {"over_target", false}}}}};
  int64_t t = 1795511000000;
  in.incidents =
      json::array({Incident(3, "web", "missing_config", t + 20000,
                            {Step("backup", t + 20300, t + 20400, "ok", "saved"),
                             Step("remediate", t + 20400, nullptr, "running", "restoring")}),
                   Incident(2, "db", "disk_full", t + 10000,
                            {Step("probe", t + 10300, t + 10300, "ok", "zero length"),
                             Step("remediate", t + 10300, t + 11000, "failed", "rm failed"),
                             Step("rollback", t + 11000, t + 11500, "ok", ""),
                             Step("verify", t + 11500, t + 12000, "ok", "healthy")}),
                   Incident(1, "web", "missing_config", t, json::array())});
  in.incidents[2]["recovered_at"] = nullptr;
  in.incidents[2]["mttr_ms"] = nullptr;
  in.incidents[2]["state"] = "open";
  in.chaos_runs = json::array(
      {{{"id", 8},
        {"started_at", t + 60000},
        {"ended_at", t + 90000},
        {"ok", false},
        {"experiments", 3},
        {"failed", 1},
        {"modes",
         {{"disk_full", ModeStats(3000, 4400)}, {"missing_config", ModeStats(5000, 900)}}}},
       {{"id", 7},
        {"started_at", t},
        {"ended_at", t + 30000},
        {"ok", true},
        {"experiments", 2},
        {"failed", 0},
        {"modes",
         {{"missing_config", ModeStats(5000, 800)},
          {"port_conflict", ModeStats(2000, nullptr)}}}}});
  return in;
}

}  // namespace

TEST_CASE("a realistic report has every section and one chart element per input item") {
  std::string html = RenderReportHtml(Realistic());
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(Count(html,
              "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
              "style-src 'unsafe-inline'\">") == 1);
  CHECK(Count(html, "<title>Guardian MTTR report</title>") == 1);
  CHECK(html.find("2026-11-24T09&#58;10&#58;11Z") == std::string::npos);  // not from input
  CHECK(html.find("2026-11-24T09:10:11Z") != std::string::npos);
  CHECK(html.find("3 incidents") != std::string::npos);
  CHECK(Count(html, "<section id=\"modes\">") == 1);
  CHECK(Count(html, "<section id=\"timelines\">") == 1);
  CHECK(Count(html, "<section id=\"trend\">") == 1);

  // Modes: table cells, one chart, count 0 shows text instead of bars, over-target bars marked.
  CHECK(html.find("<td>393 ms</td>") != std::string::npos);
  CHECK(html.find("<td>4400 ms</td>") != std::string::npos);  // under 10 s: still ms
  CHECK(html.find("<td>14.4 s</td>") != std::string::npos);
  CHECK(Count(html, "<svg class=\"chart mode-chart\"") == 1);
  CHECK(Count(html, "no incidents") == 1);
  CHECK(Count(html, "class=\"bar p95 over\"") == 1);
  CHECK(Count(html, "class=\"bar p50 over\"") == 1);
  CHECK(Count(html, "class=\"bar p95\"") == 1);  // missing_config only; port_conflict has none
  CHECK(Count(html, "class=\"max\"") == 2);
  std::string chart = Element(html, "<svg class=\"chart mode-chart\"", "</svg>");
  CHECK(Count(chart, "class=\"target\"") == 3);
  std::string modes_table = Element(html, "<section id=\"modes\">", "</table>");
  CHECK(Count(modes_table, "<td>no</td>") == 1);
  CHECK(Count(modes_table, "<td>yes</td>") == 1);
  CHECK(Count(modes_table, "<td>–</td>") == 5);  // port_conflict: 4 durations and the verdict

  // Timelines: one detect per incident plus one rect per step.
  CHECK(Count(html, "<svg class=\"chart timeline\"") == 3);
  CHECK(Count(html, "class=\"phase ") == 3 + 2 + 4 + 0);
  CHECK(Count(html, "class=\"phase detect\"") == 3);
  CHECK(Count(html, "class=\"phase remediate failed\"") == 1);
  CHECK(Count(html, "still running") == 1);
  CHECK(Count(html, "class=\"recovered\"") == 2);  // incident 1 is still open
  CHECK(html.find("#2 db (disk_full) resolved MTTR 2000 ms") != std::string::npos);
  CHECK(html.find("#1 web (missing_config) open MTTR –") != std::string::npos);
  // The zero-length probe step is still drawn 2 px wide.
  std::string probe = Element(html, "<rect class=\"phase probe\"", "</rect>");
  CHECK(probe.find("width=\"2.0\"") != std::string::npos);

  // Trend: one line per mode seen in any run, the single-point mode gets a circle too.
  std::string trend = Element(html, "<svg class=\"chart trend\"", "</svg>");
  CHECK(Count(trend, "<polyline class=\"mode-line\"") == 3);
  CHECK(Count(trend, "data-mode=\"disk_full\"") == 1);
  CHECK(Count(trend, "data-mode=\"missing_config\"") == 1);
  CHECK(Count(trend, "data-mode=\"port_conflict\"") == 1);
  CHECK(Count(trend, "<circle") == 1);  // disk_full: one run; port_conflict: none (p95 null)
  CHECK(trend.find(">target</text>") != std::string::npos);
  // Oldest first on the x axis: run #7's label comes before #8's.
  CHECK(trend.find(">#7<") < trend.find(">#8<"));
  // The runs table is newest first.
  std::string runs = Element(html, "<section id=\"trend\">", "</section>");
  CHECK(runs.find("<td>#8</td>") < runs.find("<td>#7</td>"));
  CHECK(runs.find("<td>#8</td><td>2026-11-24T") != std::string::npos);
}

TEST_CASE("everything from the input is escaped, and the page has no script and no URL") {
  ReportInput in = Realistic();
  const std::string evil = "<script>alert(1)</script>\"'&";
  in.incidents[0]["check"] = evil;
  in.incidents[0]["steps"][0]["message"] = "GET http://x/ failed: " + evil;
  in.incidents[0]["steps"][0]["phase"] = "backup\" onmouseover=\"x";
  in.mttr["modes"][0]["mode"] = evil;
  in.chaos_runs[0]["modes"][evil] = in.chaos_runs[0]["modes"]["disk_full"];
  in.version = evil;
  std::string html = RenderReportHtml(in);
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("http://") == std::string::npos);
  CHECK(html.find("https://") == std::string::npos);
  CHECK(html.find("onmouseover=\"") == std::string::npos);
  const std::string escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;";
  CHECK(Count(html, escaped) >= 6);
  CHECK(html.find("data-mode=\"" + escaped + "\"") != std::string::npos);
  CHECK(html.find("#3 " + escaped + " (missing_config)") != std::string::npos);
}

TEST_CASE("empty input renders a page that says so") {
  std::string html;
  REQUIRE_NOTHROW(html = RenderReportHtml(ReportInput{}));
  CHECK(html.find("1970-01-01T00:00:00Z") != std::string::npos);
  CHECK(html.find("0 incidents") != std::string::npos);
  CHECK(html.find("No incidents recorded.") != std::string::npos);
  CHECK(html.find("No chaos runs are stored yet") != std::string::npos);
  CHECK(html.find("<code>chaos/run</code> stores each run") != std::string::npos);
  CHECK(html.find("<svg") == std::string::npos);
  CHECK(html.find("</html>") != std::string::npos);
}

TEST_CASE("missing, null and wrongly typed fields do not throw") {
  ReportInput in;
  in.incidents = json::array({json::object(),
                              7,
                              {{"id", nullptr}, {"steps", "x"}},
                              {{"steps", json::array({json::object(), nullptr})}}});
  in.mttr = {{"modes", json::array({json::object(), "x", {{"mode", "m"}, {"count", "3"}}})}};
  in.chaos_runs = json::array({json::object(), {{"modes", {{"m", nullptr}}}}, 3});
  std::string html;
  REQUIRE_NOTHROW(html = RenderReportHtml(in));
  CHECK(Count(html, "<svg class=\"chart timeline\"") == 3);
  CHECK(Count(html,
              "<polyline class=\"mode-line\" data-mode=\"m\" stroke=\"#4e79a7\" "
              "points=\"\">") == 1);
  in.mttr = json::array();
  in.incidents = "not an array";
  in.chaos_runs = nullptr;
  REQUIRE_NOTHROW(html = RenderReportHtml(in));
  CHECK(html.find("No incidents recorded.") != std::string::npos);
}

TEST_CASE("max_timelines draws only the newest incidents") {
  ReportInput in;
  for (int64_t id = 5; id >= 1; --id) {
    in.incidents.push_back(
        Incident(id, "c" + std::to_string(id), "disk_full", id * 100000,
                 json::array({Step("verify", id * 100000 + 400, id * 100000 + 900, "ok", "")})));
  }
  in.max_timelines = 2;
  std::string html = RenderReportHtml(in);
  CHECK(Count(html, "<text class=\"label\"") == 2);
  CHECK(Count(html, "<svg class=\"chart timeline\"") == 2);
  CHECK(html.find(">#5 c5 (disk_full)") != std::string::npos);
  CHECK(html.find(">#4 c4 (disk_full)") != std::string::npos);
  CHECK(html.find(">#3 c3") == std::string::npos);
  CHECK(html.find(">#5 ") < html.find(">#4 "));
  CHECK(html.find("5 incidents") != std::string::npos);  // the header counts all of them
  CHECK(html.find("3 older incidents not drawn.") != std::string::npos);
}

TEST_CASE("the same input gives the same bytes") {
  CHECK(RenderReportHtml(Realistic()) == RenderReportHtml(Realistic()));
  ReportInput in = Realistic();
  std::string once = RenderReportHtml(in);
  CHECK(RenderReportHtml(in) == once);
}
