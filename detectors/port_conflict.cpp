// port_conflict: the port a supervised service should listen on (its port registry entry, or
// params.port) is held by another process: a stale instance of the service's own program, or
// a foreign one. Owners come from /proc/net/tcp{,6} and /proc/PID/fd (PortSurvey). The
// service's status file is watched, so a failed bind (the app writes it before exiting) wakes a
// probe at once instead of at the next interval. A service that was moved off its preferred
// port is reported again (so a playbook can move it back) once the preferred port has been
// free for return_after_ms.

#include "daemon/fs_watch.h"
#include "daemon/port_survey.h"
#include "daemon/supervisor.h"
#include "daemon/work.h"
#include "detectors/detector.h"

namespace guardian {
namespace {

class PortConflictDetector : public Detector {
 public:
  explicit PortConflictDetector(const DetectorEnv& env)
      : env_(env),
        service_(ParamString(env.check.params, "service")),
        fixed_port_(static_cast<int>(ParamInt(env.check.params, "port", 0))),
        return_after_ms_(ParamInt(env.check.params, "return_after_ms", 10'000)) {}

  Status Start(std::function<void()> wake) override {
    return WatchServiceStatus(env_, std::move(wake), &watch_);
  }

  void Close(std::function<void()> closed) override {
    watch_.reset();
    closed();
  }

  void Probe(std::function<void(Observation)> done) override {
    Service* svc = env_.supervisor ? env_.supervisor->Find(service_) : nullptr;
    if (!svc) return done(Observation::Unknown("service " + service_ + " is not running yet"));
    ServiceSnapshot snap = svc->Snapshot();
    int port = fixed_port_ > 0 ? fixed_port_ : snap.port;
    if (port <= 0)
      return done(Observation::Unknown("service " + service_ + " has no port to check"));
    bool ready = snap.state == ServiceState::kReady;
    int preferred = 0;
    if (auto it = env_.supervisor->ports().find(service_); it != env_.supervisor->ports().end())
      preferred = it->second.preferred;
    // Only a moved service that serves well is a candidate for moving back.
    if (fixed_port_ > 0 || preferred == port || !ready || return_after_ms_ < 0) preferred = 0;
    auto survey = std::make_shared<PortSurvey>();
    auto home = std::make_shared<PortSurvey>();
    auto status = std::make_shared<Status>();
    std::string status_file = svc->config().status_file;
    pid_t pid = snap.process.pid;
    std::string exe = snap.exe;
    std::string name = service_;
    std::weak_ptr<Detector> weak = weak_from_this();
    QueueWork(
        env_.loop,
        [survey, home, status, port, preferred, pid, exe, status_file] {
          *status = SurveyPort(port, pid, exe, status_file, survey.get());
          if (status->ok() && preferred > 0) SurveyPort(preferred, pid, exe, "", home.get());
        },
        [this, weak, survey, home, status, name, ready, preferred, done] {
          if (!status->ok()) return done(Observation::Unknown(status->message()));
          Observation o = JudgePort(*survey, name, ready);
          if (weak.expired() || !o.ok() || preferred == 0) {
            if (!weak.expired()) free_since_ = -1;
            return done(o);
          }
          if (!home->holders.empty() || home->unattributed > 0) {
            free_since_ = -1;
            return done(o);
          }
          int64_t now = static_cast<int64_t>(uv_now(env_.loop));
          if (free_since_ < 0) free_since_ = now;
          if (now - free_since_ < return_after_ms_) return done(o);
          done(Observation::Failing(
              name + " runs on port " + std::to_string(survey->port) + ", moved off port " +
              std::to_string(preferred) + ", which has been free for " +
              std::to_string((now - free_since_) / 1000) + " s: time to move back"));
        });
  }

 private:
  DetectorEnv env_;
  std::string service_;
  int fixed_port_;
  int64_t return_after_ms_;
  int64_t free_since_ = -1;  // loop ms since the preferred port was seen free
  std::unique_ptr<FsWatch> watch_;
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    port_conflict,
    DetectorFactory{
        "port_conflict",
        {
            {"service", ParamType::kString, true, "the supervised service whose port is watched"},
            {"port", ParamType::kInt, false,
             "the port to watch (default: the service's entry in the port registry)"},
            {"return_after_ms", ParamType::kInt, false,
             "after a move, report once the preferred port has been free this long, so the "
             "playbook moves the service back (default 10000; -1: never)"},
            {"stop_grace_ms", ParamType::kInt, false,
             "how long a stale instance gets after SIGTERM before SIGKILL (default 2000)"},
        },
        [](const DetectorEnv& env) -> std::shared_ptr<Detector> {
          return std::make_shared<PortConflictDetector>(env);
        },
    });

}  // namespace guardian
