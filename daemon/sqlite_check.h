#pragma once
// SQLite health and backups for a database someone else (the app) owns: a quick_check or
// integrity_check through a read-only connection, and online backups (the SQLite backup API,
// which copies a consistent snapshot while the app keeps writing) that are verified with
// integrity_check before they count, the newest N kept. All blocking: call on the pool.

#include <cstdint>
#include <string>
#include <vector>

#include "daemon/status.h"

namespace guardian {

struct DbCheck {
  bool ok = false;
  std::string code;                   // the SQLite error code name when it failed to open/read
  std::vector<std::string> problems;  // what quick_check/integrity_check reported (first 20)
  std::string Summary() const;        // "ok" or "SQLITE_NOTADB: file is not a database" or
                                      // "quick_check: *** in database main *** Page 3: ..."
};

// PRAGMA quick_check (or integrity_check with `full`) through a read-only connection that waits
// at most busy_ms for locks. A database that cannot be opened or read is not ok, with its code.
DbCheck CheckDatabase(const std::string& path, bool full, int busy_ms = 1000);

// The name of a SQLite result code ("SQLITE_CORRUPT"; primary code names only).
std::string SqliteCodeName(int rc);

struct BackupInfo {
  std::string path;
  int64_t taken_at = 0;  // wall ms, from the file name
  int64_t bytes = 0;
};

// Copies `db` to DIR/<ms>.db with the online backup API, checks the copy with integrity_check,
// and keeps it only if it passes (a corrupt source gives a corrupt copy: it is removed and the
// error returned). Then removes all but the newest `keep` backups.
Status TakeBackup(const std::string& db, const std::string& dir, int64_t now_ms, int keep,
                  BackupInfo* out);

// The verified backups in `dir`, newest first.
std::vector<BackupInfo> ListBackups(const std::string& dir);

}  // namespace guardian
