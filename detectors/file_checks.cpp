// file and filesystem: a file that must exist, and a filesystem that must not fill up. Both are
// woken by inotify on the folder (`file`: the file's; `filesystem`: `path`, the folder writes
// land in), so a removal or a write that fills the disk is judged within a millisecond, and
// polled on their interval for what inotify cannot see (writes in other folders of the same
// filesystem). Their playbook (`exec`) runs the check's `on_fail` command.
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "daemon/fs_watch.h"
#include "daemon/timer.h"
#include "daemon/work.h"
#include "detectors/detector.h"

namespace guardian {
namespace {

class FileDetector : public Detector {
 public:
  explicit FileDetector(const DetectorEnv& env)
      : loop_(env.loop), path_(ParamString(env.check.params, "path")) {}

  Status Start(std::function<void()> wake) override {
    watch_ = std::make_unique<FsWatch>(loop_);
    Status s = watch_->StartForFile(path_, std::move(wake));
    if (!s.ok()) return Status::IOError(s.message() + " (polling only)");
    return Status::OK();
  }

  void Close(std::function<void()> closed) override {
    watch_.reset();
    closed();
  }

  void Probe(std::function<void(Observation)> done) override {
    auto err = std::make_shared<int>(0);
    auto mode = std::make_shared<mode_t>(0);
    std::string path = path_;
    QueueWork(
        loop_,
        [path, err, mode] {
          struct stat st {};
          if (::stat(path.c_str(), &st) != 0) *err = errno;
          *mode = st.st_mode;
        },
        [path, err, mode, done] {
          if (*err == ENOENT) return done(Observation::Failing(path + " is missing"));
          if (*err != 0) return done(Observation::Failing(path + ": " + std::strerror(*err)));
          if (!S_ISREG(*mode)) return done(Observation::Failing(path + " is not a regular file"));
          done(Observation::Ok(path + " exists"));
        });
  }

 private:
  uv_loop_t* loop_;
  std::string path_;
  std::unique_ptr<FsWatch> watch_;
};

class FilesystemDetector : public Detector {
 public:
  explicit FilesystemDetector(const DetectorEnv& env)
      : loop_(env.loop),
        path_(ParamString(env.check.params, "path")),
        max_used_(ParamNumber(env.check.params, "max_used_percent", 90)),
        min_gap_ms_(ParamInt(env.check.params, "event_gap_ms", 2)),
        gap_(env.loop) {}

  Status Start(std::function<void()> wake) override {
    wake_ = std::move(wake);
    watch_ = std::make_unique<FsWatch>(loop_);
    Status s = watch_->Start(path_, [this](const std::string&) { OnWrite(); });
    if (!s.ok()) return Status::IOError(s.message() + " (polling only)");
    return Status::OK();
  }

  void Close(std::function<void()> closed) override {
    watch_.reset();
    gap_.Stop();
    closed();
  }

  void Probe(std::function<void(Observation)> done) override {
    auto vfs = std::make_shared<struct statvfs>();
    auto err = std::make_shared<int>(0);
    std::string path = path_;
    double max_used = max_used_;
    QueueWork(
        loop_, [path, vfs, err] { *err = ::statvfs(path.c_str(), vfs.get()) == 0 ? 0 : errno; },
        [path, vfs, err, max_used, done] {
          if (*err != 0) return done(Observation::Failing(path + ": " + std::strerror(*err)));
          if (vfs->f_blocks == 0) return done(Observation::Ok(path + ": no size limit"));
          // Used as df counts it: blocks minus the free ones (root's reserve counts as free).
          double used = 100.0 * static_cast<double>(vfs->f_blocks - vfs->f_bfree) /
                        static_cast<double>(vfs->f_blocks);
          char text[96];
          std::snprintf(text, sizeof(text), "%.1f%% used (limit %.1f%%)", used, max_used);
          Observation o = used > max_used ? Observation::Failing(path + ": " + text)
                                          : Observation::Ok(path + ": " + text);
          o.gauges = {{"used_percent", used}};
          done(o);
        });
  }

 private:
  // A write storm wakes at most one probe per `event_gap_ms`; the last write of a burst is
  // still judged, by the probe the gap timer runs.
  void OnWrite() {
    if (gap_.active()) return;
    uint64_t now = uv_now(loop_);
    if (now - last_wake_ >= static_cast<uint64_t>(min_gap_ms_)) {
      last_wake_ = now;
      if (wake_) wake_();
      return;
    }
    gap_.Start(min_gap_ms_ - static_cast<int64_t>(now - last_wake_), [this] {
      last_wake_ = uv_now(loop_);
      if (wake_) wake_();
    });
  }

  uv_loop_t* loop_;
  std::string path_;
  double max_used_;
  int64_t min_gap_ms_;
  Timer gap_;
  uint64_t last_wake_ = 0;
  std::unique_ptr<FsWatch> watch_;
  std::function<void()> wake_;
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    file, DetectorFactory{
              "file",
              WithRemedyParams({
                  {"path", ParamType::kPath, true, "the file that must exist (a regular file)"},
              }),
              [](const DetectorEnv& env) { return std::make_shared<FileDetector>(env); }});

GUARDIAN_REGISTER_DETECTOR(
    filesystem,
    DetectorFactory{
        "filesystem",
        WithRemedyParams({
            {"path", ParamType::kPath, true,
             "a folder on the filesystem (writes into it wake the check at once)"},
            {"max_used_percent", ParamType::kNumber, false, "fails above this (default 90)"},
            {"event_gap_ms", ParamType::kInt, false,
             "at most one event-woken probe per this many ms (default 2)"},
        }),
        [](const DetectorEnv& env) { return std::make_shared<FilesystemDetector>(env); }});

}  // namespace guardian
