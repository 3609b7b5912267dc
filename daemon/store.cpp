#include "daemon/store.h"

#include <string_view>
#include <utility>

#include "daemon/audit_chain.h"
#include "daemon/fault_vfs.h"
#include "daemon/redact.h"

namespace guardian {
namespace {

// Forward-only migrations: entry i takes the schema from version i to i+1. Never edit a
// shipped entry; append a new one.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE incidents(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  check_id TEXT NOT NULL,
  mode TEXT NOT NULL,
  state TEXT NOT NULL,
  onset_at INTEGER NOT NULL,
  detected_at INTEGER NOT NULL,
  recovered_at INTEGER NOT NULL DEFAULT 0,
  target_ms INTEGER NOT NULL,
  playbook TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  evidence TEXT NOT NULL DEFAULT '',
  reason TEXT NOT NULL DEFAULT ''
);
CREATE INDEX incidents_check ON incidents(check_id, onset_at);
CREATE INDEX incidents_state ON incidents(state);
CREATE TABLE steps(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  incident_id INTEGER NOT NULL REFERENCES incidents(id),
  attempt INTEGER NOT NULL,
  phase TEXT NOT NULL,
  started_at INTEGER NOT NULL,
  ended_at INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL,
  message TEXT NOT NULL DEFAULT ''
);
CREATE INDEX steps_incident ON steps(incident_id, id);
CREATE TABLE check_values(
  check_id TEXT NOT NULL,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY(check_id, key)
);
CREATE TABLE holds(
  check_id TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  since INTEGER NOT NULL
);
)sql",
    // 2: the audit trail of what operators and the daemon decided (holds, runs, reloads, mode).
    R"sql(
CREATE TABLE events(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  kind TEXT NOT NULL,
  check_id TEXT NOT NULL DEFAULT '',
  detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX events_at ON events(at);
)sql",
    // 3: an incident caused by another (its check's depends_on): the root cause's incident id.
    R"sql(
ALTER TABLE incidents ADD COLUMN caused_by INTEGER NOT NULL DEFAULT 0;
)sql",
    // 4: chaos/run's runs (their per-mode summary, as JSON), for the MTTR report's trend.
    R"sql(
CREATE TABLE chaos_runs(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  stored_at INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  ended_at INTEGER NOT NULL,
  ok INTEGER NOT NULL,
  summary TEXT NOT NULL
);
)sql",
    // 5: the audit trail is hash-chained (daemon/audit_chain.h); rows written before this are
    // chained by SealUnchainedEvents in the same transaction.
    R"sql(
ALTER TABLE events ADD COLUMN hash TEXT NOT NULL DEFAULT '';
)sql",
};
// The migration after which the events table has its hash column.
constexpr int kEventsHashVersion = 5;
constexpr int kLatestVersion = sizeof(kMigrations) / sizeof(kMigrations[0]);

// A prepared statement that finalizes itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  Stmt& Bind(int i, int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& Bind(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  // Free text (evidence, messages, reasons, state values) with the config's secrets redacted
  // (daemon/redact.h): the database outlives the daemon and is read by whoever can read it.
  Stmt& BindRedacted(int i, const std::string& v) { return Bind(i, Redactor::Global().Redact(v)); }
  int Step() { return sqlite3_step(s_); }
  // Ready to run again with new bindings.
  void Reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  int64_t Int(int col) { return sqlite3_column_int64(s_, col); }
  std::string Text(int col) {
    const unsigned char* t = sqlite3_column_text(s_, col);
    return t ? std::string(reinterpret_cast<const char*>(t), sqlite3_column_bytes(s_, col)) : "";
  }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

const char* kIncidentColumns =
    "id, check_id, mode, state, onset_at, detected_at, recovered_at, target_ms, playbook, "
    "attempts, evidence, reason, caused_by";

