// The store thread on a real SQLite file, with the disk's refusals injected through the fault
// seam (daemon/fault_vfs.h): journal writes wait in memory while the disk refuses them, reach
// the file in order once it recovers, and nothing is lost or torn within the bound.
#include "daemon/store_thread.h"

#include <doctest/doctest.h>

#include <optional>
#include <vector>

#include "daemon/audit_chain.h"
#include "daemon/fault_vfs.h"
#include "tests/unit/temp_dir.h"
#include "tests/unit/test_loop.h"

using namespace guardian;

namespace {

// Every test leaves the seam passing through, whatever it asserted.
struct FaultReset {
  ~FaultReset() { SetFaultPlan(FaultPlan{}); }
};

struct Fixture {
  TempDir dir{"guardian-store-thread"};
  std::string path = (dir.path / "guardian.db").string();
  TestLoop loop;
  std::unique_ptr<StoreThread> thread;
  FaultReset reset;

  explicit Fixture(int64_t max_pending = StoreThread::kDefaultMaxPending) {
    std::unique_ptr<Store> store;
    REQUIRE(Store::Open(path, false, &store).ok());
    thread = std::make_unique<StoreThread>(&loop.loop, std::move(store), max_pending);
  }
  ~Fixture() {
    if (thread) loop.Close(*thread);
  }

  // Submits a journal write and runs the loop until its `done`; returns what it was told.
  Status Journal(StoreThread::Work work) {
    std::optional<Status> got;
    thread->Submit(std::move(work), [&](Status s) { got = s; });
    loop.RunUntil([&] { return got.has_value(); });
    return *got;
  }
  Status Ask(StoreThread::Work work) {
    std::optional<Status> got;
    thread->Query(std::move(work), [&](Status s) { got = s; });
    loop.RunUntil([&] { return got.has_value(); });
    return *got;
  }
  // One incident with a finished step and an audit row: what a playbook step journals.
  void JournalIncident(const std::string& check, int64_t* id_out) {
    auto rec = std::make_shared<IncidentRecord>();
    rec->id = thread->NewIncidentId();
    rec->check_id = check;
    rec->mode = "missing_config";
    rec->onset_at = rec->detected_at = 1000;
    rec->target_ms = 10000;
    rec->playbook = "missing_config";
    REQUIRE(Journal([rec](Store& s) { return s.InsertIncident(rec.get()); }).ok());
    auto step = std::make_shared<StepRecord>();
    step->id = thread->NewStepId();
    step->incident_id = rec->id;
    step->attempt = 1;
    step->phase = "remediate";
    step->started_at = 2000;
    step->status = "running";
    REQUIRE(Journal([step](Store& s) { return s.InsertStep(step.get()); }).ok());
    step->ended_at = 3000;
    step->status = "ok";
    step->message = std::string(3000, 'x');  // more than a page: a torn write shows
    REQUIRE(Journal([step](Store& s) { return s.FinishStep(*step); }).ok());
    EventRecord e;
    e.at = 3000;
    e.actor = "playbook:missing_config";
    e.kind = "action";
    e.check_id = check;
    e.detail = "restore";
    REQUIRE(Journal([e](Store& s) { return s.AddEvent(e); }).ok());
    rec->state = kStateResolved;
    rec->recovered_at = 3000;
    REQUIRE(Journal([rec](Store& s) { return s.UpdateIncident(*rec); }).ok());
    *id_out = rec->id;
  }
  std::vector<IncidentRecord> Incidents() {
    auto out = std::make_shared<std::vector<IncidentRecord>>();
    IncidentFilter f;
    f.limit = 1000;
    REQUIRE(Ask([out, f](Store& s) { return s.ListIncidents(f, out.get()); }).ok());
    return *out;
  }
  void WaitRecovered() {
    // The store thread retries every kRetryMs by itself; the loop delivers what it finishes.
    while (thread->health().degraded) {
      uv_run(&loop.loop, UV_RUN_NOWAIT);
      uv_sleep(10);
    }
  }
};

// What must hold of the file after any fault: intact, every incident resolved with its step
// finished and its audit row in the chain.
void CheckFile(const std::string& path, const std::vector<int64_t>& ids) {
  std::unique_ptr<Store> store;
  REQUIRE(Store::Open(path, true, &store).ok());
  CHECK(store->IntegrityCheck().ok());
  for (int64_t id : ids) {
    std::optional<IncidentRecord> rec;
    REQUIRE(store->GetIncident(id, &rec).ok());
    REQUIRE_MESSAGE(rec.has_value(), "incident ", id, " is lost");
    CHECK(rec->state == kStateResolved);
    REQUIRE(rec->steps.size() == 1);
    CHECK(rec->steps[0].status == "ok");
    CHECK(rec->steps[0].message.size() == 3000);
  }
  AuditChainVerifier v;
  REQUIRE(store->VerifyAudit(&v).ok());
  CHECK(v.ok());
  CHECK(v.head_id() == static_cast<int64_t>(ids.size()));
}

}  // namespace

TEST_CASE("the fault seam passes every write through when no fault is planned") {
  Fixture f;
  FaultStats before = CurrentFaultStats();
  int64_t id;
  f.JournalIncident("app", &id);
  CHECK(CurrentFaultStats().writes > before.writes);
  CHECK(CurrentFaultStats().injected == before.injected);
  CHECK_FALSE(f.thread->health().degraded);
  f.loop.Close(*f.thread);
  f.thread.reset();
  CheckFile(f.path, {id});
}

