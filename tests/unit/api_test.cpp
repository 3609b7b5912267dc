// Operator API helpers: HTTP status per Status code, the JSON error body, /v1/incidents query
// parsing (every accepted parameter, every rejected one named), and the /v1/mttr report
// (nearest-rank percentiles per mode, targets, modes without incidents).
#include "daemon/api.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

using namespace guardian;
using nlohmann::json;

namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

Status Parse(const std::map<std::string, std::string>& query, IncidentFilter* filter) {
  return ParseIncidentFilter(query, filter);
}

// Asserts the query is refused as invalid with a message containing every one of `parts`.
void ExpectRejected(const std::map<std::string, std::string>& query,
                    const std::vector<std::string>& parts) {
  IncidentFilter filter;
  Status s = Parse(query, &filter);
  INFO("message: " << s.message());
  CHECK_FALSE(s.ok());
  CHECK(s.code() == Status::Code::kInvalidArgument);
  CHECK(HttpStatusFor(s) == 400);
  for (const auto& p : parts) CHECK_MESSAGE(Contains(s.message(), p), "missing: " << p);
}

RecoveryTime Rt(const std::string& mode, int64_t mttr, int64_t mttd, int64_t target) {
  RecoveryTime t;
  t.mode = mode;
  t.mttr_ms = mttr;
  t.mttd_ms = mttd;
  t.target_ms = target;
  return t;
}

// The report's row for `mode`; fails the test when there is none or more than one.
json Row(const json& report, const std::string& mode) {
  REQUIRE(report.contains("modes"));
  REQUIRE(report["modes"].is_array());
  json found;
  int n = 0;
  for (const auto& row : report["modes"]) {
    if (row.at("mode") == mode) {
      found = row;
      ++n;
    }
  }
  INFO("report: " << report.dump());
  REQUIRE_MESSAGE(n == 1, "rows for mode " << mode << ": " << n);
  return found;
}

std::vector<std::string> ModeNames(const json& report) {
  std::vector<std::string> out;
  for (const auto& row : report["modes"]) out.push_back(row.at("mode").get<std::string>());
  return out;
}

int64_t I(const json& row, const char* key) {
  INFO("row: " << row.dump() << " key: " << key);
  REQUIRE(row.contains(key));
  REQUIRE(row[key].is_number_integer());
  return row[key].get<int64_t>();
}

}  // namespace

// ---- HttpStatusFor, ErrorResponse, JsonResponse -------------------------------------------------

TEST_CASE("HttpStatusFor maps each Status code") {
  CHECK(HttpStatusFor(Status::OK()) == 200);
  CHECK(HttpStatusFor(Status::InvalidArgument("x")) == 400);
  CHECK(HttpStatusFor(Status::NotFound("x")) == 404);
  CHECK(HttpStatusFor(Status::Busy("held")) == 409);
  CHECK(HttpStatusFor(Status::Aborted("shutting down")) == 503);
  CHECK(HttpStatusFor(Status::IOError("x")) == 500);
  CHECK(HttpStatusFor(Status::Corruption("x")) == 500);
  CHECK(HttpStatusFor(Status::Timeout("x")) == 500);
}

TEST_CASE("ErrorResponse is {\"error\": {\"status\", \"message\"}} as JSON") {
  HttpResponse r = ErrorResponse(404, "no incident 7");
  CHECK(r.status == 404);
  CHECK(r.content_type == "application/json");
  REQUIRE_FALSE(r.body.empty());
  CHECK(r.body.back() == '\n');
  json body = json::parse(r.body);
  CHECK(body == json{{"error", {{"status", 404}, {"message", "no incident 7"}}}});
  CHECK(body["error"]["status"].is_number_integer());
  CHECK(body.size() == 1);
  CHECK(body["error"].size() == 2);
}

TEST_CASE("ErrorResponse escapes quotes and control characters and survives invalid UTF-8") {
  HttpResponse r = ErrorResponse(400, "bad \"name\"\n\ttab");
  json body = json::parse(r.body);
  CHECK(body["error"]["message"] == "bad \"name\"\n\ttab");

  // A message quoting client bytes may not be UTF-8; it must still produce valid JSON.
  HttpResponse bad;
  CHECK_NOTHROW(bad = ErrorResponse(400, "unknown parameter '\xff\xfe'"));
  CHECK(bad.status == 400);
  json parsed = json::parse(bad.body, nullptr, false);
  REQUIRE_FALSE(parsed.is_discarded());
  std::string msg = parsed["error"]["message"].get<std::string>();
  CHECK(msg.starts_with("unknown parameter '"));
  CHECK(Contains(msg, "\xEF\xBF\xBD"));  // U+FFFD replacement character
}