IncidentRecord ReadIncident(Stmt& st) {
  IncidentRecord r;
  r.id = st.Int(0);
  r.check_id = st.Text(1);
  r.mode = st.Text(2);
  r.state = st.Text(3);
  r.onset_at = st.Int(4);
  r.detected_at = st.Int(5);
  r.recovered_at = st.Int(6);
  r.target_ms = st.Int(7);
  r.playbook = st.Text(8);
  r.attempts = static_cast<int>(st.Int(9));
  r.evidence = st.Text(10);
  r.reason = st.Text(11);
  r.caused_by = st.Int(12);
  return r;
}

const char* kEventColumns = "id, at, actor, kind, check_id, detail, hash";

EventRecord ReadEvent(Stmt& st) {
  return {st.Int(0), st.Int(1), st.Text(2), st.Text(3), st.Text(4), st.Text(5), st.Text(6)};
}

}  // namespace

bool IncidentRecord::terminal() const {
  return state == kStateResolved || state == kStateEscalated;
}

nlohmann::json IncidentRecord::ToJson() const {
  using nlohmann::json;
  json j;
  j["id"] = id;
  j["check"] = check_id;
  j["mode"] = mode;
  j["state"] = state;
  j["onset_at"] = onset_at;
  j["detected_at"] = detected_at;
  j["recovered_at"] = recovered_at ? json(recovered_at) : json(nullptr);
  j["mttd_ms"] = detected_at - onset_at;
  j["mttr_ms"] = recovered_at ? json(recovered_at - onset_at) : json(nullptr);
  j["target_ms"] = target_ms;
  j["within_target"] = recovered_at ? json(recovered_at - onset_at <= target_ms) : json(nullptr);
  j["playbook"] = playbook;
  j["attempts"] = attempts;
  j["evidence"] = evidence;
  j["reason"] = reason;
  j["caused_by"] = caused_by ? json(caused_by) : json(nullptr);
  json steps = json::array();
  for (const auto& s : this->steps) {
    steps.push_back({{"phase", s.phase},
                     {"attempt", s.attempt},
                     {"started_at", s.started_at},
                     {"ended_at", s.ended_at ? json(s.ended_at) : json(nullptr)},
                     {"status", s.status},
                     {"message", s.message}});
  }
  j["steps"] = std::move(steps);
  return j;
}

Status Store::Open(const std::string& path, bool read_only, std::unique_ptr<Store>* out) {
  sqlite3* db = nullptr;
  int flags = read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  flags |= SQLITE_OPEN_NOMUTEX;
  // The daemon's writes go through the fault seam (daemon/fault_vfs.h); readers need not.
  const char* vfs = nullptr;
  if (!read_only) {
    Status v = RegisterFaultVfs();
    if (!v.ok()) return v;
    vfs = kFaultVfsName;
  }
  int rc = sqlite3_open_v2(path.c_str(), &db, flags, vfs);
  if (rc != SQLITE_OK) {
    std::string msg = path + ": " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
    sqlite3_close(db);
    return Status::IOError(msg);
  }
  // Readers (the CLI) must not fail while the daemon holds a write lock.
  sqlite3_busy_timeout(db, 5000);
  std::unique_ptr<Store> store(new Store(db));
  if (!read_only) {
    // WAL lets the CLI read while the daemon writes; NORMAL sync is durable across process
    // crashes (what we guard against) and loses at most the last commits on power loss.
    Status s =
        store->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;");
    if (!s.ok()) return s;
    s = store->Migrate();
    if (!s.ok()) return s;
  } else {
    int v = store->SchemaVersion();
    if (v > kLatestVersion) {
      return Status::Corruption(path + ": schema version " + std::to_string(v) +
                                " is newer than this build knows (" +
                                std::to_string(kLatestVersion) + ")");
    }
  }
  *out = std::move(store);
  return Status::OK();
}

Store::~Store() { sqlite3_close(db_); }

int Store::LatestSchemaVersion() { return kLatestVersion; }

int Store::SchemaVersion() {
  Stmt st(db_, "PRAGMA user_version");
  if (!st.ok() || st.Step() != SQLITE_ROW) return -1;
  return static_cast<int>(st.Int(0));
}

