// db_corruption: a SQLite database fails PRAGMA quick_check (run on the pool through its own
// read-only connection), cannot be read at all (SQLITE_NOTADB, ...), or the app that owns it
// reports corruption, or locked/busy errors for longer than busy_limit_ms, in its status file
// (which also wakes a probe at once). While the database is healthy the detector keeps verified
// backups (online backup API, integrity-checked, newest keep_backups) in the check's state dir,
// one every backup_interval_ms: what the playbook restores from.
#include <nlohmann/json.hpp>

#include "daemon/clock.h"
#include "daemon/file_util.h"
#include "daemon/fs_watch.h"
#include "daemon/sqlite_check.h"
#include "daemon/work.h"
#include "detectors/detector.h"

namespace guardian {
namespace {

struct DbProbe {
  DbCheck check;
  std::string app_code;  // the app's last error code while it says the database is not ok
  std::string app_message;
  bool backup_taken = false;
  std::string backup_problem;
  int64_t newest_backup = 0;
};

class DbCorruptionDetector : public Detector {
 public:
  explicit DbCorruptionDetector(const DetectorEnv& env)
      : env_(env),
        path_(ParamString(env.check.params, "path")),
        full_(ParamBool(env.check.params, "full_check", false)),
        backup_interval_ms_(ParamInt(env.check.params, "backup_interval_ms", 60'000)),
        keep_(static_cast<int>(ParamInt(env.check.params, "keep_backups", 5))),
        busy_limit_ms_(ParamInt(env.check.params, "busy_limit_ms", 5'000)) {}

  Status Start(std::function<void()> wake) override {
    return WatchServiceStatus(env_, std::move(wake), &watch_);
  }

  void Close(std::function<void()> closed) override {
    watch_.reset();
    closed();
  }

  void Probe(std::function<void(Observation)> done) override {
    auto r = std::make_shared<DbProbe>();
    std::string path = path_;
    std::string status_file = env_.service ? env_.service->status_file : "";
    std::string dir = env_.check_state_dir + "/backups";
    bool full = full_;
    int keep = keep_;
    int64_t now = SystemClock::Get()->WallMs();
    bool backup_due = backup_interval_ms_ > 0 && now - newest_backup_ >= backup_interval_ms_;
    QueueWork(
        env_.loop,
        [r, path, status_file, dir, full, keep, now, backup_due] {
          r->check = CheckDatabase(path, full);
          nlohmann::json doc;
          if (!status_file.empty() && ReadJsonObject(status_file, 1 << 20, &doc).ok() &&
              doc.contains("db") && doc["db"].is_object()) {
            const auto& db = doc["db"];
            if (!db.value("ok", true) && db.contains("last_error") &&
                db["last_error"].is_object()) {
              r->app_code = db["last_error"].value("code", "");
              r->app_message = db["last_error"].value("message", "");
            }
          }
          std::vector<BackupInfo> all = ListBackups(dir);
          r->newest_backup = all.empty() ? 0 : all.front().taken_at;
          if (r->check.ok && r->app_code.empty() && backup_due) {
            BackupInfo b;
            Status s = TakeBackup(path, dir, now, keep, &b);
            r->backup_taken = s.ok();
            if (s.ok()) r->newest_backup = b.taken_at;
            if (!s.ok()) r->backup_problem = s.message();
          }
        },
        [this, weak = weak_from_this(), r, now, done] {
          if (weak.expired()) return done(Observation::Unknown("check closed"));
          newest_backup_ = r->newest_backup;
          done(Judge(*r, now));
        });
  }

 private:
  Observation Judge(const DbProbe& r, int64_t now) {
    // Missing before it ever existed (the app has not created it yet) is no corruption; missing
    // after Guardian backed it up is a loss to repair.
    if (!r.check.ok && r.check.code == "SQLITE_CANTOPEN" && r.newest_backup == 0)
      return Observation::Unknown(path_ + " does not exist yet");
    if (!r.check.ok) {
      busy_since_ = 0;
      return Observation::Failing(path_ + ": " + r.check.Summary());
    }
    const std::string& code = r.app_code;
    if (code == "SQLITE_CORRUPT" || code == "SQLITE_NOTADB") {
      busy_since_ = 0;
      return Observation::Failing("the app reports " + code + " on " + path_ + ": " +
                                  r.app_message);
    }
    if (code == "SQLITE_BUSY" || code == "SQLITE_LOCKED") {
      if (busy_since_ == 0) busy_since_ = now;
      if (now - busy_since_ >= busy_limit_ms_)
        return Observation::Failing("the app has reported " + code + " on " + path_ + " for " +
                                    std::to_string((now - busy_since_) / 1000) +
                                    " s: " + r.app_message);
    } else {
      busy_since_ = 0;
    }
    std::string backup =
        r.newest_backup > 0
            ? "newest verified backup " + std::to_string((now - r.newest_backup) / 1000) + " s old"
            : "no verified backup yet";
    if (!r.backup_problem.empty()) backup += " (last backup failed: " + r.backup_problem + ")";
    return Observation::Ok(std::string(full_ ? "integrity_check" : "quick_check") + " ok; " +
                           backup);
  }

  DetectorEnv env_;
  std::string path_;
  bool full_;
  int64_t backup_interval_ms_;
  int keep_;
  int64_t busy_limit_ms_;
  int64_t busy_since_ = 0;
  int64_t newest_backup_ = 0;
  std::unique_ptr<FsWatch> watch_;
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    db_corruption,
    DetectorFactory{
        "db_corruption",
        {
            {"path", ParamType::kPath, true, "the SQLite database file"},
            {"service", ParamType::kString, false,
             "the supervised service that owns it (its status file reports database errors, "
             "and the playbook tells it to reopen the database)"},
            {"full_check", ParamType::kBool, false,
             "integrity_check instead of quick_check (slower; default false)"},
            {"backup_interval_ms", ParamType::kInt, false,
             "a verified backup this often while healthy (default 60000; 0: none)"},
            {"keep_backups", ParamType::kInt, false, "verified backups kept (default 5)"},
            {"busy_limit_ms", ParamType::kInt, false,
             "locked/busy errors reported by the app for this long count as failing "
             "(default 5000)"},
            {"allow_paths", ParamType::kPathList, false, "extra folders the playbook may write"},
        },
        [](const DetectorEnv& env) -> std::shared_ptr<Detector> {
          return std::make_shared<DbCorruptionDetector>(env);
        },
    });

}  // namespace guardian
