#pragma once
// Snapshots: SNAPSHOTS/snapshot-<ms>.json holding every item, written to a tmp file and renamed.

#include <string>

namespace demoapp {

class Database;
class Log;
class Status;

class Snapshots {
 public:
  Snapshots(std::string dir, Database& db, Log& log, Status& status);

  // Writes one snapshot. Returns true with its path, or false with an error; `disk_full` tells
  // an ENOSPC (counted in the status, tmp file removed) from a database error.
  bool Take(std::string* path, int64_t* items, std::string* error, bool* disk_full);

 private:
  const std::string dir_;
  Database& db_;
  Log& log_;
  Status& status_;
};

}  // namespace demoapp