Status Store::Error(const char* what) {
  NoteFailure();
  return Status::IOError(std::string(what) + ": " + sqlite3_errmsg(db_));
}

void Store::NoteFailure() {
  switch (sqlite3_errcode(db_) & 0xff) {
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
      write_fault_ = true;
      break;
    default:
      break;
  }
}

bool Store::TakeWriteFault() { return std::exchange(write_fault_, false); }

void Store::RollbackIfOpen() {
  // SQLite rolls some failed transactions back itself; one left open would swallow every
  // later write into it.
  if (!sqlite3_get_autocommit(db_)) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
}

Status Store::LastIds(int64_t* incident, int64_t* step) {
  // AUTOINCREMENT never reuses an id, even of a deleted row: sqlite_sequence remembers.
  Stmt st(db_,
          "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name='incidents'), 0), "
          "COALESCE((SELECT MAX(id) FROM incidents), 0)), "
          "MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name='steps'), 0), "
          "COALESCE((SELECT MAX(id) FROM steps), 0))");
  if (!st.ok() || st.Step() != SQLITE_ROW) return Error("read last ids");
  *incident = st.Int(0);
  *step = st.Int(1);
  return Status::OK();
}

Status Store::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    NoteFailure();
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return Status::IOError(msg);
  }
  return Status::OK();
}

Status Store::Migrate() {
  int v = SchemaVersion();
  if (v < 0) return Error("read schema version");
  if (v > kLatestVersion) {
    // A newer guardiand wrote this; running old code against it would corrupt it.
    return Status::Corruption("store schema version " + std::to_string(v) +
                              " is newer than this build (" + std::to_string(kLatestVersion) + ")");
  }
  for (; v < kLatestVersion; ++v) {
    std::string sql = std::string("BEGIN IMMEDIATE;") + kMigrations[v];
    Status s = Exec(sql.c_str());
    if (s.ok() && v + 1 == kEventsHashVersion) s = SealUnchainedEvents();
    if (s.ok()) s = Exec(("PRAGMA user_version=" + std::to_string(v + 1) + ";COMMIT;").c_str());
    if (!s.ok()) {
      Exec("ROLLBACK");
      return Status::IOError("migration to schema " + std::to_string(v + 1) + ": " + s.message());
    }
  }
  return Status::OK();
}

Status Store::InsertIncident(IncidentRecord* rec) {
  Stmt st(db_,
          "INSERT INTO incidents(check_id, mode, state, onset_at, detected_at, recovered_at, "
          "target_ms, playbook, attempts, evidence, reason, caused_by, id) "
          "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)");
  if (!st.ok()) return Error("prepare insert incident");
  st.Bind(1, rec->check_id).Bind(2, rec->mode).Bind(3, rec->state).Bind(4, rec->onset_at);
  st.Bind(5, rec->detected_at).Bind(6, rec->recovered_at).Bind(7, rec->target_ms);
  st.Bind(8, rec->playbook)
      .Bind(9, int64_t{rec->attempts})
      .BindRedacted(10, rec->evidence)
      .BindRedacted(11, rec->reason)
      .Bind(12, rec->caused_by);
  if (rec->id > 0) st.Bind(13, rec->id);  // else NULL: the next id
  if (st.Step() != SQLITE_DONE) return Error("insert incident");
  rec->id = sqlite3_last_insert_rowid(db_);
  return Status::OK();
}

Status Store::UpdateIncident(const IncidentRecord& rec) {
  Stmt st(db_,
          "UPDATE incidents SET state=?, recovered_at=?, attempts=?, evidence=?, reason=?, "
          "caused_by=? WHERE id=?");
  if (!st.ok()) return Error("prepare update incident");
  st.Bind(1, rec.state).Bind(2, rec.recovered_at).Bind(3, int64_t{rec.attempts});
  st.BindRedacted(4, rec.evidence).BindRedacted(5, rec.reason);
  st.Bind(6, rec.caused_by).Bind(7, rec.id);
  if (st.Step() != SQLITE_DONE) return Error("update incident");
  return Status::OK();
}

