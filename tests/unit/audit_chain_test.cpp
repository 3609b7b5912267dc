// The audit trail's hash chain on a real SQLite file: rows appended by the store verify, and
// editing, deleting, reordering or re-hashing rows behind the store's back (with sqlite3
// itself, as an intruder would) is found at the first row that no longer fits.
#include "daemon/audit_chain.h"

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>

#include "daemon/store.h"
#include "tests/unit/temp_dir.h"

using namespace guardian;
namespace fs = std::filesystem;

namespace {
EventRecord Event(int64_t at, const std::string& kind, const std::string& detail) {
  EventRecord e;
  e.at = at;
  e.actor = "api";
  e.kind = kind;
  e.check_id = "app";
  e.detail = detail;
  return e;
}

// A store with `n` events written through it, closed again.
std::string TrailOf(const TempDir& dir, int n) {
  std::string path = (dir.path / "g.db").string();
  std::unique_ptr<Store> store;
  REQUIRE(Store::Open(path, false, &store).ok());
  for (int i = 1; i <= n; ++i) {
    REQUIRE(store->AddEvent(Event(1000 + i, "hold", "reason " + std::to_string(i))).ok());
  }
  return path;
}

// Runs SQL on the file directly, as someone editing the database would.
void Tamper(const std::string& path, const std::string& sql) {
  sqlite3* db;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
  std::string why = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  REQUIRE_MESSAGE(rc == SQLITE_OK, why);
}

AuditChainVerifier Verify(const std::string& path) {
  std::unique_ptr<Store> store;
  REQUIRE(Store::Open(path, true, &store).ok());
  AuditChainVerifier v;
  REQUIRE(store->VerifyAudit(&v).ok());
  return v;
}
}  // namespace

TEST_CASE("rows appended through the store chain and verify; the head is the last row's hash") {
  TempDir dir;
  std::string path = TrailOf(dir, 5);
  std::unique_ptr<Store> store;
  REQUIRE(Store::Open(path, true, &store).ok());
  std::vector<EventRecord> rows;
  REQUIRE(store->AuditRows(0, -1, &rows).ok());
  REQUIRE(rows.size() == 5);
  std::string prev = kAuditGenesis;
  for (size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows[i].id == static_cast<int64_t>(i) + 1);
    CHECK(rows[i].hash.size() == 64);
    CHECK(rows[i].hash == AuditRowHash(prev, rows[i]));
    prev = rows[i].hash;
  }
  AuditChainVerifier v = Verify(path);
  CHECK(v.ok());
  CHECK(v.rows() == 5);
  CHECK(v.head() == rows.back().hash);
  CHECK(v.head_id() == 5);
}

TEST_CASE("a row's hash is SHA-256 of its fields as a compact JSON array, as older trails hold") {
  // The expected value is from Python's hashlib over the same text, so a trail written by any
  // earlier build still verifies.
  EventRecord row = Event(1001, "hold", "reason 1");
  row.id = 1;
  CHECK(AuditRowHash(kAuditGenesis, row) ==
        "de6fc8d45e6909899731a3ef383c6b1705460a0cb30c33697c5e7a94294a51c1");
}

TEST_CASE("an empty trail verifies with the genesis head") {
  TempDir dir;
  AuditChainVerifier v = Verify(TrailOf(dir, 0));
  CHECK(v.ok());
  CHECK(v.rows() == 0);
  CHECK(v.head() == std::string(kAuditGenesis));
}

TEST_CASE("an edited field breaks the chain at that row") {
  TempDir dir;
  std::string path = TrailOf(dir, 6);
  SUBCASE("detail") { Tamper(path, "UPDATE events SET detail='nothing happened' WHERE id=4"); }
  SUBCASE("time") { Tamper(path, "UPDATE events SET at=at+1 WHERE id=4"); }
  SUBCASE("actor") { Tamper(path, "UPDATE events SET actor='guardiand' WHERE id=4"); }
  SUBCASE("text moved from one field to the next") {
    // "api" + "hold" -> "apih" + "old": the same bytes in a row, framed differently.
    Tamper(path, "UPDATE events SET actor='apih', kind='old' WHERE id=4");
  }
  AuditChainVerifier v = Verify(path);
  CHECK_FALSE(v.ok());
  CHECK(v.broken_id() == 4);
  CHECK(v.rows() == 3);
  CHECK(v.head_id() == 3);
  CHECK(v.reason().find("does not match") != std::string::npos);
}

