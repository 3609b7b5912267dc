// missing_config: a watched YAML config file is missing, empty, unparsable, or lacks a
// required key. inotify on the file's folder triggers a probe within `settle_ms` of a change,
// so detection does not wait for the poll interval. While the file is valid, each new content
// is kept as a last-known-good version under the check's state dir (newest `keep_versions`).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon/file_util.h"
#include "daemon/fs_watch.h"
#include "daemon/timer.h"
#include "daemon/work.h"
#include "daemon/yaml_check.h"
#include "detectors/detector.h"

namespace guardian {
namespace {
namespace fs = std::filesystem;

// Keeps `content` as the newest version unless it equals the newest already kept.
void KeepVersion(const fs::path& dir, const std::string& content, int64_t now_ms, int keep) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  std::vector<fs::path> files;
  for (const auto& e : ListDir(dir, &ec)) {
    if (e.extension() == ".yaml") files.push_back(e);
  }
  std::sort(files.begin(), files.end());
  if (!files.empty()) {
    std::string newest;
    if (ReadRegularFile(files.back().string(), content.size() + 1, &newest).ok() &&
        newest == content)
      return;
  }
  char name[64];
  std::snprintf(name, sizeof(name), "%013lld.yaml", static_cast<long long>(now_ms));
  fs::path tmp = dir / (std::string(name) + ".tmp");
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content;
    if (!out) return;
  }
  fs::rename(tmp, dir / name, ec);
  files.push_back(dir / name);
  while (static_cast<int>(files.size()) > keep) {
    fs::remove(files.front(), ec);
    files.erase(files.begin());
  }
}

class MissingConfigDetector : public Detector {
 public:
  explicit MissingConfigDetector(const DetectorEnv& env)
      : env_(env),
        path_(ParamString(env.check.params, "path")),
        keys_(ParamList(env.check.params, "required_keys")),
        // At least one kept copy, or the playbook would have nothing to restore.
        settle_ms_(std::max<int64_t>(0, ParamInt(env.check.params, "settle_ms", 30))),
        keep_(static_cast<int>(
            std::clamp<int64_t>(ParamInt(env.check.params, "keep_versions", 10), 1, 1000))),
        settle_(env.loop) {}

  Status Start(std::function<void()> wake) override {
    wake_ = std::move(wake);
    // The folder, not the file: the file may be deleted and created again.
    watch_ = std::make_unique<FsWatch>(env_.loop);
    Status s = watch_->StartForFile(path_, [this] { OnChange(); });
    // Polling still covers it; the event source is an accelerator.
    if (!s.ok()) return Status::IOError(s.message() + " (polling only)");
    return Status::OK();
  }

  void Close(std::function<void()> closed) override {
    // Timer and FsWatch free their handles in their own close callbacks.
    settle_.Stop();
    watch_.reset();
    closed();
  }

  void Probe(std::function<void(Observation)> done) override {
    for (const auto& k : keys_) {
      if (!KeyTypeValid(k))
        return done(Observation::Unknown("required_keys: '" + k +
                                         "' names no known type (int, number, bool, string, "
                                         "list, map)"));
    }
    auto obs = std::make_shared<Observation>();
    std::string path = path_;
    std::vector<std::string> keys = keys_;
    fs::path versions = fs::path(env_.check_state_dir) / "versions";
    int keep = keep_;
    QueueWork(
        env_.loop,
        [obs, path, keys, versions, keep] {
          std::string content;
          Status s = CheckYamlFile(path, keys, &content);
          if (s.ok()) {
            auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                           std::chrono::system_clock::now().time_since_epoch())
                           .count();
            KeepVersion(versions, content, now, keep);
            *obs = Observation::Ok("valid");
          } else {
            *obs = Observation::Failing(path + ": " + s.message());
          }
        },
        [obs, done] { done(*obs); });
  }

 private:
  void OnChange() {
    // Let an editor's truncate-then-write settle before judging the file.
    if (!settle_.active())
      settle_.Start(settle_ms_, [this] {
        if (wake_) wake_();
      });
  }

  DetectorEnv env_;
  std::string path_;
  std::vector<std::string> keys_;
  int64_t settle_ms_;
  int keep_;
  Timer settle_;
  std::unique_ptr<FsWatch> watch_;
  std::function<void()> wake_;
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    missing_config,
    DetectorFactory{
        "missing_config",
        {
            {"path", ParamType::kPath, true, "the watched YAML config file"},
            {"required_keys", ParamType::kStringList, false,
             "dotted keys that must be present, e.g. server.port, or present with a type, "
             "e.g. server.port:int (int, number, bool, string, list, map)"},
            {"defaults_file", ParamType::kPath, false, "YAML written when no good copy exists"},
            {"settle_ms", ParamType::kInt, false,
             "delay after a file event before probing (default 30)"},
            {"keep_versions", ParamType::kInt, false, "last-known-good copies kept (default 10)"},
            {"allow_paths", ParamType::kPathList, false, "extra folders the playbook may write"},
            {"service", ParamType::kString, false,
             "the supervised service that reads the file: the playbook has it reload the "
             "restored file (SIGHUP) and waits for its status file to say so"},
        },
        [](const DetectorEnv& env) -> std::shared_ptr<Detector> {
          return std::make_shared<MissingConfigDetector>(env);
        },
    });

}  // namespace guardian