Status Store::InsertStep(StepRecord* step) {
  Stmt st(db_,
          "INSERT INTO steps(incident_id, attempt, phase, started_at, ended_at, status, message, "
          "id) VALUES(?,?,?,?,?,?,?,?)");
  if (!st.ok()) return Error("prepare insert step");
  st.Bind(1, step->incident_id).Bind(2, int64_t{step->attempt}).Bind(3, step->phase);
  st.Bind(4, step->started_at).Bind(5, step->ended_at).Bind(6, step->status);
  st.BindRedacted(7, step->message);
  if (step->id > 0) st.Bind(8, step->id);  // else NULL: the next id
  if (st.Step() != SQLITE_DONE) return Error("insert step");
  step->id = sqlite3_last_insert_rowid(db_);
  return Status::OK();
}

Status Store::FinishStep(const StepRecord& step) {
  Stmt st(db_, "UPDATE steps SET ended_at=?, status=?, message=? WHERE id=?");
  if (!st.ok()) return Error("prepare finish step");
  st.Bind(1, step.ended_at).Bind(2, step.status).BindRedacted(3, step.message).Bind(4, step.id);
  if (st.Step() != SQLITE_DONE) return Error("finish step");
  return Status::OK();
}

Status Store::InterruptRunningSteps(int64_t incident_id, int64_t now, const std::string& why,
                                    std::vector<StepRecord>* interrupted) {
  {
    Stmt st(db_,
            "SELECT id, attempt, phase, started_at FROM steps WHERE incident_id=? AND "
            "status='running' ORDER BY id");
    if (!st.ok()) return Error("prepare running steps");
    st.Bind(1, incident_id);
    while (st.Step() == SQLITE_ROW) {
      StepRecord s;
      s.id = st.Int(0);
      s.incident_id = incident_id;
      s.attempt = static_cast<int>(st.Int(1));
      s.phase = st.Text(2);
      s.started_at = st.Int(3);
      s.ended_at = now;
      s.status = "interrupted";
      s.message = why;
      interrupted->push_back(s);
    }
  }
  for (const auto& s : *interrupted) {
    Status st = FinishStep(s);
    if (!st.ok()) return st;
  }
  return Status::OK();
}

Status Store::LoadSteps(IncidentRecord* begin, IncidentRecord* end) {
  // One statement for every incident of a listing: preparing it per incident cost more than
  // reading the rows.
  Stmt st(db_,
          "SELECT id, attempt, phase, started_at, ended_at, status, message FROM steps "
          "WHERE incident_id=? ORDER BY id");
  if (!st.ok()) return Error("prepare steps");
  for (IncidentRecord* rec = begin; rec != end; ++rec) {
    st.Reset();
    st.Bind(1, rec->id);
    rec->steps.clear();
    int rc;
    while ((rc = st.Step()) == SQLITE_ROW) {
      StepRecord s;
      s.id = st.Int(0);
      s.incident_id = rec->id;
      s.attempt = static_cast<int>(st.Int(1));
      s.phase = st.Text(2);
      s.started_at = st.Int(3);
      s.ended_at = st.Int(4);
      s.status = st.Text(5);
      s.message = st.Text(6);
      rec->steps.push_back(std::move(s));
    }
    if (rc != SQLITE_DONE) return Error("read steps");
  }
  return Status::OK();
}

Status Store::GetIncident(int64_t id, std::optional<IncidentRecord>* out) {
  std::string sql = std::string("SELECT ") + kIncidentColumns + " FROM incidents WHERE id=?";
  Stmt st(db_, sql.c_str());
  if (!st.ok()) return Error("prepare get incident");
  st.Bind(1, id);
  out->reset();
  if (st.Step() == SQLITE_ROW) {
    IncidentRecord r = ReadIncident(st);
    Status s = LoadSteps(&r, &r + 1);
    if (!s.ok()) return s;
    *out = std::move(r);
  }
  return Status::OK();
}

