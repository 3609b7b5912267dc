// CheckDatabase and TakeBackup on real SQLite files, corrupted for real (pages overwritten, the
// header zeroed, the file truncated).
#include "daemon/sqlite_check.h"

#include <doctest/doctest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace guardian {
namespace {
namespace fs = std::filesystem;

struct DbFixture {
  fs::path dir;
  std::string db;
  DbFixture() {
    char tmpl[] = "/tmp/guardian-sqlite-XXXXXX";
    dir = mkdtemp(tmpl);
    db = (dir / "app.db").string();
    sqlite3* h = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
    // Enough rows for many pages, so a page in the middle can be overwritten.
    REQUIRE(
        sqlite3_exec(h,
                     "PRAGMA journal_mode=WAL;"
                     "CREATE TABLE items(id INTEGER PRIMARY KEY, body TEXT);"
                     "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i<3000)"
                     " INSERT INTO items SELECT i, printf('item %d alpha bravo charlie', i) FROM n;"
                     "PRAGMA wal_checkpoint(TRUNCATE);",
                     nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(h);
  }
  ~DbFixture() { fs::remove_all(dir); }

  void Overwrite(std::streamoff at, size_t n, char byte) {
    std::fstream f(db, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(at);
    std::string junk(n, byte);
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  }
};

}  // namespace

TEST_CASE("a healthy database passes quick_check and integrity_check") {
  DbFixture f;
  CHECK(CheckDatabase(f.db, false).ok);
  CHECK(CheckDatabase(f.db, true).ok);
  CHECK(CheckDatabase(f.db, false).Summary() == "ok");
}

TEST_CASE("pages overwritten in the middle are found") {
  DbFixture f;
  REQUIRE(fs::file_size(f.db) > 16 * 4096);
  f.Overwrite(8 * 4096, 4096, '\xff');
  DbCheck c = CheckDatabase(f.db, false);
  CHECK_FALSE(c.ok);
  INFO(c.Summary());
  CHECK(!c.problems.empty());
}

TEST_CASE("a zeroed header is not a database") {
  DbFixture f;
  f.Overwrite(0, 100, '\0');
  DbCheck c = CheckDatabase(f.db, false);
  CHECK_FALSE(c.ok);
  CHECK(c.code == "SQLITE_NOTADB");
  CHECK(c.Summary().rfind("SQLITE_NOTADB", 0) == 0);
}

TEST_CASE("a truncated file and a missing file are reported") {
  DbFixture f;
  fs::resize_file(f.db, 3 * 4096 + 100);
  CHECK_FALSE(CheckDatabase(f.db, false).ok);
  fs::remove(f.db);
  DbCheck c = CheckDatabase(f.db, false);
  CHECK_FALSE(c.ok);
  CHECK(c.code == "SQLITE_CANTOPEN");
}

TEST_CASE("backups are verified copies, newest kept, and a corrupt source gives none") {
  DbFixture f;
  std::string dir = (f.dir / "backups").string();
  BackupInfo b;
  for (int64_t t = 1000; t <= 4000; t += 1000) REQUIRE(TakeBackup(f.db, dir, t, 3, &b).ok());
  CHECK(b.taken_at == 4000);
  CHECK(b.bytes > 0);
  std::vector<BackupInfo> all = ListBackups(dir);
  REQUIRE(all.size() == 3);
  CHECK(all[0].taken_at == 4000);
  CHECK(all[2].taken_at == 2000);
  CHECK(CheckDatabase(all[0].path, true).ok);

  f.Overwrite(8 * 4096, 4096, '\xff');
  Status s = TakeBackup(f.db, dir, 5000, 3, &b);
  CHECK_FALSE(s.ok());
  CHECK(s.message().find("integrity_check") != std::string::npos);
  all = ListBackups(dir);
  CHECK(all.size() == 3);  // the refused copy is not kept, the good ones stay
  CHECK(all[0].taken_at == 4000);
  for (const auto& e : fs::directory_iterator(dir)) CHECK(e.path().extension() == ".db");
}

}  // namespace guardian
