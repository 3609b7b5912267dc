// The store on a real SQLite file: migrations, incidents and steps, crash leftovers, read-only
// access while a writer holds the file.
#include "daemon/store.h"

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

#include "tests/unit/temp_dir.h"

using namespace guardian;
namespace fs = std::filesystem;

namespace {
IncidentRecord MakeIncident(const std::string& check) {
  IncidentRecord r;
  r.check_id = check;
  r.mode = "missing_config";
  r.onset_at = 1000;
  r.detected_at = 1030;
  r.target_ms = 10000;
  r.playbook = "missing_config";
  r.evidence = "file is missing";
  return r;
}
}  // namespace

TEST_CASE("caused_by links an incident to its root cause's; an older store gains it as 0") {
  TempDir dir;
  std::string path = (dir.path / "g.db").string();
  {
    // A store as schema version 2 left it: no caused_by column nor chaos_runs table yet, one
    // incident in it.
    std::unique_ptr<Store> store;
    REQUIRE(Store::Open(path, false, &store).ok());
    IncidentRecord old = MakeIncident("app");
    REQUIRE(store->InsertIncident(&old).ok());
  }
  sqlite3* db;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db,
                       "ALTER TABLE incidents DROP COLUMN caused_by; DROP TABLE chaos_runs; "
                       "ALTER TABLE events DROP COLUMN hash; "
                       "PRAGMA user_version=2",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);

  std::unique_ptr<Store> store;
  REQUIRE(Store::Open(path, false, &store).ok());
  CHECK(store->SchemaVersion() == Store::LatestSchemaVersion());
  std::optional<IncidentRecord> got;
  REQUIRE(store->GetIncident(1, &got).ok());
  REQUIRE(got);
  CHECK(got->caused_by == 0);
  CHECK(got->ToJson()["caused_by"].is_null());

  IncidentRecord dep = MakeIncident("model");
  dep.caused_by = 1;
  REQUIRE(store->InsertIncident(&dep).ok());
  REQUIRE(store->GetIncident(dep.id, &got).ok());
  CHECK(got->caused_by == 1);
  got->caused_by = 0;  // the link is dropped when the root cause turns out not to explain it
  REQUIRE(store->UpdateIncident(*got).ok());
  REQUIRE(store->GetIncident(dep.id, &got).ok());
  CHECK(got->caused_by == 0);
  dep.caused_by = 1;
  CHECK(dep.ToJson()["caused_by"] == 1);
}

TEST_CASE("a new store is in WAL mode at the latest schema version") {
  TempDir dir;
  std::unique_ptr<Store> store;
  REQUIRE(Store::Open((dir.path / "g.db").string(), false, &store).ok());
  CHECK(store->SchemaVersion() == Store::LatestSchemaVersion());
  CHECK(store->IntegrityCheck().ok());
  sqlite3* db;
  REQUIRE(sqlite3_open((dir.path / "g.db").c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* st;
  sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, nullptr);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) == "wal");
  sqlite3_finalize(st);
  sqlite3_close(db);
}

TEST_CASE("a store written by a newer schema is refused, not downgraded") {
  TempDir dir;
  std::string path = (dir.path / "g.db").string();
  {
    std::unique_ptr<Store> store;
    REQUIRE(Store::Open(path, false, &store).ok());
  }
  sqlite3* db;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "PRAGMA user_version=99", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  std::unique_ptr<Store> store;
  Status s = Store::Open(path, false, &store);
  CHECK(s.code() == Status::Code::kCorruption);
  CHECK(s.message().find("99") != std::string::npos);
}

TEST_CASE("incidents and steps round-trip with derived MTTD/MTTR") {
  TempDir dir;
  std::unique_ptr<Store> store;
  REQUIRE(Store::Open((dir.path / "g.db").string(), false, &store).ok());
  IncidentRecord r = MakeIncident("app");
  REQUIRE(store->InsertIncident(&r).ok());
  CHECK(r.id > 0);
  StepRecord step{0, r.id, 1, "remediate", 1100, 0, "running", ""};
  REQUIRE(store->InsertStep(&step).ok());
  step.ended_at = 1200;
  step.status = "ok";
  step.message = "restored";
  REQUIRE(store->FinishStep(step).ok());
  r.state = kStateResolved;
  r.recovered_at = 1500;
  r.attempts = 1;
  REQUIRE(store->UpdateIncident(r).ok());

  std::optional<IncidentRecord> got;
  REQUIRE(store->GetIncident(r.id, &got).ok());
  REQUIRE(got.has_value());
  auto j = got->ToJson();
  CHECK(j["state"] == "resolved");
  CHECK(j["mttd_ms"] == 30);
  CHECK(j["mttr_ms"] == 500);
  CHECK(j["within_target"] == true);
  REQUIRE(j["steps"].size() == 1);
  CHECK(j["steps"][0]["phase"] == "remediate");
  CHECK(j["steps"][0]["message"] == "restored");

  std::optional<IncidentRecord> none;
  REQUIRE(store->GetIncident(r.id + 100, &none).ok());
  CHECK_FALSE(none.has_value());
}

TEST_CASE("an incident over target says so; an open one has no MTTR") {
  IncidentRecord r = MakeIncident("app");
  CHECK(r.ToJson()["mttr_ms"].is_null());
  CHECK(r.ToJson()["within_target"].is_null());
  r.recovered_at = r.onset_at + 20000;
  CHECK(r.ToJson()["within_target"] == false);
}