Status Store::ListIncidents(const IncidentFilter& f, std::vector<IncidentRecord>* out) {
  std::string sql = std::string("SELECT ") + kIncidentColumns +
                    " FROM incidents WHERE (?1='' OR check_id=?1) AND (?2='' OR mode=?2) AND "
                    "(?3='' OR state=?3) AND onset_at>=?4 ORDER BY id DESC LIMIT ?5";
  Stmt st(db_, sql.c_str());
  if (!st.ok()) return Error("prepare list incidents");
  st.Bind(1, f.check_id)
      .Bind(2, f.mode)
      .Bind(3, f.state)
      .Bind(4, f.since)
      .Bind(5, int64_t{f.limit});
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out->push_back(ReadIncident(st));
  if (rc != SQLITE_DONE) return Error("list incidents");
  return LoadSteps(out->data(), out->data() + out->size());
}

Status Store::UnfinishedIncidents(std::vector<IncidentRecord>* out) {
  std::string sql = std::string("SELECT ") + kIncidentColumns +
                    " FROM incidents WHERE state NOT IN ('resolved','escalated') ORDER BY id";
  Stmt st(db_, sql.c_str());
  if (!st.ok()) return Error("prepare unfinished incidents");
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out->push_back(ReadIncident(st));
  if (rc != SQLITE_DONE) return Error("unfinished incidents");
  return LoadSteps(out->data(), out->data() + out->size());
}

Status Store::RecoveryTimes(int64_t since, std::vector<RecoveryTime>* out) {
  Stmt st(db_,
          "SELECT mode, detected_at-onset_at, recovered_at-onset_at, target_ms FROM incidents "
          "WHERE state='resolved' AND recovered_at>0 AND onset_at>=? ORDER BY id");
  if (!st.ok()) return Error("prepare recovery times");
  st.Bind(1, since);
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    out->push_back({st.Text(0), st.Int(1), st.Int(2), st.Int(3)});
  }
  if (rc != SQLITE_DONE) return Error("recovery times");
  return Status::OK();
}

Status Store::CountIncidents(int64_t since,
                             std::map<std::pair<std::string, std::string>, int64_t>* out) {
  Stmt st(db_,
          "SELECT mode, state, COUNT(*) FROM incidents WHERE onset_at>=? GROUP BY mode, state");
  if (!st.ok()) return Error("prepare count incidents");
  st.Bind(1, since);
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) (*out)[{st.Text(0), st.Text(1)}] = st.Int(2);
  if (rc != SQLITE_DONE) return Error("count incidents");
  return Status::OK();
}

Status Store::AddEvent(const EventRecord& e) {
  // Reading the last row and writing the next in one write transaction keeps the chain whole
  // even if another connection wrote in between.
  Status s = Exec("BEGIN IMMEDIATE");
  if (!s.ok()) return s;
  EventRecord row = e;
  // Redacted before hashing: the chain covers the row as stored.
  for (std::string* text : {&row.actor, &row.kind, &row.check_id, &row.detail})
    *text = Redactor::Global().Redact(*text);
  s = ChainEvent(&row);
  if (s.ok()) {
    Stmt st(db_,
            "INSERT INTO events(id, at, actor, kind, check_id, detail, hash) "
            "VALUES(?,?,?,?,?,?,?)");
    if (!st.ok()) {
      s = Error("prepare add event");
    } else {
      st.Bind(1, row.id).Bind(2, row.at).Bind(3, row.actor).Bind(4, row.kind);
      st.Bind(5, row.check_id).Bind(6, row.detail).Bind(7, row.hash);
      if (st.Step() != SQLITE_DONE) s = Error("add event");
    }
  }
  if (s.ok()) return Exec("COMMIT");
  Exec("ROLLBACK");
  return s;
}