TEST_CASE("a row edited and re-hashed on its own breaks the chain at the next row") {
  TempDir dir;
  std::string path = TrailOf(dir, 6);
  {
    std::unique_ptr<Store> store;
    REQUIRE(Store::Open(path, true, &store).ok());
    std::vector<EventRecord> rows;
    REQUIRE(store->AuditRows(0, -1, &rows).ok());
    EventRecord forged = rows[2];  // id 3
    forged.detail = "forged";
    std::string hash = AuditRowHash(rows[1].hash, forged);
    store.reset();
    Tamper(path, "UPDATE events SET detail='forged', hash='" + hash + "' WHERE id=3");
  }
  AuditChainVerifier v = Verify(path);
  CHECK(v.broken_id() == 4);
}

TEST_CASE("a deleted row is named, also at the end of a page") {
  TempDir dir;
  SUBCASE("one in the middle") {
    std::string path = TrailOf(dir, 6);
    Tamper(path, "DELETE FROM events WHERE id=3");
    AuditChainVerifier v = Verify(path);
    CHECK(v.broken_id() == 4);
    CHECK(v.reason() == "row 3 before it is missing");
  }
  SUBCASE("several, and the ids renumbered to hide the gap") {
    std::string path = TrailOf(dir, 6);
    Tamper(path, "DELETE FROM events WHERE id IN (2, 3); UPDATE events SET id=id-2 WHERE id>3");
    AuditChainVerifier v = Verify(path);
    CHECK(v.broken_id() == 2);  // was row 4: chained from row 3's hash, not row 1's
    CHECK(v.reason().find("does not match") != std::string::npos);
  }
  SUBCASE("the first row") {
    std::string path = TrailOf(dir, 3);
    Tamper(path, "DELETE FROM events WHERE id=1");
    CHECK(Verify(path).broken_id() == 2);
  }
  SUBCASE("across the verifier's 1000-row pages") {
    std::string path = TrailOf(dir, 1005);
    Tamper(path, "DELETE FROM events WHERE id=1001");
    AuditChainVerifier v = Verify(path);
    CHECK(v.broken_id() == 1002);
    CHECK(v.rows() == 1000);
  }
}

TEST_CASE("two rows swapped break the chain at the first of them") {
  TempDir dir;
  std::string path = TrailOf(dir, 6);
  // Every column but the id changes places, hashes included.
  Tamper(path,
         "CREATE TEMP TABLE t AS SELECT * FROM events WHERE id IN (2, 5);"
         "UPDATE events SET (at, actor, kind, check_id, detail, hash) = (SELECT at, actor, kind, "
         "check_id, detail, hash FROM t WHERE t.id = 7 - events.id) WHERE id IN (2, 5);");
  AuditChainVerifier v = Verify(path);
  CHECK(v.broken_id() == 2);
}

TEST_CASE("a row with its hash blanked is broken, not trusted") {
  TempDir dir;
  std::string path = TrailOf(dir, 4);
  Tamper(path, "UPDATE events SET hash='' WHERE id=2");
  AuditChainVerifier v = Verify(path);
  CHECK(v.broken_id() == 2);
  CHECK(v.reason() == "it has no hash");
}

TEST_CASE("appending continues the chain after a reopen") {
  TempDir dir;
  std::string path = TrailOf(dir, 3);
  {
    std::unique_ptr<Store> store;
    REQUIRE(Store::Open(path, false, &store).ok());
    REQUIRE(store->AddEvent(Event(5000, "release", "")).ok());
  }
  AuditChainVerifier v = Verify(path);
  CHECK(v.ok());
  CHECK(v.rows() == 4);
}

TEST_CASE("a trail written before the chain existed is numbered and chained when migrated") {
  TempDir dir;
  std::string path = (dir.path / "g.db").string();
  {
    std::unique_ptr<Store> store;
    REQUIRE(Store::Open(path, false, &store).ok());
  }
  // As schema 4 left it: no hash column, ids with a gap (nothing forbade one then).
  Tamper(path,
         "ALTER TABLE events DROP COLUMN hash;"
         "INSERT INTO events(id, at, actor, kind, detail) VALUES(1, 10, 'api', 'hold', 'a'),"
         "(2, 20, 'api', 'release', ''), (7, 30, 'guardiand', 'reload', 'ok');"
         "PRAGMA user_version=4;");
  {
    std::unique_ptr<Store> store;
    REQUIRE(Store::Open(path, false, &store).ok());
    CHECK(store->SchemaVersion() == Store::LatestSchemaVersion());
    REQUIRE(store->AddEvent(Event(40, "hold", "b")).ok());
    std::vector<EventRecord> rows;
    REQUIRE(store->AuditRows(0, -1, &rows).ok());
    REQUIRE(rows.size() == 4);
    CHECK(rows[2].id == 3);
    CHECK(rows[2].kind == "reload");
    CHECK(rows[3].id == 4);
  }
  AuditChainVerifier v = Verify(path);
  CHECK(v.ok());
  CHECK(v.rows() == 4);
}
