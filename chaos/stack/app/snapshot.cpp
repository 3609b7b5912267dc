// Writes item snapshots on demand and on the configured interval.

#include "chaos/stack/app/snapshot.h"

#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "chaos/stack/app/database.h"
#include "chaos/stack/app/log.h"
#include "chaos/stack/app/status.h"
#include "chaos/stack/app/util.h"

namespace demoapp {

Snapshots::Snapshots(std::string dir, Database& db, Log& log, Status& status)
    : dir_(std::move(dir)), db_(db), log_(log), status_(status) {}

bool Snapshots::Take(std::string* path, int64_t* items, std::string* error, bool* disk_full) {
  *disk_full = false;
  int64_t now = NowMs();
  nlohmann::json list = nlohmann::json::array();
  DbResult r = db_.ForEach([&](const Item& item) {
    list.push_back({{"id", item.id}, {"body", item.body}, {"created_at", item.created_at}});
  });
  if (!r.ok) {
    *error = "database: " + r.Text();
    return false;
  }
  *items = static_cast<int64_t>(list.size());
  nlohmann::json doc = {{"taken_at", now}, {"count", list.size()}, {"items", std::move(list)}};
  MakeDirs(dir_);
  *path = dir_ + "/snapshot-" + std::to_string(now) + ".json";
  // WriteFileAtomic removes the tmp file when a write fails.
  int err = WriteFileAtomic(
      *path, doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  if (err != 0) {
    *error = *path + ": " + strerror(err);
    *disk_full = err == ENOSPC;
    if (*disk_full) status_.DiskError("snapshot", *error);
    log_.Error("snapshot failed: " + *error);
    return false;
  }
  log_.Info("snapshot written: " + *path + " (" + std::to_string(*items) + " items)");
  return true;
}

}  // namespace demoapp
