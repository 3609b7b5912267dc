// MetricsRegistry: exact Prometheus text exposition output, validation, and (when installed)
// promtool's own parser and linter as the judge of the format.
#include "daemon/metrics.h"

#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>

using namespace guardian;

TEST_CASE("counter renders HELP, TYPE and one line per series") {
  MetricsRegistry r;
  r.AddCounter("guardian_actions_total", "Playbook actions run.", {"mode", "result"});
  r.Inc("guardian_actions_total", {"missing_config", "ok"});
  r.Inc("guardian_actions_total", {"missing_config", "ok"}, 2);
  r.Inc("guardian_actions_total", {"disk_full", "failed"}, 0.5);
  CHECK(r.Render() ==
        "# HELP guardian_actions_total Playbook actions run.\n"
        "# TYPE guardian_actions_total counter\n"
        "guardian_actions_total{mode=\"disk_full\",result=\"failed\"} 0.5\n"
        "guardian_actions_total{mode=\"missing_config\",result=\"ok\"} 3\n");
}

TEST_CASE("counter increment of zero creates the series; negative increments throw") {
  MetricsRegistry r;
  r.AddCounter("x_total", "x", {});
  r.Inc("x_total", {}, 0);
  CHECK(r.Render() == "# HELP x_total x\n# TYPE x_total counter\nx_total 0\n");
  CHECK_THROWS_AS(r.Inc("x_total", {}, -1), std::invalid_argument);
  CHECK_THROWS_AS(r.Inc("x_total", {}, std::nan("")), std::invalid_argument);
  CHECK(r.Render() == "# HELP x_total x\n# TYPE x_total counter\nx_total 0\n");
}

TEST_CASE("gauge set, inc and special values") {
  MetricsRegistry r;
  r.AddGauge("g", "a gauge", {"k"});
  r.Set("g", {"a"}, 42);
  r.Inc("g", {"a"}, -44.5);
  r.Set("g", {"b"}, std::numeric_limits<double>::infinity());
  r.Set("g", {"c"}, -std::numeric_limits<double>::infinity());
  r.Set("g", {"d"}, std::nan(""));
  r.Set("g", {"e"}, 1e20);
  r.Set("g", {"f"}, 0.1);
  r.Set("g", {"g"}, 1234567890123.0);
  r.Set("g", {"h"}, -0.0);
  r.Set("g", {"i"}, 1.5e-7);
  CHECK(r.Render() ==
        "# HELP g a gauge\n"
        "# TYPE g gauge\n"
        "g{k=\"a\"} -2.5\n"
        "g{k=\"b\"} +Inf\n"
        "g{k=\"c\"} -Inf\n"
        "g{k=\"d\"} NaN\n"
        "g{k=\"e\"} 1e+20\n"
        "g{k=\"f\"} 0.1\n"
        "g{k=\"g\"} 1234567890123\n"
        "g{k=\"h\"} 0\n"
        "g{k=\"i\"} 1.5e-07\n");
}

TEST_CASE("histogram buckets are cumulative; +Inf equals _count; _sum adds up") {
  MetricsRegistry r;
  r.AddHistogram("lat_seconds", "latency", {"op"}, {0.1, 0.5, 1});
  for (double v : {0.05, 0.1, 0.3, 0.7, 2.0, 3.0}) r.Observe("lat_seconds", {"read"}, v);
  CHECK(r.Render() ==
        "# HELP lat_seconds latency\n"
        "# TYPE lat_seconds histogram\n"
        "lat_seconds_bucket{op=\"read\",le=\"0.1\"} 2\n"  // 0.1 itself is "le" 0.1
        "lat_seconds_bucket{op=\"read\",le=\"0.5\"} 3\n"
        "lat_seconds_bucket{op=\"read\",le=\"1\"} 4\n"
        "lat_seconds_bucket{op=\"read\",le=\"+Inf\"} 6\n"
        "lat_seconds_sum{op=\"read\"} 6.15\n"
        "lat_seconds_count{op=\"read\"} 6\n");
}

TEST_CASE("histogram without labels and NaN observations") {
  MetricsRegistry r;
  r.AddHistogram("h_seconds", "h", {}, {1});
  r.Observe("h_seconds", {}, 1);
  r.Observe("h_seconds", {}, std::nan(""));  // dropped
  CHECK(r.Render() ==
        "# HELP h_seconds h\n"
        "# TYPE h_seconds histogram\n"
        "h_seconds_bucket{le=\"1\"} 1\n"
        "h_seconds_bucket{le=\"+Inf\"} 1\n"
        "h_seconds_sum 1\n"
        "h_seconds_count 1\n");
}