TEST_CASE("steps left running by a crash are found and marked interrupted") {
  TempDir dir;
  std::unique_ptr<Store> store;
  REQUIRE(Store::Open((dir.path / "g.db").string(), false, &store).ok());
  IncidentRecord open = MakeIncident("a");
  open.state = kStateRunning;
  REQUIRE(store->InsertIncident(&open).ok());
  IncidentRecord done = MakeIncident("b");
  done.state = kStateResolved;
  REQUIRE(store->InsertIncident(&done).ok());
  StepRecord s1{0, open.id, 1, "backup", 1, 2, "ok", ""};
  StepRecord s2{0, open.id, 1, "remediate", 3, 0, "running", ""};
  REQUIRE(store->InsertStep(&s1).ok());
  REQUIRE(store->InsertStep(&s2).ok());

  std::vector<IncidentRecord> unfinished;
  REQUIRE(store->UnfinishedIncidents(&unfinished).ok());
  REQUIRE(unfinished.size() == 1);
  CHECK(unfinished[0].id == open.id);
  CHECK(unfinished[0].steps.size() == 2);

  std::vector<StepRecord> interrupted;
  REQUIRE(store->InterruptRunningSteps(open.id, 99, "killed", &interrupted).ok());
  REQUIRE(interrupted.size() == 1);
  CHECK(interrupted[0].phase == "remediate");
  std::optional<IncidentRecord> got;
  REQUIRE(store->GetIncident(open.id, &got).ok());
  CHECK(got->steps[1].status == "interrupted");
  CHECK(got->steps[1].ended_at == 99);
}

TEST_CASE("list filters by check, state and limit; newest first") {
  TempDir dir;
  std::unique_ptr<Store> store;
  REQUIRE(Store::Open((dir.path / "g.db").string(), false, &store).ok());
  for (int i = 0; i < 5; ++i) {
    IncidentRecord r = MakeIncident(i % 2 ? "odd" : "even");
    r.state = i == 4 ? kStateEscalated : kStateResolved;
    REQUIRE(store->InsertIncident(&r).ok());
  }
  std::vector<IncidentRecord> out;
  IncidentFilter f;
  f.check_id = "even";
  REQUIRE(store->ListIncidents(f, &out).ok());
  CHECK(out.size() == 3);
  CHECK(out[0].id > out[1].id);
  out.clear();
  f = IncidentFilter{};
  f.state = "escalated";
  REQUIRE(store->ListIncidents(f, &out).ok());
  CHECK(out.size() == 1);
  out.clear();
  f = IncidentFilter{};
  f.limit = 2;
  REQUIRE(store->ListIncidents(f, &out).ok());
  CHECK(out.size() == 2);
}

TEST_CASE("a read-only store reads while the writer holds it open; holds and values persist") {
  TempDir dir;
  std::string path = (dir.path / "g.db").string();
  std::unique_ptr<Store> writer;
  REQUIRE(Store::Open(path, false, &writer).ok());
  REQUIRE(writer->SetHold("app", "operator: maintenance", 5).ok());
  REQUIRE(writer->SetValue("app", "aside", "/x").ok());
  IncidentRecord r = MakeIncident("app");
  REQUIRE(writer->InsertIncident(&r).ok());

  std::unique_ptr<Store> reader;
  REQUIRE(Store::Open(path, true, &reader).ok());
  std::vector<IncidentRecord> out;
  REQUIRE(reader->ListIncidents(IncidentFilter{}, &out).ok());
  CHECK(out.size() == 1);
  std::map<std::string, HoldRecord> holds;
  std::map<std::string, std::string> values;
  REQUIRE(reader->Holds(&holds).ok());
  CHECK(holds["app"].reason == "operator: maintenance");
  CHECK(holds["app"].since == 5);
  REQUIRE(reader->Values("app", &values).ok());
  CHECK(values["aside"] == "/x");
  REQUIRE(writer->ClearHold("app").ok());
  holds.clear();
  REQUIRE(reader->Holds(&holds).ok());
  CHECK(holds.empty());
}

TEST_CASE("chaos runs come back newest first with their summary; only the newest are kept") {
  TempDir dir;
  std::unique_ptr<Store> store;
  REQUIRE(Store::Open((dir.path / "g.db").string(), false, &store).ok());
  int64_t total = kChaosRunsKept + 2;
  for (int64_t i = 1; i <= total; ++i) {
    ChaosRunRecord run;
    run.stored_at = 5000 + i;
    run.started_at = 1000 * i;
    run.ended_at = 1000 * i + 500;
    run.ok = i % 2 == 0;
    run.summary = R"({"seed":)" + std::to_string(i) + R"(,"modes":{}})";
    REQUIRE(store->AddChaosRun(&run).ok());
    CHECK(run.id == i);
  }
  std::vector<ChaosRunRecord> runs;
  REQUIRE(store->ChaosRuns(1000, &runs).ok());
  REQUIRE(runs.size() == static_cast<size_t>(kChaosRunsKept));
  CHECK(runs.front().id == total);  // newest first
  CHECK(runs.back().id == 3);       // runs 1 and 2 were dropped
  nlohmann::json j = runs.front().ToJson();
  CHECK(j["seed"] == total);
  CHECK(j["ok"] == true);
  CHECK(j["started_at"] == 1000 * total);
  CHECK(j["modes"].is_object());
  runs.clear();
  REQUIRE(store->ChaosRuns(2, &runs).ok());
  CHECK(runs.size() == 2);
}
