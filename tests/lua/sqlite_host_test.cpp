// guardian.sqlite on a real database in the check's folder, corrupted for real between phases.
#include <doctest/doctest.h>
#include <sqlite3.h>

#include <fstream>

#include "tests/lua/run_fixture.h"

namespace guardian {
namespace {
namespace fs = std::filesystem;

std::string MakeDb(const std::string& path, int rows) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &h) == SQLITE_OK);
  std::string sql =
      "PRAGMA journal_mode=WAL; CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT);"
      "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<" +
      std::to_string(rows) +
      ") INSERT INTO items SELECT i, printf('item %d alpha bravo', i) FROM n;";
  REQUIRE(sqlite3_exec(h, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(h);
  return path;
}

int64_t Rows(const std::string& path) {
  sqlite3* h = nullptr;
  sqlite3_open_v2(path.c_str(), &h, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  int64_t n = -1;
  if (sqlite3_prepare_v2(h, "SELECT count(*) FROM items", -1, &st, nullptr) == SQLITE_OK &&
      sqlite3_step(st) == SQLITE_ROW)
    n = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  sqlite3_close(h);
  return n;
}

void ZeroHeader(const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  std::string zeros(100, '\0');
  f.write(zeros.data(), 100);
}

}  // namespace

TEST_CASE("backup, corruption seen by check, restore of the newest backup") {
  RunFixture f;
  std::string db = MakeDb(f.app + "/app.db", 2000);
  auto run = f.Run(f.Playbook(R"(
    backup = function(ctx)
      local b = assert(guardian.sqlite.backup(ctx.params.path:gsub("app.yaml$", "app.db")))
      return b.path .. " " .. b.bytes
    end,
    remediate = function(ctx)
      local db = ctx.params.path:gsub("app.yaml$", "app.db")
      local ok, why = guardian.sqlite.check(db)
      if ok then error("corruption not seen") end
      local newest = guardian.sqlite.backups()[1]
      assert(guardian.sqlite.restore(newest.path, db))
      local ok2, why2 = guardian.sqlite.check(db, {full = true})
      return why .. " | " .. why2 .. " | age " .. tostring(newest.age_ms >= 0)
    end)"));
  auto [b, bmsg] = f.Phase(*run, "backup");
  REQUIRE_MESSAGE(b.ok(), b.message());
  CHECK(bmsg.find(f.state + "/backups/") == 0);
  ZeroHeader(db);
  auto [r, rmsg] = f.Phase(*run, "remediate");
  REQUIRE_MESSAGE(r.ok(), r.message());
  CHECK(rmsg.rfind("SQLITE_NOTADB", 0) == 0);
  CHECK(rmsg.find(" | ok | age true") != std::string::npos);
  CHECK(Rows(db) == 2000);
  CHECK_FALSE(fs::exists(db + "-wal"));
}

TEST_CASE("restore refuses a file that is not one of the check's backups") {
  RunFixture f;
  std::string db = MakeDb(f.app + "/app.db", 10);
  MakeDb(f.app + "/other.db", 3);
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
      local dir = ctx.params.path:gsub("app.yaml$", "")
      guardian.sqlite.restore(dir .. "other.db", dir .. "app.db")
    end)"));
  auto [r, rmsg] = f.Phase(*run, "remediate");
  CHECK_FALSE(r.ok());
  CHECK(r.message().find("is not one of this check's backups") != std::string::npos);
  CHECK(Rows(db) == 10);
}

TEST_CASE("a database outside the check's paths is refused") {
  RunFixture f;
  auto run =
      f.Run(f.Playbook(R"(remediate = function(ctx) guardian.sqlite.check("/etc/x.db") end)"));
  auto [r, rmsg] = f.Phase(*run, "remediate");
  CHECK_FALSE(r.ok());
  CHECK(r.message().find("guardian.sqlite") != std::string::npos);
}

TEST_CASE("in a dry run backup and restore are recorded, not done") {
  RunFixture f;
  std::string db = MakeDb(f.app + "/app.db", 10);
  auto run = f.Run(f.Playbook(R"(remediate = function(ctx)
      local dbp = ctx.params.path:gsub("app.yaml$", "app.db")
      local b = assert(guardian.sqlite.backup(dbp))
      assert(guardian.sqlite.checkpoint(dbp))
    end)"),
                   PlaybookLimits{}, /*dry_run=*/true);
  auto [r, rmsg] = f.Phase(*run, "remediate");
  REQUIRE_MESSAGE(r.ok(), r.message());
  CHECK_FALSE(fs::exists(f.state + "/backups"));
  REQUIRE(run->recorded().size() == 2);
  CHECK(run->recorded()[0].call == "guardian.sqlite.backup");
  CHECK(run->recorded()[1].call == "guardian.sqlite.checkpoint");
}

}  // namespace guardian
