// process: a program Guardian does not start itself, known by its pidfile (what Monit's
// `check process ... with pidfile` watches). Its exit is an event: a pidfd on the pidfile's
// process wakes a probe the moment it dies, whoever its parent is, and inotify on the pidfile's
// folder re-reads the pid when the file changes. With a `port`, each probe also asks whether it
// answers there (an HTTP GET of `http_path`, or a TCP connect), within `timeout_ms`: a process
// that runs but no longer answers is as down as one that exited.
//
// Evidence starts with "not running:" (no pidfile, a stale pid, an exit) or "not answering:"
// (running, but the port probe failed); the `process` playbook stops only what still runs.
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <list>
#include <memory>

#include "daemon/endpoint_probe.h"
#include "daemon/file_util.h"
#include "daemon/fs_watch.h"
#include "daemon/pid_watch.h"
#include "daemon/proc_identity.h"
#include "daemon/timer.h"
#include "daemon/work.h"
#include "detectors/detector.h"

namespace guardian {
namespace {

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Clock ticks are 10 ms, and the two clocks are read a moment apart.
constexpr double kPidReuseSlackMs = 100;

// Reads the pid in `pidfile`, opens a pidfd on it (in `*fd`, -1 unless OK) and identifies its
// process. Blocking: call on the pool.
Status ReadPidfile(const std::string& pidfile, ProcessIdentity* out, int* fd) {
  *fd = -1;
  std::string text;
  Status s = ReadRegularFile(pidfile, 64, &text);
  if (!s.ok()) return Status::NotFound("pidfile " + pidfile + ": " + s.message());
  char* end = nullptr;
  long pid = std::strtol(text.c_str(), &end, 10);
  while (end && (*end == '\n' || *end == ' ' || *end == '\r')) ++end;
  if (pid <= 0 || pid > 4194304 || !end || *end != '\0')
    return Status::InvalidArgument("pidfile " + pidfile + " holds no pid");
  int pidfd = -1;
  s = OpenPidfd(static_cast<pid_t>(pid), out, &pidfd);
  if (s.code() == Status::Code::kIOError) return s;
  if (!s.ok())
    return Status::NotFound("pid " + std::to_string(pid) + " from " + pidfile + " is not running");
  // A pidfile is written after its process starts. A process that started after the file was
  // last written cannot be the one it names: the pid was freed and handed to another program.
  struct stat st {};
  struct timespec boot {};
  if (::stat(pidfile.c_str(), &st) == 0 && ::clock_gettime(CLOCK_BOOTTIME, &boot) == 0) {
    double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
    double age_s = static_cast<double>(boot.tv_sec) + boot.tv_nsec / 1e9 -
                   static_cast<double>(out->start_ticks) / hz;
    double started_ms = static_cast<double>(WallMs()) - age_s * 1000.0;
    double written_ms = static_cast<double>(st.st_mtim.tv_sec) * 1000.0 + st.st_mtim.tv_nsec / 1e6;
    if (started_ms > written_ms + kPidReuseSlackMs) {
      ::close(pidfd);
      return Status::NotFound("pid " + std::to_string(pid) + " from " + pidfile +
                              " is a reused pid: that process started after the file was written");
    }
  }
  *fd = pidfd;
  return Status::OK();
}

class ProcessDetector : public Detector {
 public:
  explicit ProcessDetector(const DetectorEnv& env)
      : env_(env),
        pidfile_(ParamString(env.check.params, "pidfile")),
        pid_watch_(std::make_unique<PidWatch>(env.loop)) {
    const Params& p = env.check.params;
    if (int64_t port = ParamInt(p, "port", 0); port > 0) {
      Endpoint e;
      e.host = ParamString(p, "host", "127.0.0.1");
      e.port = static_cast<int>(port);
      e.timeout_ms = ParamInt(p, "timeout_ms", 1000);
      if (auto path = ParamString(p, "http_path"); !path.empty())
        e.url = EndpointUrl(e.host, e.port, path);
      endpoint_ = std::make_unique<EndpointProbe>(env.loop, env.http, e);
    }
  }

  Status Start(std::function<void()> wake) override {
    wake_ = std::move(wake);
    watch_ = std::make_unique<FsWatch>(env_.loop);
    Status s = watch_->StartForFile(pidfile_, [this] {
      // A new pid (a restart wrote it) is read at the next probe, which this asks for now.
      known_ = false;
      if (wake_) wake_();
    });
    if (!s.ok()) return Status::IOError(s.message() + " (polling only)");
    return Status::OK();
  }

  void Close(std::function<void()> closed) override {
    watch_.reset();
    pid_watch_.reset();
    endpoint_.reset();
    graces_.clear();
    closed();
  }

  void Probe(std::function<void(Observation)> done) override {
    if (known_) return Judge(done);
    auto id = std::make_shared<ProcessIdentity>();
    auto status = std::make_shared<Status>();
    auto fd = std::make_shared<int>(-1);
    std::string pidfile = pidfile_;
    QueueWork(
        env_.loop,
        [id, status, fd, pidfile] { *status = ReadPidfile(pidfile, id.get(), fd.get()); },
        [this, weak = weak_from_this(), id, status, fd, done] {
          if (weak.expired()) {
            if (*fd >= 0) ::close(*fd);
            return done(Observation::Unknown("check closed"));
          }
          Track(*status, *id, *fd);
          Judge(done);
        });
  }

