#include "daemon/sqlite_check.h"

#include <sqlite3.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "daemon/file_util.h"

namespace guardian {
namespace fs = std::filesystem;

std::string SqliteCodeName(int rc) {
  switch (rc & 0xff) {
    case SQLITE_OK:
      return "SQLITE_OK";
    case SQLITE_ERROR:
      return "SQLITE_ERROR";
    case SQLITE_PERM:
      return "SQLITE_PERM";
    case SQLITE_BUSY:
      return "SQLITE_BUSY";
    case SQLITE_LOCKED:
      return "SQLITE_LOCKED";
    case SQLITE_NOMEM:
      return "SQLITE_NOMEM";
    case SQLITE_READONLY:
      return "SQLITE_READONLY";
    case SQLITE_IOERR:
      return "SQLITE_IOERR";
    case SQLITE_CORRUPT:
      return "SQLITE_CORRUPT";
    case SQLITE_FULL:
      return "SQLITE_FULL";
    case SQLITE_CANTOPEN:
      return "SQLITE_CANTOPEN";
    case SQLITE_PROTOCOL:
      return "SQLITE_PROTOCOL";
    case SQLITE_SCHEMA:
      return "SQLITE_SCHEMA";
    case SQLITE_NOTADB:
      return "SQLITE_NOTADB";
    default:
      return "SQLITE_" + std::to_string(rc & 0xff);
  }
}

std::string DbCheck::Summary() const {
  if (ok) return "ok";
  std::string first = problems.empty() ? "" : problems.front();
  if (!code.empty()) return code + (first.empty() ? "" : ": " + first);
  std::string more =
      problems.size() > 1 ? " (+" + std::to_string(problems.size() - 1) + " more)" : "";
  return "quick_check: " + first + more;
}

namespace {

// Runs a PRAGMA that returns rows of text; collects up to 20 of them.
int Rows(sqlite3* db, const char* sql, std::vector<std::string>* out) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return rc;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    const unsigned char* t = sqlite3_column_text(stmt, 0);
    if (out->size() < 20) out->push_back(t ? reinterpret_cast<const char*>(t) : "");
  }
  sqlite3_finalize(stmt);
  return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

DbCheck Check(sqlite3* db, bool full) {
  DbCheck c;
  std::vector<std::string> rows;
  int rc = Rows(db, full ? "PRAGMA integrity_check(20)" : "PRAGMA quick_check(20)", &rows);
  if (rc != SQLITE_OK) {
    c.code = SqliteCodeName(sqlite3_extended_errcode(db));
    c.problems.push_back(sqlite3_errmsg(db));
    return c;
  }
  c.ok = rows.size() == 1 && rows[0] == "ok";
  if (!c.ok) c.problems = rows;
  return c;
}

}  // namespace

DbCheck CheckDatabase(const std::string& path, bool full, int busy_ms) {
  DbCheck c;
  std::error_code ec;
  if (!fs::exists(path, ec)) {
    c.code = "SQLITE_CANTOPEN";
    c.problems.push_back(path + " is missing");
    return c;
  }
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    c.code = SqliteCodeName(rc);
    c.problems.push_back(db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_close(db);
    return c;
  }
  sqlite3_busy_timeout(db, busy_ms);
  c = Check(db, full);
  sqlite3_close(db);
  return c;
}

Status TakeBackup(const std::string& db, const std::string& dir, int64_t now_ms, int keep,
                  BackupInfo* out) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  char name[64];
  std::snprintf(name, sizeof(name), "%013lld.db", static_cast<long long>(now_ms));
  std::string final_path = (fs::path(dir) / name).string();
  std::string tmp = final_path + ".tmp";
  sqlite3* src = nullptr;
  sqlite3* dst = nullptr;
  auto fail = [&](const std::string& why) {
    if (dst) sqlite3_close(dst);
    if (src) sqlite3_close(src);
    fs::remove(tmp, ec);
    return Status::IOError(why);
  };
  if (sqlite3_open_v2(db.c_str(), &src, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK)
    return fail("cannot open " + db + ": " + (src ? sqlite3_errmsg(src) : "?"));
  sqlite3_busy_timeout(src, 1000);
  if (sqlite3_open_v2(tmp.c_str(), &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK)
    return fail("cannot create " + tmp);
  sqlite3_backup* b = sqlite3_backup_init(dst, "main", src, "main");
  if (!b) return fail("backup of " + db + ": " + sqlite3_errmsg(dst));
  int rc = sqlite3_backup_step(b, -1);
  sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE) return fail("backup of " + db + ": " + SqliteCodeName(rc));
  // A backup is a single file: no -wal beside it to lose when it is copied or restored.
  sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", nullptr, nullptr, nullptr);
  DbCheck check = Check(dst, true);
  if (!check.ok) return fail("backup of " + db + " fails integrity_check: " + check.Summary());
  sqlite3_close(dst);
  dst = nullptr;
  sqlite3_close(src);
  src = nullptr;
  fs::rename(tmp, final_path, ec);
  if (ec) return fail("cannot rename " + tmp + ": " + ec.message());
  out->path = final_path;
  out->taken_at = now_ms;
  out->bytes = static_cast<int64_t>(fs::file_size(final_path, ec));
  std::vector<BackupInfo> all = ListBackups(dir);
  for (size_t i = static_cast<size_t>(std::max(keep, 1)); i < all.size(); ++i)
    fs::remove(all[i].path, ec);
  return Status::OK();
}

std::vector<BackupInfo> ListBackups(const std::string& dir) {
  std::vector<BackupInfo> out;
  std::error_code ec;
  for (const auto& p : ListDir(dir, &ec)) {
    if (p.extension() != ".db") continue;  // a .tmp is an unfinished or refused copy
    BackupInfo b;
    b.path = p.string();
    b.taken_at = std::atoll(p.stem().string().c_str());
    b.bytes = static_cast<int64_t>(fs::file_size(p, ec));
    if (b.taken_at > 0) out.push_back(b);
  }
  std::sort(out.begin(), out.end(),
            [](const BackupInfo& a, const BackupInfo& b) { return a.taken_at > b.taken_at; });
  return out;
}

}  // namespace guardian
