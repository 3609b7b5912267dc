// SQLite access for the demo app: open with WAL and seed rows, the reads and writes the
// endpoints and the maintenance thread need, and error accounting by code name.

#include "chaos/stack/app/database.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "chaos/stack/app/log.h"
#include "chaos/stack/app/status.h"
#include "chaos/stack/app/util.h"

namespace demoapp {

std::string SqliteCodeName(int rc) {
  // sqlite3_errstr() gives prose ("database disk image is malformed"), not the name.
  static const char* const kNames[] = {
      "SQLITE_OK",       "SQLITE_ERROR",     "SQLITE_INTERNAL", "SQLITE_PERM",
      "SQLITE_ABORT",    "SQLITE_BUSY",      "SQLITE_LOCKED",   "SQLITE_NOMEM",
      "SQLITE_READONLY", "SQLITE_INTERRUPT", "SQLITE_IOERR",    "SQLITE_CORRUPT",
      "SQLITE_NOTFOUND", "SQLITE_FULL",      "SQLITE_CANTOPEN", "SQLITE_PROTOCOL",
      "SQLITE_EMPTY",    "SQLITE_SCHEMA",    "SQLITE_TOOBIG",   "SQLITE_CONSTRAINT",
      "SQLITE_MISMATCH", "SQLITE_MISUSE",    "SQLITE_NOLFS",    "SQLITE_AUTH",
      "SQLITE_FORMAT",   "SQLITE_RANGE",     "SQLITE_NOTADB",   "SQLITE_NOTICE",
      "SQLITE_WARNING"};
  int primary = rc & 0xff;
  if (primary == SQLITE_ROW) return "SQLITE_ROW";
  if (primary == SQLITE_DONE) return "SQLITE_DONE";
  if (primary >= 0 && primary < static_cast<int>(sizeof kNames / sizeof kNames[0])) {
    return kNames[primary];
  }
  return "SQLITE_UNKNOWN_" + std::to_string(rc);
}

namespace {

// A prepared statement finalized on every path out.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  int prepare_rc() const { return rc_; }
  sqlite3_stmt* get() { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
};

// The current row of "SELECT id, body, created_at".
void ReadItem(sqlite3_stmt* s, Item* item) {
  item->id = sqlite3_column_int64(s, 0);
  const unsigned char* text = sqlite3_column_text(s, 1);
  item->body.assign(text ? reinterpret_cast<const char*>(text) : "",
                    static_cast<size_t>(sqlite3_column_bytes(s, 1)));
  item->created_at = sqlite3_column_int64(s, 2);
}

const char* const kSeedWords[] = {"alpha", "bravo",    "charlie", "delta",  "echo",   "foxtrot",
                                  "golf",  "hotel",    "india",   "juliet", "kilo",   "lima",
                                  "mike",  "november", "oscar",   "papa",   "quebec", "romeo"};

}  // namespace

Database::Database(std::string path, int64_t busy_timeout_ms, int64_t seed_rows, Log& log,
                   Status& status)
    : path_(std::move(path)),
      busy_timeout_ms_(busy_timeout_ms),
      seed_rows_(seed_rows),
      log_(log),
      status_(status) {
  status_.SetDbPath(path_);
}

Database::~Database() { Close(); }

bool Database::opened() const {
  std::lock_guard lock(mu_);
  return opened_;
}

DbResult Database::Fail(int rc, const std::string& what) {
  DbResult r;
  r.ok = false;
  r.code = SqliteCodeName(db_ ? sqlite3_errcode(db_) : rc);
  r.message = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  if (r.code == "SQLITE_OK" || r.code == "SQLITE_ROW" || r.code == "SQLITE_DONE") {
    r.code = SqliteCodeName(rc);  // the connection's code was already reset
    r.message = sqlite3_errstr(rc);
  }
  status_.DbError(r.code, r.message);
  if (r.code == "SQLITE_FULL") status_.DiskError("db", path_ + ": " + r.message);
  std::string line = "database: " + what + ": " + r.Text();
  int64_t now = NowMs();
  if (line == last_logged_ && now - last_logged_at_ < 1000) {
    ++repeats_;
  } else {
    if (repeats_ > 0) line += " (the previous error repeated " + std::to_string(repeats_) + "x)";
    log_.Error(line);
    last_logged_ = "database: " + what + ": " + r.Text();
    last_logged_at_ = now;
    repeats_ = 0;
  }
  return r;
}

DbResult Database::NotOpen() {
  if (opened_) return open_error_;
  DbResult r;
  r.ok = false;
  r.code = "NOT_OPEN";
  r.message = "the database is not open yet";
  return r;
}

DbResult Database::Exec(const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  sqlite3_free(err);
  if (rc != SQLITE_OK) return Fail(rc, sql);
  return {};
}

DbResult Database::Open() {
  std::lock_guard lock(mu_);
  return OpenLocked();
}

DbResult Database::OpenLocked() {
  opened_ = true;
  MakeDirs(std::filesystem::path(path_).parent_path().string());
  int rc =
      sqlite3_open_v2(path_.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    // A handle whose open failed cannot run statements: keep the error to report instead.
    open_error_ = Fail(rc, "open " + path_);
    sqlite3_close(db_);
    db_ = nullptr;
    return open_error_;
  }
  struct stat st;
  if (stat(path_.c_str(), &st) == 0) {
    dev_ = st.st_dev;
    ino_ = st.st_ino;
  }
  sqlite3_busy_timeout(db_, static_cast<int>(busy_timeout_ms_));
  DbResult r = Exec("PRAGMA journal_mode=WAL");
  if (r.ok) {
    r = Exec(
        "CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, body TEXT NOT NULL, "
        "created_at INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT)");
  }
  if (r.ok) r = Seed();
  if (r.ok) log_.Info("database: opened " + path_);
  return r;
}

DbResult Database::Seed() {
  int64_t rows = 0;
  DbResult r = CountLocked("SELECT count(*) FROM items", "count items", &rows);
  if (!r.ok || rows > 0 || seed_rows_ == 0) return r;
  r = Exec("BEGIN");
  if (!r.ok) return r;
  Stmt insert(db_, "INSERT INTO items(id, body, created_at) VALUES(?, ?, ?)");
  if (insert.prepare_rc() != SQLITE_OK) {
    r = Fail(insert.prepare_rc(), "seed");
    Exec("ROLLBACK");
    return r;
  }
  const int64_t n_words = sizeof kSeedWords / sizeof kSeedWords[0];
  int64_t now = NowMs();
  for (int64_t id = 1; id <= seed_rows_; ++id) {
    // Deterministic bodies with a few words each, so the search index has something to find.
    std::string body = "item " + std::to_string(id) + " " + kSeedWords[id % n_words] + " " +
                       kSeedWords[(id * 7 + 3) % n_words];
    sqlite3_bind_int64(insert.get(), 1, id);
    sqlite3_bind_text(insert.get(), 2, body.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(insert.get(), 3, now);
    int rc = sqlite3_step(insert.get());
    if (rc != SQLITE_DONE) {
      r = Fail(rc, "seed");
      Exec("ROLLBACK");
      return r;
    }
    sqlite3_reset(insert.get());
  }
  r = Exec("COMMIT");
  if (!r.ok) return r;
  log_.Info("database: seeded " + std::to_string(seed_rows_) + " rows");
  status_.DbOk(seed_rows_);
  return {};
}

void Database::Close() {
  std::lock_guard lock(mu_);
  if (db_) {
    // Every statement is finalized by Stmt, so close cannot be refused as busy.
    sqlite3_close(db_);
    db_ = nullptr;
  }
  opened_ = false;
}

DbResult Database::Reopen(int64_t* rows) {
  std::lock_guard lock(mu_);
  if (!opened_) return NotOpen();
  if (db_) sqlite3_close(db_);
  db_ = nullptr;
  // SQLite does not checkpoint on close when the file was renamed away, so the old file's
  // -wal (and -shm) stay behind; opened with the new file they would replay old pages over it.
  struct stat st;
  if (stat(path_.c_str(), &st) == 0 && (st.st_dev != dev_ || st.st_ino != ino_)) {
    for (const char* suffix : {"-wal", "-shm"}) {
      std::string stale = path_ + suffix;
      if (unlink(stale.c_str()) == 0)
        log_.Warn("database: removed " + stale + " of the replaced file");
    }
  }
  DbResult r = OpenLocked();
  if (r.ok) r = CountLocked("SELECT count(*) FROM items", "count items", rows);
  if (!r.ok) return r;
  log_.Info("database: reopened, " + std::to_string(*rows) + " rows");
  return {};
}

DbResult Database::CountLocked(const char* sql, const char* what, int64_t* rows) {
  Stmt s(db_, sql);
  if (s.prepare_rc() != SQLITE_OK) return Fail(s.prepare_rc(), what);
  int rc = sqlite3_step(s.get());
  if (rc != SQLITE_ROW) return Fail(rc, what);
  *rows = sqlite3_column_int64(s.get(), 0);
  status_.DbOk(*rows);
  return {};
}

DbResult Database::Count(int64_t* rows) {
  std::lock_guard lock(mu_);
  if (!db_) return NotOpen();
  return CountLocked("SELECT count(*) FROM items", "count items", rows);
}

DbResult Database::Check(int64_t* rows) {
  std::lock_guard lock(mu_);
  if (!db_) return NotOpen();
  // total(length(body)) makes SQLite read every row, not only count b-tree cells.
  return CountLocked("SELECT count(*), total(length(body)) FROM items", "check", rows);
}

DbResult Database::Heartbeat() {
  std::lock_guard lock(mu_);
  if (!db_) return NotOpen();
  Stmt s(db_,
         "INSERT INTO meta(key, value) VALUES('heartbeat', ?) "
         "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  if (s.prepare_rc() != SQLITE_OK) return Fail(s.prepare_rc(), "heartbeat");
  std::string now = std::to_string(NowMs());
  sqlite3_bind_text(s.get(), 1, now.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(s.get());
  if (rc != SQLITE_DONE) return Fail(rc, "heartbeat");
  return {};
}

DbResult Database::Insert(const std::string& body, int64_t* id) {
  std::lock_guard lock(mu_);
  if (!db_) return NotOpen();
  Stmt s(db_, "INSERT INTO items(body, created_at) VALUES(?, ?)");
  if (s.prepare_rc() != SQLITE_OK) return Fail(s.prepare_rc(), "insert");
  sqlite3_bind_text(s.get(), 1, body.data(), static_cast<int>(body.size()), SQLITE_TRANSIENT);
  sqlite3_bind_int64(s.get(), 2, NowMs());
  int rc = sqlite3_step(s.get());
  if (rc != SQLITE_DONE) return Fail(rc, "insert");
  *id = sqlite3_last_insert_rowid(db_);
  return {};
}

DbResult Database::Get(int64_t id, Item* item, bool* found) {
  std::lock_guard lock(mu_);
  if (!db_) return NotOpen();
  Stmt s(db_, "SELECT id, body, created_at FROM items WHERE id = ?");
  if (s.prepare_rc() != SQLITE_OK) return Fail(s.prepare_rc(), "get item");
  sqlite3_bind_int64(s.get(), 1, id);
  int rc = sqlite3_step(s.get());
  *found = rc == SQLITE_ROW;
  if (rc == SQLITE_DONE) return {};
  if (rc != SQLITE_ROW) return Fail(rc, "get item");
  ReadItem(s.get(), item);
  return {};
}

DbResult Database::ForEach(const std::function<void(const Item&)>& fn) {
  std::lock_guard lock(mu_);
  if (!db_) return NotOpen();
  Stmt s(db_, "SELECT id, body, created_at FROM items ORDER BY id");
  if (s.prepare_rc() != SQLITE_OK) return Fail(s.prepare_rc(), "read items");
  Item item;
  int rc;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
    ReadItem(s.get(), &item);
    fn(item);
  }
  if (rc != SQLITE_DONE) return Fail(rc, "read items");
  return {};
}

}  // namespace demoapp