TEST_CASE("journal writes the disk refuses wait in memory, in order, and land when it recovers") {
  for (const char* name : {"eio", "enospc", "short_write"}) {
    std::string kind = name;
    CAPTURE(kind);
    Fixture f;
    int64_t first;
    f.JournalIncident("before", &first);

    FaultPlan plan;
    REQUIRE(ParseFaultKind(name, &plan.kind).ok());
    SetFaultPlan(plan);
    std::vector<int64_t> during(3);
    for (auto& id : during) f.JournalIncident("during", &id);  // each `done` said OK

    StoreHealth h = f.thread->health();
    CHECK(h.degraded);
    CHECK(h.pending == 15);  // 3 incidents of 5 writes each, none on disk yet
    CHECK(h.write_errors >= 1);
    CHECK(h.dropped == 0);
    CHECK_FALSE(h.last_error.empty());
    CHECK(h.degraded_since > 0);
    // Queries do not wait: they see what is on disk.
    CHECK(f.Incidents().size() == 1);

    SetFaultPlan(FaultPlan{});
    f.WaitRecovered();
    h = f.thread->health();
    CHECK(h.pending == 0);
    CHECK(h.degraded_since == 0);
    CHECK(f.Incidents().size() == 4);
    f.loop.Close(*f.thread);
    f.thread.reset();
    std::vector<int64_t> all = {first};
    all.insert(all.end(), during.begin(), during.end());
    CheckFile(f.path, all);
  }
}

TEST_CASE("a write refused once is retried and lands without the caller noticing") {
  Fixture f;
  FaultPlan plan;
  plan.kind = FaultKind::kIoError;
  plan.count = 1;
  SetFaultPlan(plan);
  int64_t id;
  f.JournalIncident("app", &id);
  f.WaitRecovered();
  CHECK(f.thread->health().write_errors == 1);
  CHECK(CurrentFaultStats().injected >= 1);
  f.loop.Close(*f.thread);
  f.thread.reset();
  CheckFile(f.path, {id});
}

TEST_CASE("past the bound a journal write fails at once; what was buffered still lands") {
  Fixture f(/*max_pending=*/4);
  FaultPlan plan;
  plan.kind = FaultKind::kNoSpace;
  SetFaultPlan(plan);
  std::vector<Status> results;
  for (int i = 0; i < 7; ++i) {
    auto e = std::make_shared<EventRecord>();
    e->at = 100 + i;
    e->actor = "test";
    e->kind = "hold";
    e->detail = std::to_string(i);
    results.push_back(f.Journal([e](Store& s) { return s.AddEvent(*e); }));
  }
  for (int i = 0; i < 4; ++i) CHECK(results[i].ok());
  for (int i = 4; i < 7; ++i) {
    CHECK_FALSE(results[i].ok());
    CHECK(results[i].message().find("dropped") != std::string::npos);
  }
  CHECK(f.thread->health().dropped == 3);
  CHECK(f.thread->health().pending == 4);

  SetFaultPlan(FaultPlan{});
  f.WaitRecovered();
  auto rows = std::make_shared<std::vector<EventRecord>>();
  REQUIRE(f.Ask([rows](Store& s) { return s.AuditRows(0, -1, rows.get()); }).ok());
  REQUIRE(rows->size() == 4);
  for (int i = 0; i < 4; ++i) CHECK((*rows)[i].detail == std::to_string(i));
}

TEST_CASE("closing flushes what waits when the disk has recovered meanwhile") {
  Fixture f;
  FaultPlan plan;
  plan.kind = FaultKind::kNoSpace;
  SetFaultPlan(plan);
  int64_t id;
  f.JournalIncident("app", &id);
  CHECK(f.thread->health().pending == 5);
  SetFaultPlan(FaultPlan{});
  f.loop.Close(*f.thread);  // before any retry was due
  f.thread.reset();
  CheckFile(f.path, {id});
}

TEST_CASE("a failing fsync loses no commit") {
  // With synchronous=NORMAL in WAL mode commits do not sync; checkpoints do, and one that
  // fails is retried by SQLite at the next. Enough rows to pass the autocheckpoint.
  Fixture f;
  int64_t injected = CurrentFaultStats().injected;
  FaultPlan plan;
  plan.kind = FaultKind::kFsyncError;
  SetFaultPlan(plan);
  std::vector<int64_t> ids(40);
  for (auto& id : ids) f.JournalIncident("app", &id);
  auto big = std::make_shared<std::string>(4 << 20, 'y');
  CHECK(f.Journal([big](Store& s) { return s.SetValue("app", "big", *big); }).ok());
  CHECK(CurrentFaultStats().injected > injected);  // a checkpoint did try to sync
  SetFaultPlan(FaultPlan{});
  f.WaitRecovered();
  f.loop.Close(*f.thread);
  f.thread.reset();
  CheckFile(f.path, ids);
}

TEST_CASE("ids given out on the loop continue after the store's highest") {
  TempDir dir;
  std::string path = (dir.path / "g.db").string();
  {
    std::unique_ptr<Store> store;
    REQUIRE(Store::Open(path, false, &store).ok());
    IncidentRecord r;
    r.check_id = "a";
    r.mode = "m";
    r.playbook = "p";
    REQUIRE(store->InsertIncident(&r).ok());
    r.id = 0;  // the next free id
    REQUIRE(store->InsertIncident(&r).ok());
    CHECK(r.id == 2);
  }
  TestLoop loop;
  std::unique_ptr<Store> store;
  REQUIRE(Store::Open(path, false, &store).ok());
  StoreThread t(&loop.loop, std::move(store));
  CHECK(t.NewIncidentId() == 3);
  CHECK(t.NewStepId() == 1);
  loop.Close(t);
}
