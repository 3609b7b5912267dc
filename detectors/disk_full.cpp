// disk_full: a filesystem the stack writes to runs short of space or inodes (statvfs on the
// pool: what an unprivileged writer can still use, against floors), or the app that writes
// there reports ENOSPC in its status file (which also wakes a probe at once). `path` and every
// entry of `paths` are judged; several on one filesystem are judged once.
#include <sys/stat.h>

#include <nlohmann/json.hpp>
#include <set>

#include "daemon/disk_usage.h"
#include "daemon/file_util.h"
#include "daemon/fs_watch.h"
#include "daemon/work.h"
#include "detectors/detector.h"

namespace guardian {
namespace {

struct DiskRead {
  std::vector<std::string> failing;  // one line per filesystem under a floor
  std::vector<std::string> ok;
  std::string unreadable;
  int64_t enospc = -1;  // the app's count, -1 when it reports none
  std::string enospc_error;
};

class DiskFullDetector : public Detector {
 public:
  explicit DiskFullDetector(const DetectorEnv& env) : env_(env) {
    const Params& p = env.check.params;
    paths_.push_back(ParamString(p, "path"));
    for (const auto& extra : ParamList(p, "paths")) paths_.push_back(extra);
    limits_.min_free_percent = ParamNumber(p, "min_free_percent", 10);
    limits_.min_free_bytes = static_cast<uint64_t>(ParamInt(p, "min_free_mb", 0)) << 20;
    limits_.min_free_inodes_percent = ParamNumber(p, "min_free_inodes_percent", 5);
  }

  Status Start(std::function<void()> wake) override {
    return WatchServiceStatus(env_, std::move(wake), &watch_);
  }

  void Close(std::function<void()> closed) override {
    watch_.reset();
    closed();
  }

  void Probe(std::function<void(Observation)> done) override {
    auto r = std::make_shared<DiskRead>();
    std::vector<std::string> paths = paths_;
    DiskLimits limits = limits_;
    std::string status_file = env_.service ? env_.service->status_file : "";
    QueueWork(
        env_.loop,
        [r, paths, limits, status_file] {
          std::set<dev_t> seen;
          for (const std::string& path : paths) {
            struct stat st;
            if (::stat(path.c_str(), &st) != 0) {
              r->unreadable += (r->unreadable.empty() ? "" : "; ") + path + " is missing";
              continue;
            }
            if (!seen.insert(st.st_dev).second) continue;  // that filesystem is judged already
            DiskUsage u;
            Status s = ReadDiskUsage(path, &u);
            if (!s.ok()) {
              r->unreadable += (r->unreadable.empty() ? "" : "; ") + s.message();
              continue;
            }
            std::vector<std::string> under = JudgeDisk(u, limits);
            std::string line = path + ": " + DescribeDisk(u);
            if (under.empty()) {
              r->ok.push_back(line);
            } else {
              std::string why;
              for (const auto& u2 : under) why += (why.empty() ? "" : ", ") + u2;
              r->failing.push_back(path + ": " + why);
            }
          }
          nlohmann::json doc;
          if (!status_file.empty() && ReadJsonObject(status_file, 1 << 20, &doc).ok() &&
              doc.contains("disk") && doc["disk"].is_object()) {
            const auto& disk = doc["disk"];
            if (disk.contains("enospc") && disk["enospc"].is_number_integer())
              r->enospc = disk["enospc"].get<int64_t>();
            if (disk.contains("last_error") && disk["last_error"].is_object())
              r->enospc_error = disk["last_error"].value("what", "") + ": " +
                                disk["last_error"].value("message", "");
          }
        },
        [this, weak = weak_from_this(), r, done] {
          if (weak.expired()) return done(Observation::Unknown("check closed"));
          done(Judge(*r));
        });
  }

 private:
  Observation Judge(const DiskRead& r) {
    // ENOSPC the app met since the last probe: the disk was full for it even if a floor holds
    // (a burst, a reserve only root may use). The first count read is history.
    bool new_enospc = enospc_seen_ >= 0 && r.enospc > enospc_seen_;
    if (r.enospc >= 0) enospc_seen_ = r.enospc;
    std::vector<std::string> why = r.failing;
    if (new_enospc) why.push_back("the app reports ENOSPC (" + r.enospc_error + ")");
    if (!why.empty()) {
      std::string text;
      for (const auto& w : why) text += (text.empty() ? "" : "; ") + w;
      return Observation::Failing(text);
    }
    if (r.ok.empty()) return Observation::Unknown(r.unreadable);
    std::string text;
    for (const auto& o : r.ok) text += (text.empty() ? "" : "; ") + o;
    if (!r.unreadable.empty()) text += "; " + r.unreadable;
    return Observation::Ok(text);
  }

  DetectorEnv env_;
  std::vector<std::string> paths_;
  DiskLimits limits_;
  int64_t enospc_seen_ = -1;
  std::unique_ptr<FsWatch> watch_;
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    disk_full,
    DetectorFactory{
        "disk_full",
        {
            {"path", ParamType::kPath, true, "a folder on the filesystem to watch"},
            {"paths", ParamType::kPathList, false,
             "more folders (data, logs, snapshots); each filesystem is judged once"},
            {"min_free_percent", ParamType::kNumber, false,
             "free space floor as a share of the filesystem (default 10)"},
            {"min_free_mb", ParamType::kInt, false, "free space floor in MiB (default 0: off)"},
            {"min_free_inodes_percent", ParamType::kNumber, false,
             "free inode floor as a share (default 5; 0: off)"},
            {"service", ParamType::kString, false,
             "the supervised service writing there: its ENOSPC reports count, and it is told "
             "to reopen its log after a rotation"},
            {"log_dir", ParamType::kPath, false, "playbook: where rotated logs are compressed"},
            {"active_logs", ParamType::kStringList, false,
             "playbook: names of logs still being written (rotated, not compressed in place; "
             "default: every *.log)"},
            {"keep_logs", ParamType::kInt, false,
             "playbook: rotated logs kept when even compressing has no room (default 2)"},
            {"snapshot_dir", ParamType::kPath, false, "playbook: where old snapshots are pruned"},
            {"keep_snapshots", ParamType::kInt, false,
             "playbook: newest snapshots kept (default 3)"},
            {"tmp_dirs", ParamType::kPathList, false, "playbook: folders whose files are cleared"},
            {"reserve_dir", ParamType::kPath, false,
             "playbook: a folder on another filesystem where pruned files are moved (so rollback "
             "can restore them) instead of deleted"},
            {"allow_paths", ParamType::kPathList, false, "extra folders the playbook may write"},
        },
        [](const DetectorEnv& env) -> std::shared_ptr<Detector> {
          return std::make_shared<DiskFullDetector>(env);
        },
    });

}  // namespace guardian
