#pragma once
// The app's SQLite database: one connection in WAL mode, shared by the HTTP workers and the
// maintenance thread under one mutex. Every SQLite error is recorded in the status (by code
// name) and logged. A file replaced on disk stays unseen until Reopen(), as in real services.

#include <sqlite3.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

namespace demoapp {

class Log;
class Status;

// The outcome of one database operation; `code` is a name such as "SQLITE_CORRUPT".
struct DbResult {
  bool ok = true;
  std::string code;
  std::string message;
  std::string Text() const { return code + ": " + message; }
};

struct Item {
  int64_t id = 0;
  std::string body;
  int64_t created_at = 0;
};

// "SQLITE_CORRUPT" for SQLITE_CORRUPT and its extended codes.
std::string SqliteCodeName(int rc);

class Database {
 public:
  Database(std::string path, int64_t busy_timeout_ms, int64_t seed_rows, Log& log, Status& status);
  ~Database();

  // Opens the file (WAL, tables, seed rows when `items` is empty). On failure the connection,
  // if SQLite gave one, stays open so that later reads keep reporting what is wrong.
  DbResult Open();
  // Closes and opens again; `rows` is the item count of the file now at the path.
  DbResult Reopen(int64_t* rows);
  void Close();
  // True once Open() has run (even when it failed), until Close().
  bool opened() const;

  DbResult Count(int64_t* rows);
  // Reads every page of `items` (so corruption anywhere is noticed).
  DbResult Check(int64_t* rows);
  DbResult Heartbeat();
  DbResult Insert(const std::string& body, int64_t* id);
  DbResult Get(int64_t id, Item* item, bool* found);
  // Every item in id order.
  DbResult ForEach(const std::function<void(const Item&)>& fn);

  const std::string& path() const { return path_; }

 private:
  DbResult OpenLocked();
  DbResult Exec(const char* sql);
  // Records and logs the connection's last error (or `rc` when there is no connection).
  DbResult Fail(int rc, const std::string& what);
  // Why there is no connection: not opened yet, or the error of the failed open.
  DbResult NotOpen();
  DbResult Seed();
  // Runs a one-row query whose first column is the item count.
  DbResult CountLocked(const char* sql, const char* what, int64_t* rows);

  const std::string path_;
  const int64_t busy_timeout_ms_;
  const int64_t seed_rows_;
  Log& log_;
  Status& status_;

  mutable std::mutex mu_;
  sqlite3* db_ = nullptr;
  bool opened_ = false;
  DbResult open_error_;  // why db_ is null although opened_
  uint64_t dev_ = 0;     // the file opened last: a reopen notices it was replaced
  uint64_t ino_ = 0;

  // Repeats of one error are logged at most once a second (the status counts every one).
  std::string last_logged_;
  int64_t last_logged_at_ = 0;
  int64_t repeats_ = 0;
};

}  // namespace demoapp