TEST_CASE("a histogram series keeps the buckets it was created with") {
  MetricsRegistry r;
  r.AddHistogram("mttr_seconds", "time to recover", {"mode"}, {1, 10});
  std::vector<double> custom = BucketsAroundTarget(30);
  r.Observe("mttr_seconds", {"slow"}, 20, &custom);
  std::vector<double> other = {5};
  r.Observe("mttr_seconds", {"slow"}, 40, &other);  // ignored: series exists
  r.Observe("mttr_seconds", {"fast"}, 2);           // family defaults
  CHECK(r.Render() ==
        "# HELP mttr_seconds time to recover\n"
        "# TYPE mttr_seconds histogram\n"
        "mttr_seconds_bucket{mode=\"fast\",le=\"1\"} 0\n"
        "mttr_seconds_bucket{mode=\"fast\",le=\"10\"} 1\n"
        "mttr_seconds_bucket{mode=\"fast\",le=\"+Inf\"} 1\n"
        "mttr_seconds_sum{mode=\"fast\"} 2\n"
        "mttr_seconds_count{mode=\"fast\"} 1\n"
        "mttr_seconds_bucket{mode=\"slow\",le=\"3\"} 0\n"
        "mttr_seconds_bucket{mode=\"slow\",le=\"7.5\"} 0\n"
        "mttr_seconds_bucket{mode=\"slow\",le=\"15\"} 0\n"
        "mttr_seconds_bucket{mode=\"slow\",le=\"22.5\"} 1\n"
        "mttr_seconds_bucket{mode=\"slow\",le=\"30\"} 1\n"
        "mttr_seconds_bucket{mode=\"slow\",le=\"45\"} 2\n"
        "mttr_seconds_bucket{mode=\"slow\",le=\"60\"} 2\n"
        "mttr_seconds_bucket{mode=\"slow\",le=\"90\"} 2\n"
        "mttr_seconds_bucket{mode=\"slow\",le=\"150\"} 2\n"
        "mttr_seconds_bucket{mode=\"slow\",le=\"+Inf\"} 2\n"
        "mttr_seconds_sum{mode=\"slow\"} 60\n"
        "mttr_seconds_count{mode=\"slow\"} 2\n");
}

TEST_CASE("bad bucket bounds throw") {
  MetricsRegistry r;
  CHECK_THROWS_AS(r.AddHistogram("a", "a", {}, {1, 1}), std::invalid_argument);
  CHECK_THROWS_AS(r.AddHistogram("b", "b", {}, {2, 1}), std::invalid_argument);
  CHECK_THROWS_AS(r.AddHistogram("c", "c", {}, {1, std::numeric_limits<double>::infinity()}),
                  std::invalid_argument);
  CHECK(r.Render().empty());  // refused histograms leave nothing behind
  r.AddHistogram("d", "d", {}, {1});
  std::vector<double> bad = {3, 2};
  CHECK_THROWS_AS(r.Observe("d", {}, 1, &bad), std::invalid_argument);
  CHECK(r.Render() == "# HELP d d\n# TYPE d histogram\n");
}

TEST_CASE("label values escape backslash, double quote and newline") {
  MetricsRegistry r;
  r.AddGauge("g", "h", {"path"});
  r.Set("g", {"C:\\dir \"x\"\nnext"}, 1);
  CHECK(r.Render() ==
        "# HELP g h\n"
        "# TYPE g gauge\n"
        "g{path=\"C:\\\\dir \\\"x\\\"\\nnext\"} 1\n");
}

TEST_CASE("help escapes backslash and newline but not double quote") {
  MetricsRegistry r;
  r.AddGauge("g", "a \\ b\nc \"q\"", {});
  CHECK(r.Render() == "# HELP g a \\\\ b\\nc \"q\"\n# TYPE g gauge\n");
}

TEST_CASE("output is sorted by family name and label values, not by insertion order") {
  MetricsRegistry a;
  a.AddGauge("zeta", "z", {"k"});
  a.AddCounter("alpha_total", "a", {});
  a.Set("zeta", {"b"}, 2);
  a.Set("zeta", {"a"}, 1);
  a.Inc("alpha_total", {});

  MetricsRegistry b;
  b.AddCounter("alpha_total", "a", {});
  b.AddGauge("zeta", "z", {"k"});
  b.Inc("alpha_total", {});
  b.Set("zeta", {"a"}, 1);
  b.Set("zeta", {"b"}, 2);

  std::string expected =
      "# HELP alpha_total a\n"
      "# TYPE alpha_total counter\n"
      "alpha_total 1\n"
      "# HELP zeta z\n"
      "# TYPE zeta gauge\n"
      "zeta{k=\"a\"} 1\n"
      "zeta{k=\"b\"} 2\n";
  CHECK(a.Render() == expected);
  CHECK(b.Render() == expected);
}

