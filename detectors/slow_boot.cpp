// slow_boot: a supervised service's boot, as its status file reports it chunk by chunk, runs
// past its deadline (start -> ready) or one chunk runs past the chunk deadline. Inotify on the
// status file's folder wakes a probe at each chunk's start and end, and a timer wakes one at
// the next deadline ahead, so a slow chunk is seen the moment it crosses its deadline, not at
// the next poll. The supervisor itself never kills a slow service; this detector reports it
// with the per-chunk timings and the playbook decides.
#include <nlohmann/json.hpp>

#include "daemon/boot_report.h"
#include "daemon/file_util.h"
#include "daemon/fs_watch.h"
#include "daemon/supervisor.h"
#include "daemon/timer.h"
#include "daemon/work.h"
#include "detectors/detector.h"

namespace guardian {
namespace {

class SlowBootDetector : public Detector {
 public:
  explicit SlowBootDetector(const DetectorEnv& env) : env_(env), deadline_timer_(env.loop) {
    service_ = ParamString(env.check.params, "service");
    limits_.deadline_ms = ParamInt(env.check.params, "deadline_ms", limits_.deadline_ms);
    limits_.chunk_deadline_ms =
        ParamInt(env.check.params, "chunk_deadline_ms", limits_.chunk_deadline_ms);
  }

  Status Start(std::function<void()> wake) override {
    wake_ = wake;
    if (!env_.service || env_.service->status_file.empty())
      return Status::InvalidArgument("service " + service_ + " has no status_file to read");
    return WatchServiceStatus(env_, wake, &watch_);
  }

  void Close(std::function<void()> closed) override {
    deadline_timer_.Stop();
    watch_.reset();
    closed();
  }

  void Probe(std::function<void(Observation)> done) override {
    Service* svc = env_.supervisor ? env_.supervisor->Find(service_) : nullptr;
    if (!svc || !env_.service)
      return done(Observation::Unknown("service " + service_ + " not running"));
    pid_t pid = svc->Snapshot().process.pid;
    if (pid == 0) return done(Observation::Unknown("service " + service_ + " has no process now"));
    std::string path = env_.service->status_file;
    auto doc = std::make_shared<nlohmann::json>();
    QueueWork(
        env_.loop, [path, doc] { ReadJsonObject(path, 1 << 20, doc.get()); },
        [this, weak = weak_from_this(), doc, pid, done] {
          if (weak.expired()) return;
          int64_t now = SystemClock::Get()->WallMs();
          BootVerdict v = JudgeBoot(*doc, pid, now, limits_);
          // Look again exactly when the next deadline passes.
          if (v.next_deadline_ms > 0 && wake_)
            deadline_timer_.Start(v.next_deadline_ms - now + 1, wake_);
          done(v.observation);
        });
  }

 private:
  DetectorEnv env_;
  std::string service_;
  BootLimits limits_;
  Timer deadline_timer_;
  std::unique_ptr<FsWatch> watch_;
  std::function<void()> wake_;
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    slow_boot,
    DetectorFactory{
        "slow_boot",
        {
            {"service", ParamType::kString, true,
             "the supervised service whose boot is watched (it needs a status_file)"},
            {"deadline_ms", ParamType::kInt, false, "start -> ready deadline (default 2000)"},
            {"chunk_deadline_ms", ParamType::kInt, false,
             "deadline of any one boot chunk (default 1000)"},
        },
        [](const DetectorEnv& env) -> std::shared_ptr<Detector> {
          return std::make_shared<SlowBootDetector>(env);
        },
    });

}  // namespace guardian
