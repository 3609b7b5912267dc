#include "daemon/boot_report.h"

#include <doctest/doctest.h>

namespace guardian {
namespace {

using nlohmann::json;

// A status document for pid 7 whose boot started at t=1000 with these chunks.
json Status(const std::string& state, json chunks, int64_t ready_at = 0) {
  json boot = {{"started_at", 1000}, {"chunks", chunks}};
  boot["ready_at"] = ready_at ? json(ready_at) : json(nullptr);
  return {{"pid", 7}, {"state", state}, {"boot", boot}};
}

json Chunk(const std::string& name, bool critical, int64_t start, int64_t end,
           bool skipped = false) {
  return {{"name", name},
          {"critical", critical},
          {"skipped", skipped},
          {"started_at", start ? json(start) : json(nullptr)},
          {"ended_at", end ? json(end) : json(nullptr)}};
}

}  // namespace

TEST_CASE("a boot within its deadlines is ok and says when to look again") {
  json st = Status("booting", {Chunk("listen", true, 1000, 1001), Chunk("database", true, 1001, 0),
                               Chunk("search_index", false, 0, 0)});
  BootVerdict v = JudgeBoot(st, 7, 1500, BootLimits{2000, 1000});
  CHECK(v.observation.ok());
  CHECK(v.booting);
  CHECK(v.next_deadline_ms == 2001);  // database started at 1001 + 1000
  CHECK(v.observation.evidence ==
        "booting, within deadlines: listen 1 ms, database 499+ ms "
        "(running, critical)");
}

TEST_CASE("one chunk past its deadline fails, with every chunk's timing") {
  json st =
      Status("booting", {Chunk("listen", true, 1000, 1001), Chunk("database", true, 1001, 1030),
                         Chunk("search_index", false, 1030, 0)});
  BootVerdict v = JudgeBoot(st, 7, 2100, BootLimits{5000, 1000});
  CHECK(v.observation.failing());
  CHECK(v.observation.evidence ==
        "slow boot: chunk search_index has run 1070 ms (deadline 1000 ms); listen 1 ms, database "
        "29 ms, search_index 1070+ ms (running, non-critical)");
}

TEST_CASE("the whole boot past its deadline fails even when no chunk is") {
  json st = Status("booting", {Chunk("a", false, 1000, 1900), Chunk("b", false, 1900, 2800),
                               Chunk("c", false, 2800, 0)});
  BootVerdict v = JudgeBoot(st, 7, 3100, BootLimits{2000, 1000});
  CHECK(v.observation.failing());
  CHECK(v.observation.evidence.find("boot has run 2100 ms (deadline 2000 ms)") !=
        std::string::npos);
}

TEST_CASE("a finished boot is ok and reports skipped chunks as degraded") {
  json st = Status(
      "ready", {Chunk("listen", true, 1000, 1001), Chunk("search_index", false, 0, 0, true)}, 1100);
  BootVerdict v = JudgeBoot(st, 7, 9999, BootLimits{});
  CHECK(v.observation.ok());
  CHECK_FALSE(v.booting);
  CHECK(v.degraded);
  CHECK(v.skipped == "search_index");
  CHECK(v.observation.evidence == "booted in 100 ms: listen 1 ms, search_index skipped");
}

TEST_CASE("a report by another process says nothing about this boot") {
  json st = Status("booting", {Chunk("database", true, 1000, 0)});
  BootVerdict v = JudgeBoot(st, 8, 99'999, BootLimits{});
  CHECK(v.observation.health == Observation::Health::kUnknown);
  CHECK(JudgeBoot(json(), 7, 0, BootLimits{}).observation.health == Observation::Health::kUnknown);
}

}  // namespace guardian