 private:
  // Takes what the pidfile said as the process to watch (`pidfd`, when read is OK, is owned).
  void Track(const Status& read, const ProcessIdentity& id, int pidfd) {
    known_ = true;
    exited_at_ = 0;
    identity_ = id;
    why_not_ = read.ok() ? "" : read.message();
    if (!read.ok()) return;
    if (!pid_watch_) {
      ::close(pidfd);
      return;
    }
    Status s = pid_watch_->Start(pidfd, [this] {
      exited_at_ = WallMs();
      why_not_ = identity_.ToString() + " exited";
      if (wake_) wake_();
    });
    if (!s.ok()) why_not_ = s.message();
  }

  void Judge(std::function<void(Observation)> done) {
    if (!why_not_.empty()) {
      Observation o = Observation::Failing("not running: " + why_not_);
      o.began_at_ms = exited_at_;  // the exit itself, when the pidfd saw it
      o.gauges = {{"running", 0}};
      return done(o);
    }
    std::string running = "pid " + std::to_string(identity_.pid);
    if (!endpoint_) {
      Observation o = Observation::Ok("running: " + running);
      o.gauges = {{"running", 1}};
      return done(o);
    }
    std::string where = endpoint_->endpoint().Describe();
    endpoint_->Run([this, weak = weak_from_this(), running, where, done](EndpointAnswer a) {
      if (weak.expired()) return done(Observation::Unknown("check closed"));
      // A refused or reset port is often the first sign of an exit. The kernel closes an
      // exiting process's sockets before its pidfd reports the exit, so one not reported yet
      // gets kExitGraceMs to be, and an exit is not taken for a hang. A timeout has waited
      // long enough already.
      if (!a.ok && !a.timed_out && pid_watch_ && !pid_watch_->ExitedNow()) {
        AfterExitGrace([this, running, where, a, done] { Conclude(running, where, a, done); });
        return;
      }
      Conclude(running, where, a, done);
    });
  }

  // Runs `then` after kExitGraceMs. Each waiting probe has its own timer: the schedule's probe
  // and an incident's verify may wait at once, and each must get its answer (one shared timer
  // lost the first, and the check was never probed again).
  void AfterExitGrace(std::function<void()> then) {
    auto it = graces_.insert(graces_.end(), std::make_unique<Timer>(env_.loop));
    (*it)->Start(kExitGraceMs, [this, it, then] {
      std::function<void()> fn = then;  // erasing the timer ends this callback's captures
      graces_.erase(it);
      fn();
    });
  }

  void Conclude(const std::string& running, const std::string& where, const EndpointAnswer& a,
                const std::function<void(Observation)>& done) {
    if (!a.ok && why_not_.empty() && pid_watch_ && pid_watch_->ExitedNow()) {
      exited_at_ = WallMs();
      why_not_ = identity_.ToString() + " exited";
    }
    if (!a.ok && !why_not_.empty()) return Judge(done);  // exited (seen here or by the pidfd)
    Observation o = a.ok ? Observation::Ok("running: " + running + "; " + where + " " + a.what)
                         : Observation::Failing("not answering: " + running + " runs, but " +
                                                where + ": " + a.what);
    o.gauges = {{"running", 1}};
    done(o);
  }

  // How long a refused or reset port waits for the pidfd to report an exit (see Judge).
  static constexpr int64_t kExitGraceMs = 50;

  DetectorEnv env_;
  std::string pidfile_;
  std::unique_ptr<FsWatch> watch_;
  std::unique_ptr<PidWatch> pid_watch_;
  std::unique_ptr<EndpointProbe> endpoint_;
  std::list<std::unique_ptr<Timer>> graces_;  // probes waiting out kExitGraceMs
  std::function<void()> wake_;
  bool known_ = false;  // the pidfile has been read since it last changed
  ProcessIdentity identity_;
  std::string why_not_;  // set: not running, and why
  int64_t exited_at_ = 0;
};

}  // namespace

GUARDIAN_REGISTER_DETECTOR(
    process,
    DetectorFactory{
        "process",
        {
            {"pidfile", ParamType::kPath, true, "the file holding the process's pid"},
            {"start", ParamType::kCommand, true,
             "argv that starts the program (and writes the pidfile); run without a shell"},
            {"stop", ParamType::kCommand, false,
             "argv that stops it; run before `start` when the process still runs but fails"},
            {"host", ParamType::kString, false, "numeric address of its port (127.0.0.1)"},
            {"port", ParamType::kInt, false, "a port it must answer on"},
            {"http_path", ParamType::kString, false,
             "with `port`: GET this path, which must answer under 400 (else a TCP connect)"},
            {"timeout_ms", ParamType::kInt, false, "the port probe's timeout (default 1000)"},
            {"start_timeout_ms", ParamType::kInt, false,
             "how long the playbook waits for the restarted program to pass (default 10000)"},
        },
        [](const DetectorEnv& env) { return std::make_shared<ProcessDetector>(env); }});

}  // namespace guardian