TEST_CASE("families without samples still print HELP and TYPE") {
  MetricsRegistry r;
  r.AddCounter("c_total", "c", {"x"});
  r.AddHistogram("h", "h", {}, {1});
  CHECK(r.Render() ==
        "# HELP c_total c\n# TYPE c_total counter\n"
        "# HELP h h\n# TYPE h histogram\n");
}

TEST_CASE("ResetGauge drops every series of that gauge only") {
  MetricsRegistry r;
  r.AddGauge("check_up", "up", {"check"});
  r.AddGauge("other", "o", {});
  r.Set("check_up", {"a"}, 1);
  r.Set("check_up", {"b"}, 0);
  r.Set("other", {}, 7);
  r.ResetGauge("check_up");
  r.Set("check_up", {"b"}, 1);
  CHECK(r.Render() ==
        "# HELP check_up up\n# TYPE check_up gauge\n"
        "check_up{check=\"b\"} 1\n"
        "# HELP other o\n# TYPE other gauge\n"
        "other 7\n");
  r.AddCounter("n_total", "n", {});
  CHECK_THROWS_AS(r.ResetGauge("n_total"), std::invalid_argument);
  CHECK_THROWS_AS(r.ResetGauge("nope"), std::invalid_argument);
}

TEST_CASE("invalid metric and label names throw, naming the culprit") {
  MetricsRegistry r;
  for (const char* bad : {"", "1abc", "a-b", "a b", "é"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(r.AddGauge(bad, "h", {}), std::invalid_argument);
  }
  for (const char* bad : {"", "1a", "a:b", "__reserved", "a-b"}) {
    CAPTURE(bad);
    CHECK_THROWS_AS(r.AddGauge("g", "h", {bad}), std::invalid_argument);
  }
  try {
    r.AddGauge("bad-name", "h", {});
    FAIL("no throw");
  } catch (const std::invalid_argument& e) {
    CHECK(std::string(e.what()).find("bad-name") != std::string::npos);
  }
  CHECK_THROWS_AS(r.AddGauge("g", "h", {"a", "a"}), std::invalid_argument);
  CHECK_THROWS_AS(r.AddHistogram("h", "h", {"le"}, {1}), std::invalid_argument);
  CHECK(r.Render().empty());

  // The good edges of the grammar are accepted.
  r.AddGauge("a:b_c9", "h", {"_x", "Y9"});
  r.AddGauge(":x", "h", {});
  CHECK_THROWS_AS(r.AddGauge("a:b_c9", "h", {}), std::invalid_argument);  // declared twice
}

TEST_CASE("counter names must end in _total") {
  MetricsRegistry r;
  CHECK_THROWS_AS(r.AddCounter("requests", "h", {}), std::invalid_argument);
  CHECK_THROWS_AS(r.AddCounter("requests_totals", "h", {}), std::invalid_argument);
  r.AddCounter("requests_total", "h", {});
}

TEST_CASE("wrong label count, unknown family or wrong type throw") {
  MetricsRegistry r;
  r.AddCounter("c_total", "c", {"a", "b"});
  r.AddGauge("g", "g", {});
  r.AddHistogram("h", "h", {"a"}, {1});
  CHECK_THROWS_AS(r.Inc("c_total", {"x"}), std::invalid_argument);
  CHECK_THROWS_AS(r.Inc("c_total", {"x", "y", "z"}), std::invalid_argument);
  CHECK_THROWS_AS(r.Set("g", {"x"}, 1), std::invalid_argument);
  CHECK_THROWS_AS(r.Observe("h", {}, 1), std::invalid_argument);
  CHECK_THROWS_AS(r.Inc("missing_total", {}), std::invalid_argument);
  CHECK_THROWS_AS(r.Set("c_total", {"x", "y"}, 1), std::invalid_argument);
  CHECK_THROWS_AS(r.Observe("g", {}, 1), std::invalid_argument);
  CHECK_THROWS_AS(r.Inc("h", {"x"}), std::invalid_argument);
  // Nothing was recorded by the refused calls.
  CHECK(r.Render() ==
        "# HELP c_total c\n# TYPE c_total counter\n"
        "# HELP g g\n# TYPE g gauge\n"
        "# HELP h h\n# TYPE h histogram\n");
}

TEST_CASE("BucketsAroundTarget and LatencyBuckets") {
  CHECK(BucketsAroundTarget(60) == std::vector<double>{6, 15, 30, 45, 60, 90, 120, 180, 300});
  // Short decimals, not binary products like 0.22499999999999998, so le labels stay readable.
  CHECK(BucketsAroundTarget(0.3) ==
        std::vector<double>{0.03, 0.075, 0.15, 0.225, 0.3, 0.45, 0.6, 0.9, 1.5});
  std::vector<double> small = BucketsAroundTarget(0.2);
  REQUIRE(small.size() == 9);
  CHECK(small[4] == 0.2);
  for (size_t i = 1; i < small.size(); ++i) CHECK(small[i - 1] < small[i]);
  CHECK_THROWS_AS(BucketsAroundTarget(0), std::invalid_argument);
  CHECK_THROWS_AS(BucketsAroundTarget(-1), std::invalid_argument);
  CHECK_THROWS_AS(BucketsAroundTarget(std::nan("")), std::invalid_argument);
  CHECK_THROWS_AS(BucketsAroundTarget(std::numeric_limits<double>::infinity()),
                  std::invalid_argument);
  // Near the top of the double range the large multiples overflow and are dropped.
  std::vector<double> huge = BucketsAroundTarget(std::numeric_limits<double>::max());
  for (double b : huge) CHECK(std::isfinite(b));

  std::vector<double> lat = LatencyBuckets();
  CHECK(lat.size() == 14);
  CHECK(lat.front() == 0.0005);
  CHECK(lat.back() == 10);
  for (size_t i = 1; i < lat.size(); ++i) CHECK(lat[i - 1] < lat[i]);
}

// Every feature at once, so promtool's parser and linter see all of it.
static std::string EveryFeature() {
  MetricsRegistry r;
  r.AddCounter("guardian_playbook_runs_total", "Playbook runs by mode and result.",
               {"mode", "result"});
  r.Inc("guardian_playbook_runs_total", {"missing_config", "healed"}, 3);
  r.Inc("guardian_playbook_runs_total", {"disk_full", "escalated"});
  r.AddCounter("guardian_empty_total", "A counter that never fired.", {});
  r.AddGauge("guardian_check_state", "Check state: help with \\ backslash\nand newline.",
             {"check"});
  r.Set("guardian_check_state", {"quote \" back \\ nl \n end"}, 1);
  r.Set("guardian_check_state", {"inf"}, std::numeric_limits<double>::infinity());
  r.Set("guardian_check_state", {"minus_inf"}, -std::numeric_limits<double>::infinity());
  r.Set("guardian_check_state", {"nan"}, std::nan(""));
  r.Set("guardian_check_state", {"big"}, 1e300);
  r.Set("guardian_check_state", {"small"}, -1.5e-300);
  r.Set("guardian_check_state", {"ünïcodé"}, 0.1);
  r.AddGauge("guardian_up", "Whether the daemon is up.", {});
  r.Set("guardian_up", {}, 1);
  r.AddHistogram("guardian_mttr_seconds", "Time from detection to recovery.", {"mode"},
                 BucketsAroundTarget(30));
  std::vector<double> mode_buckets = BucketsAroundTarget(0.3);
  for (double v : {0.01, 0.3, 0.29, 1.0, 7.0}) {
    r.Observe("guardian_mttr_seconds", {"missing_config"}, v, &mode_buckets);
  }
  r.Observe("guardian_mttr_seconds", {"disk_full"}, 25);
  r.AddHistogram("guardian_probe_duration_seconds", "Probe latency.", {}, LatencyBuckets());
  r.Observe("guardian_probe_duration_seconds", {}, 0.003);
  r.AddHistogram("guardian_store_job_duration_seconds", "Store job latency (no samples yet).",
                 {"kind"}, LatencyBuckets());
  return r.Render();
}

TEST_CASE("promtool accepts and lints clean the rendered output") {
  const char* promtool = "/usr/bin/promtool";
  if (access(promtool, X_OK) != 0) {
    MESSAGE("skipped: " << promtool << " not installed (Debian package prometheus)");
    return;
  }
  std::string text = EveryFeature();
  char path[] = "/tmp/guardian_metrics_test_XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  close(fd);
  {
    std::ofstream f(path);
    f << text;
  }
  std::string cmd = std::string(promtool) + " check metrics < " + path + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string output;
  char buf[512];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) output.append(buf, n);
  int status = pclose(p);
  unlink(path);
  INFO("promtool output:\n" << output << "\ninput:\n" << text);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(output.empty());  // lint findings are printed even when the exit status is 0
}