TEST_CASE("JsonResponse keeps the status and the body round-trips") {
  json body = {{"a", 1}, {"b", {1, 2, 3}}, {"c", nullptr}};
  HttpResponse r = JsonResponse(201, body);
  CHECK(r.status == 201);
  CHECK(r.content_type == "application/json");
  CHECK(r.body.back() == '\n');
  CHECK(json::parse(r.body) == body);
}

// ---- ParseIncidentFilter
// -------------------------------------------------------------------------

TEST_CASE("ParseIncidentFilter: no parameters leaves the defaults") {
  IncidentFilter f;
  REQUIRE(Parse({}, &f).ok());
  CHECK(f.check_id.empty());
  CHECK(f.mode.empty());
  CHECK(f.state.empty());
  CHECK(f.since == 0);
  CHECK(f.limit == 100);
}

TEST_CASE("ParseIncidentFilter accepts check, mode, state, since and limit together") {
  IncidentFilter f;
  Status s = Parse({{"check", "app-config"},
                    {"mode", "disk_full"},
                    {"state", "resolved"},
                    {"since", "1700000000000"},
                    {"limit", "25"}},
                   &f);
  INFO(s.message());
  REQUIRE(s.ok());
  CHECK(f.check_id == "app-config");
  CHECK(f.mode == "disk_full");
  CHECK(f.state == "resolved");
  CHECK(f.since == 1'700'000'000'000);
  CHECK(f.limit == 25);
}

TEST_CASE("ParseIncidentFilter accepts every state and every mode") {
  for (const char* state : {"open", "running", "waiting", "resolved", "escalated"}) {
    CAPTURE(state);
    IncidentFilter f;
    REQUIRE(Parse({{"state", state}}, &f).ok());
    CHECK(f.state == state);
  }
  for (const char* mode : {"db_corruption", "port_conflict", "slow_boot", "out_of_memory",
                           "disk_full", "network_unreachable", "api_timeout", "missing_config",
                           "invalid_credentials", "model_server_down"}) {
    CAPTURE(mode);
    IncidentFilter f;
    REQUIRE(Parse({{"mode", mode}}, &f).ok());
    CHECK(f.mode == mode);
  }
}