Status Store::ChainEvent(EventRecord* row) {
  Stmt last(db_, "SELECT id, hash FROM events ORDER BY id DESC LIMIT 1");
  if (!last.ok()) return Error("prepare last event");
  int rc = last.Step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return Error("last event");
  bool first = rc == SQLITE_DONE;
  row->id = first ? 1 : last.Int(0) + 1;
  row->hash = AuditRowHash(first ? kAuditGenesis : last.Text(1), *row);
  if (row->hash.empty()) return Status::IOError("audit: SHA-256 failed");
  return Status::OK();
}

Status Store::SealUnchainedEvents() {
  std::vector<EventRecord> rows;
  Status s = AuditRows(0, -1, &rows);
  std::string prev = kAuditGenesis;
  for (size_t i = 0; s.ok() && i < rows.size(); ++i) {
    // Renumbered 1, 2, 3... so that the verifier's gap check holds for old trails too.
    int64_t old_id = rows[i].id;
    rows[i].id = static_cast<int64_t>(i) + 1;
    rows[i].hash = AuditRowHash(prev, rows[i]);
    Stmt st(db_, "UPDATE events SET id=?, hash=? WHERE id=?");
    if (!st.ok()) return Error("prepare seal event");
    st.Bind(1, rows[i].id).Bind(2, rows[i].hash).Bind(3, old_id);
    if (st.Step() != SQLITE_DONE) return Error("seal event");
    prev = rows[i].hash;
  }
  return s;
}

Status Store::Events(int limit, std::vector<EventRecord>* out) {
  Stmt st(
      db_,
      (std::string("SELECT ") + kEventColumns + " FROM events ORDER BY id DESC LIMIT ?").c_str());
  if (!st.ok()) return Error("prepare events");
  st.Bind(1, int64_t{limit});
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    out->push_back(ReadEvent(st));
  }
  if (rc != SQLITE_DONE) return Error("events");
  return Status::OK();
}

Status Store::AuditRows(int64_t after_id, int limit, std::vector<EventRecord>* out) {
  Stmt st(db_,
          (std::string("SELECT ") + kEventColumns + " FROM events WHERE id>? ORDER BY id LIMIT ?")
              .c_str());
  if (!st.ok()) return Error("prepare audit rows");
  st.Bind(1, after_id).Bind(2, int64_t{limit});
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    out->push_back(ReadEvent(st));
  }
  if (rc != SQLITE_DONE) return Error("audit rows");
  return Status::OK();
}

Status Store::VerifyAudit(AuditChainVerifier* verifier) {
  // Pages, so a long trail is never all in memory; one read transaction, so the daemon
  // appending meanwhile cannot make a page boundary look like a gap.
  Status s = Exec("BEGIN");
  int64_t after = 0;
  while (s.ok()) {
    std::vector<EventRecord> page;
    s = AuditRows(after, 1000, &page);
    if (!s.ok() || page.empty()) break;
    bool whole = true;
    for (const auto& row : page) {
      if (!(whole = verifier->Feed(row))) break;
    }
    if (!whole) break;
    after = page.back().id;
  }
  Exec("COMMIT");
  return s;
}

Status Store::AddChaosRun(ChaosRunRecord* run) {
  Stmt st(db_,
          "INSERT INTO chaos_runs(stored_at, started_at, ended_at, ok, summary) "
          "VALUES(?,?,?,?,?)");
  if (!st.ok()) return Error("prepare add chaos run");
  st.Bind(1, run->stored_at)
      .Bind(2, run->started_at)
      .Bind(3, run->ended_at)
      .Bind(4, int64_t{run->ok ? 1 : 0})
      .BindRedacted(5, run->summary);
  if (st.Step() != SQLITE_DONE) return Error("add chaos run");
  run->id = sqlite3_last_insert_rowid(db_);
  // Only the newest kChaosRunsKept: a CI that runs chaos/run on every commit must not grow the
  // store without bound.
  Stmt prune(db_, "DELETE FROM chaos_runs WHERE id <= ?");
  if (!prune.ok()) return Error("prepare prune chaos runs");
  prune.Bind(1, run->id - kChaosRunsKept);
  if (prune.Step() != SQLITE_DONE) return Error("prune chaos runs");
  return Status::OK();
}