TEST_CASE("ParseIncidentFilter: since and limit at their bounds") {
  IncidentFilter f;
  REQUIRE(Parse({{"since", "0"}, {"limit", "1"}}, &f).ok());
  CHECK(f.since == 0);
  CHECK(f.limit == 1);
  REQUIRE(Parse({{"since", "9223372036854775807"}, {"limit", "10000"}}, &f).ok());
  CHECK(f.since == INT64_MAX);
  CHECK(f.limit == 10'000);
}

TEST_CASE("ParseIncidentFilter rejects an unknown parameter, naming it") {
  ExpectRejected({{"chekc", "app"}}, {"unknown parameter 'chekc'", "known: check, mode"});
  ExpectRejected({{"Limit", "5"}}, {"'Limit'"});  // names are case-sensitive
  ExpectRejected({{"", "x"}}, {"unknown parameter ''"});
  // An unknown key fails the whole query even beside valid ones.
  ExpectRejected({{"check", "app"}, {"order", "asc"}}, {"'order'"});
}

TEST_CASE("ParseIncidentFilter rejects a non-numeric, negative or overflowing since") {
  for (const char* v : {"", "abc", "-1", "1.5", "+5", " 5", "5 ", "1e3", "0x10",
                        "9223372036854775808", "99999999999999999999"}) {
    CAPTURE(v);
    ExpectRejected({{"since", v}}, {"since:", "got '" + std::string(v) + "'"});
  }
}

TEST_CASE("ParseIncidentFilter rejects a limit that is not 1..10000") {
  for (const char* v : {"0", "-1", "10001", "4294967297", "", "ten", "5.0", "+5"}) {
    CAPTURE(v);
    ExpectRejected({{"limit", v}}, {"limit: expected 1..10000", "got '" + std::string(v) + "'"});
  }
}

TEST_CASE("ParseIncidentFilter rejects an unknown state or mode") {
  ExpectRejected({{"state", "closed"}}, {"state:", "'closed'"});
  ExpectRejected({{"state", "RESOLVED"}}, {"state:", "'RESOLVED'"});
  ExpectRejected({{"state", ""}}, {"state:"});
  ExpectRejected({{"mode", "banana"}}, {"mode: unknown mode 'banana'"});
  ExpectRejected({{"mode", "Disk_Full"}}, {"mode:", "'Disk_Full'"});
  ExpectRejected({{"mode", ""}}, {"mode:"});
}

// An empty check would mean "every check" in Store::ListIncidents: refused, like any value
// that cannot be a check id.
TEST_CASE("ParseIncidentFilter refuses a check that cannot be a check id") {
  ExpectRejected({{"check", ""}}, {"check:"});
  ExpectRejected({{"check", "no such check!"}}, {"check:", "'no such check!'"});
  ExpectRejected({{"check", "App"}}, {"check:"});
  ExpectRejected({{"check", std::string(65, 'a')}}, {"check:"});
  IncidentFilter f;
  REQUIRE(Parse({{"check", std::string(64, 'a')}}, &f).ok());
  CHECK(f.check_id == std::string(64, 'a'));
}

// ---- MttrReport
// ----------------------------------------------------------------------------------

TEST_CASE("MttrReport: nearest-rank p50/p95/max on 1..20, whatever the input order") {
  std::vector<RecoveryTime> times;
  // mttr 1..20 s in a scrambled order; mttd 20..1 * 10 ms in the opposite pairing.
  std::vector<int64_t> order = {7,  20, 1,  13, 2,  19, 11, 5,  16, 3,
                                18, 9,  14, 6,  10, 17, 4,  12, 8,  15};
  for (int64_t i : order) times.push_back(Rt("disk_full", i * 1000, (21 - i) * 10, 45'000));
  json report = MttrReport(times, {{"disk_full", 45'000}});
  REQUIRE(report["modes"].size() == 1);
  json row = Row(report, "disk_full");
  CHECK(I(row, "count") == 20);
  CHECK(I(row, "mttr_p50_ms") == 10'000);  // rank ceil(0.50 * 20) = 10
  CHECK(I(row, "mttr_p95_ms") == 19'000);  // rank ceil(0.95 * 20) = 19
  CHECK(I(row, "mttr_max_ms") == 20'000);
  CHECK(I(row, "mttd_p50_ms") == 100);
  CHECK(I(row, "mttd_p95_ms") == 190);
  CHECK(I(row, "mttd_max_ms") == 200);
  CHECK(I(row, "target_ms") == 45'000);
  CHECK(I(row, "over_target_count") == 0);
  CHECK(row["over_target"] == false);
}

TEST_CASE("MttrReport: nearest rank on small and odd-sized samples") {
  auto row_for = [](std::vector<int64_t> mttr) {
    std::vector<RecoveryTime> times;
    for (int64_t v : mttr) times.push_back(Rt("slow_boot", v, v, 1'000'000));
    return Row(MttrReport(times, {}), "slow_boot");
  };
  json one = row_for({42});
  CHECK(I(one, "count") == 1);
  CHECK(I(one, "mttr_p50_ms") == 42);
  CHECK(I(one, "mttr_p95_ms") == 42);
  CHECK(I(one, "mttr_max_ms") == 42);

  json two = row_for({20, 10});
  CHECK(I(two, "mttr_p50_ms") == 10);  // rank 1
  CHECK(I(two, "mttr_p95_ms") == 20);  // rank 2

  json three = row_for({300, 100, 200});
  CHECK(I(three, "mttr_p50_ms") == 200);  // rank ceil(1.5) = 2
  CHECK(I(three, "mttr_p95_ms") == 300);  // rank ceil(2.85) = 3

  // 1..100: p95 is the 95th value exactly, not interpolated and not the max.
  std::vector<int64_t> hundred;
  for (int64_t i = 100; i >= 1; --i) hundred.push_back(i);
  json h = row_for(hundred);
  CHECK(I(h, "mttr_p50_ms") == 50);
  CHECK(I(h, "mttr_p95_ms") == 95);
  CHECK(I(h, "mttr_max_ms") == 100);

  // 1..21: rank ceil(10.5) = 11 and ceil(19.95) = 20.
  std::vector<int64_t> odd;
  for (int64_t i = 1; i <= 21; ++i) odd.push_back(i);
  json o = row_for(odd);
  CHECK(I(o, "mttr_p50_ms") == 11);
  CHECK(I(o, "mttr_p95_ms") == 20);
  CHECK(I(o, "mttr_max_ms") == 21);

  // Duplicates count once each.
  json d = row_for({5, 5, 5, 5, 100});
  CHECK(I(d, "mttr_p50_ms") == 5);
  CHECK(I(d, "mttr_p95_ms") == 100);
}

TEST_CASE("MttrReport keeps modes apart and lists them by name") {
  std::vector<RecoveryTime> times = {
      Rt("port_conflict", 4'000, 400, 10'000), Rt("disk_full", 1'000, 100, 45'000),
      Rt("port_conflict", 2'000, 200, 10'000), Rt("disk_full", 3'000, 300, 45'000),
      Rt("disk_full", 2'000, 200, 45'000),
  };
  json report = MttrReport(times, {{"disk_full", 45'000}, {"port_conflict", 10'000}});
  CHECK(ModeNames(report) == std::vector<std::string>{"disk_full", "port_conflict"});

  json disk = Row(report, "disk_full");
  CHECK(I(disk, "count") == 3);
  CHECK(I(disk, "mttr_p50_ms") == 2'000);
  CHECK(I(disk, "mttr_p95_ms") == 3'000);
  CHECK(I(disk, "mttr_max_ms") == 3'000);
  CHECK(I(disk, "mttd_max_ms") == 300);
  CHECK(I(disk, "target_ms") == 45'000);

  json port = Row(report, "port_conflict");
  CHECK(I(port, "count") == 2);
  CHECK(I(port, "mttr_p50_ms") == 2'000);
  CHECK(I(port, "mttr_p95_ms") == 4'000);
  CHECK(I(port, "mttr_max_ms") == 4'000);
  CHECK(I(port, "mttd_p50_ms") == 200);
  CHECK(I(port, "mttd_max_ms") == 400);
  CHECK(I(port, "target_ms") == 10'000);
}

TEST_CASE("MttrReport lists a mode with a target and no incidents with count 0") {
  json report = MttrReport({Rt("disk_full", 1'000, 100, 45'000)},
                           {{"disk_full", 45'000}, {"slow_boot", 7'000}});
  CHECK(ModeNames(report) == std::vector<std::string>{"disk_full", "slow_boot"});
  json empty = Row(report, "slow_boot");
  CHECK(I(empty, "count") == 0);
  CHECK(I(empty, "target_ms") == 7'000);  // the configured target, not the mode default (5000)
  CHECK(I(empty, "over_target_count") == 0);
  CHECK(empty["over_target"] == false);
  for (const char* k :
       {"mttr_p50_ms", "mttr_p95_ms", "mttr_max_ms", "mttd_p50_ms", "mttd_p95_ms", "mttd_max_ms"}) {
    CAPTURE(k);
    REQUIRE(empty.contains(k));
    CHECK(empty[k].is_null());
  }

  // No incidents at all: every targeted mode still has its row.
  json none = MttrReport({}, {{"api_timeout", 15'000}, {"missing_config", 10'000}});
  CHECK(ModeNames(none) == std::vector<std::string>{"api_timeout", "missing_config"});
  CHECK(I(Row(none, "api_timeout"), "count") == 0);

  // Nothing configured and nothing recorded: an empty list, not null.
  json nothing = MttrReport({}, {});
  REQUIRE(nothing["modes"].is_array());
  CHECK(nothing["modes"].empty());
}

TEST_CASE("MttrReport: over_target when p95 exceeds the target; over_target_count per incident") {
  // mttr 1..20 s, p95 = 19 s.
  auto report_with_target = [](int64_t target) {
    std::vector<RecoveryTime> times;
    for (int64_t i = 1; i <= 20; ++i) times.push_back(Rt("api_timeout", i * 1000, 10, target));
    return Row(MttrReport(times, {{"api_timeout", target}}), "api_timeout");
  };
  json at = report_with_target(19'000);  // p95 == target: within it
  CHECK(I(at, "mttr_p95_ms") == 19'000);
  CHECK(at["over_target"] == false);
  CHECK(I(at, "over_target_count") == 1);  // only the 20 s incident

  json below = report_with_target(18'999);  // p95 one ms over
  CHECK(below["over_target"] == true);
  CHECK(I(below, "over_target_count") == 2);  // 19 s and 20 s

  json far = report_with_target(500);
  CHECK(far["over_target"] == true);
  CHECK(I(far, "over_target_count") == 20);

  json roomy = report_with_target(20'000);
  CHECK(roomy["over_target"] == false);
  CHECK(I(roomy, "over_target_count") == 0);  // equal to the target is within it
}

TEST_CASE("MttrReport: over_target_count uses each incident's recorded target") {
  // The configured target (10 s) is what p95 is judged against; each incident is counted
  // against the target it was recorded with (it may have changed since).
  std::vector<RecoveryTime> times = {
      Rt("missing_config", 8'000, 10, 5'000),    // over its recorded 5 s target
      Rt("missing_config", 9'000, 10, 20'000),   // within its recorded 20 s target
      Rt("missing_config", 12'000, 10, 20'000),  // within 20 s, though over today's 10 s
  };
  json row = Row(MttrReport(times, {{"missing_config", 10'000}}), "missing_config");
  CHECK(I(row, "target_ms") == 10'000);
  CHECK(I(row, "mttr_p95_ms") == 12'000);
  CHECK(row["over_target"] == true);
  CHECK(I(row, "over_target_count") == 1);
}

TEST_CASE("MttrReport: a mode with incidents but no configured target uses the mode default") {
  // e.g. the check was removed from the config since; its old incidents are still reported.
  std::vector<RecoveryTime> times = {Rt("db_corruption", 70'000, 1'000, 60'000),
                                     Rt("db_corruption", 50'000, 2'000, 60'000)};
  json report = MttrReport(times, {{"disk_full", 45'000}});
  CHECK(ModeNames(report) == std::vector<std::string>{"db_corruption", "disk_full"});
  json row = Row(report, "db_corruption");
  CHECK(I(row, "count") == 2);
  CHECK(I(row, "target_ms") == 60'000);  // db_corruption's default target
  CHECK(I(row, "mttr_p95_ms") == 70'000);
  CHECK(row["over_target"] == true);
  CHECK(I(row, "over_target_count") == 1);
  CHECK(I(row, "mttd_p50_ms") == 1'000);
  CHECK(I(row, "mttd_p95_ms") == 2'000);
  CHECK(I(Row(report, "disk_full"), "count") == 0);
}

TEST_CASE("MttrReport: a mode unknown to this build is judged against its recorded target") {
  // e.g. a store written by a newer build: no configured and no default target, so the row
  // uses the largest target its incidents were recorded with.
  json row = Row(
      MttrReport({Rt("legacy_mode", 1'000, 10, 30'000), Rt("legacy_mode", 40'000, 10, 20'000)}, {}),
      "legacy_mode");
  CHECK(I(row, "count") == 2);
  CHECK(I(row, "target_ms") == 30'000);
  CHECK(row["over_target"] == true);        // p95 40 s > 30 s
  CHECK(I(row, "over_target_count") == 1);  // 40 s missed its recorded 20 s
}

// ---- PassCache
// ----------------------------------------------------------------------------------

TEST_CASE("PassCache builds once per pass and again after an invalidation") {
  PassCache cache;
  int builds = 0;
  auto build = [&] {
    ++builds;
    return HttpResponse{200, "application/json", "build " + std::to_string(builds), nullptr};
  };
  CHECK(cache.Get(7, build).text() == "build 1");
  CHECK(cache.Get(7, build).text() == "build 1");  // same pass: reused
  CHECK(builds == 1);
  CHECK(cache.Get(8, build).text() == "build 2");  // a new pass: rebuilt
  cache.Invalidate();
  CHECK(cache.Get(8, build).text() == "build 3");  // invalidated within the pass: rebuilt
  CHECK(cache.Get(8, build).text() == "build 3");
  CHECK(builds == 3);
}