Status Store::ChaosRuns(int limit, std::vector<ChaosRunRecord>* out) {
  Stmt st(db_,
          "SELECT id, stored_at, started_at, ended_at, ok, summary FROM chaos_runs "
          "ORDER BY id DESC LIMIT ?");
  if (!st.ok()) return Error("prepare chaos runs");
  st.Bind(1, int64_t{limit});
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) {
    out->push_back({st.Int(0), st.Int(1), st.Int(2), st.Int(3), st.Int(4) != 0, st.Text(5)});
  }
  if (rc != SQLITE_DONE) return Error("chaos runs");
  return Status::OK();
}

nlohmann::json ChaosRunRecord::ToJson() const {
  // The summary was validated JSON when it was stored; a damaged one shows as null.
  nlohmann::json out = nlohmann::json::parse(summary, nullptr, false);
  if (!out.is_object()) out = nlohmann::json::object();
  out["id"] = id;
  out["stored_at"] = stored_at;
  out["started_at"] = started_at;
  out["ended_at"] = ended_at;
  out["ok"] = ok;
  return out;
}

nlohmann::json EventRecord::ToJson() const {
  return {{"id", id},          {"at", at},         {"actor", actor}, {"kind", kind},
          {"check", check_id}, {"detail", detail}, {"hash", hash}};
}

Status Store::SetValue(const std::string& check_id, const std::string& key,
                       const std::string& value) {
  Stmt st(db_, "INSERT OR REPLACE INTO check_values(check_id, key, value) VALUES(?,?,?)");
  if (!st.ok()) return Error("prepare set value");
  st.Bind(1, check_id).Bind(2, key).BindRedacted(3, value);
  if (st.Step() != SQLITE_DONE) return Error("set value");
  return Status::OK();
}

Status Store::Values(const std::string& check_id, std::map<std::string, std::string>* out) {
  Stmt st(db_, "SELECT key, value FROM check_values WHERE check_id=?");
  if (!st.ok()) return Error("prepare values");
  st.Bind(1, check_id);
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) (*out)[st.Text(0)] = st.Text(1);
  if (rc != SQLITE_DONE) return Error("values");
  return Status::OK();
}

Status Store::SetHold(const std::string& check_id, const std::string& reason, int64_t since) {
  Stmt st(db_, "INSERT OR REPLACE INTO holds(check_id, reason, since) VALUES(?,?,?)");
  if (!st.ok()) return Error("prepare hold");
  st.Bind(1, check_id).BindRedacted(2, reason).Bind(3, since);
  if (st.Step() != SQLITE_DONE) return Error("hold");
  return Status::OK();
}

Status Store::ClearHold(const std::string& check_id) {
  Stmt st(db_, "DELETE FROM holds WHERE check_id=?");
  if (!st.ok()) return Error("prepare release");
  st.Bind(1, check_id);
  if (st.Step() != SQLITE_DONE) return Error("release");
  return Status::OK();
}

Status Store::Holds(std::map<std::string, HoldRecord>* out) {
  Stmt st(db_, "SELECT check_id, reason, since FROM holds");
  if (!st.ok()) return Error("prepare holds");
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) (*out)[st.Text(0)] = HoldRecord{st.Text(1), st.Int(2)};
  if (rc != SQLITE_DONE) return Error("holds");
  return Status::OK();
}

Status Store::IntegrityCheck() {
  Stmt st(db_, "PRAGMA integrity_check");
  if (!st.ok()) return Error("prepare integrity_check");
  std::string result;
  while (st.Step() == SQLITE_ROW) {
    if (!result.empty()) result += "; ";
    result += st.Text(0);
  }
  if (result != "ok") return Status::Corruption(result);
  return Status::OK();
}

}  // namespace guardian
