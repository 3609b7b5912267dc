#include "daemon/service.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "daemon/cgroup.h"
#include "daemon/crash_point.h"
#include "daemon/file_util.h"
#include "daemon/spawn_env.h"
#include "daemon/work.h"

namespace guardian {
namespace fs = std::filesystem;

const char* ServiceStateName(ServiceState s) {
  switch (s) {
    case ServiceState::kStopped:
      return "stopped";
    case ServiceState::kStarting:
      return "starting";
    case ServiceState::kReady:
      return "ready";
    case ServiceState::kBackoff:
      return "backoff";
    case ServiceState::kStopping:
      return "stopping";
  }
  return "unknown";
}

std::string ServiceExit::ToString() const {
  std::string s = signal != 0 ? "killed by signal " + std::to_string(signal)
                  : code >= 0 ? "exit code " + std::to_string(code)
                              : "exited (not our child: code unknown)";
  return s;
}

// The running process: our child (its uv_process_t reaps it and reports the exit) or an adopted
// process (a pidfd, readable once it exits). Freed in its handle's close callback; `owner` is
// cleared when the Service stops caring, so a late callback touches nothing.
struct Service::Proc {
  uv_process_t process{};
  uv_poll_t poll{};
  int pidfd = -1;
  bool spawned = false;
  bool exited = false;
  Service* owner = nullptr;

  uv_handle_t* handle() {
    return spawned ? reinterpret_cast<uv_handle_t*>(&process)
                   : reinterpret_cast<uv_handle_t*>(&poll);
  }
  void Close() {
    if (uv_is_closing(handle())) return;
    uv_close(handle(), [](uv_handle_t* h) {
      auto* p = static_cast<Proc*>(h->data);
      if (p->pidfd >= 0) ::close(p->pidfd);
      delete p;
    });
  }
};

namespace {

int PidfdOpen(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }

// One TCP connect to 127.0.0.1:port on the loop: `done(true)` when it is accepted.
struct TcpProbe {
  uv_tcp_t tcp;
  uv_connect_t req;
  std::function<void(bool)> done;

  static void Finish(TcpProbe* p, bool ok) {
    auto fn = std::move(p->done);
    uv_close(reinterpret_cast<uv_handle_t*>(&p->tcp),
             [](uv_handle_t* h) { delete static_cast<TcpProbe*>(h->data); });
    fn(ok);
  }
};

void ProbeTcp(uv_loop_t* loop, int port, std::function<void(bool)> done) {
  auto* p = new TcpProbe{};
  p->done = std::move(done);
  p->tcp.data = p;
  p->req.data = p;
  uv_tcp_init(loop, &p->tcp);
  sockaddr_in addr{};
  uv_ip4_addr("127.0.0.1", port, &addr);
  int rc = uv_tcp_connect(&p->req, &p->tcp, reinterpret_cast<const sockaddr*>(&addr),
                          [](uv_connect_t* req, int status) {
                            TcpProbe::Finish(static_cast<TcpProbe*>(req->data), status == 0);
                          });
  if (rc != 0) TcpProbe::Finish(p, false);
}

// Reads the service's status file: ready when it names `pid` with state "ready". `mine` says
// whether the file speaks for `pid` at all (another instance may have written it).
void ReadStatusFile(const std::string& path, pid_t pid, bool* ready, bool* mine) {
  *ready = *mine = false;
  nlohmann::json doc;
  if (!ReadJsonObject(path, 1 << 20, &doc).ok()) return;
  auto p = doc.find("pid");
  if (p == doc.end() || !p->is_number_integer() || p->get<int64_t>() != pid) return;
  *mine = true;
  auto st = doc.find("state");
  *ready = st != doc.end() && st->is_string() && st->get<std::string>() == "ready";
}

}  // namespace

Service::Service(uv_loop_t* loop, ServiceConfig config, std::string state_dir, const Clock* clock,
                 EventFn on_event)
    : loop_(loop),
      config_(std::move(config)),
      state_dir_(std::move(state_dir)),
      clock_(clock),
      on_event_(std::move(on_event)),
      policy_(config_.backoff_base_ms, config_.backoff_max_ms, config_.healthy_after_ms),
      restart_timer_(loop),
      kill_timer_(loop),
      ready_poll_(loop),
      healthy_timer_(loop) {}

Service::~Service() {
  *alive_ = false;
  if (proc_) {
    proc_->owner = nullptr;
    proc_->Close();
  }
}

std::string Service::identity_file() const { return IdentityFile(state_dir_, config_.name); }

std::string IdentityFile(const std::string& state_dir, const std::string& name) {
  return state_dir + "/services/" + name + ".json";
}

Status LoadRecordedProcess(const std::string& path, RecordedProcess* out) {
  nlohmann::json doc;
  Status s = ReadJsonObject(path, 64 * 1024, &doc);
  if (s.code() == Status::Code::kNotFound) return s;
  if (!s.ok() || !doc["pid"].is_number_integer() || !doc["start_ticks"].is_number_unsigned())
    return Status::Corruption(path + ": not a process record");
  out->process.pid = doc["pid"].get<pid_t>();
  out->process.start_ticks = doc["start_ticks"].get<uint64_t>();
  out->process.exe = doc.value("exe", std::string());
  out->started_at = doc.value("started_at", int64_t{0});
  out->boot_id = doc.value("boot_id", std::string());
  return Status::OK();
}

Status SaveRecordedProcess(const std::string& path, const RecordedProcess& r) {
  nlohmann::json rec = {{"pid", r.process.pid},
                        {"start_ticks", r.process.start_ticks},
                        {"exe", r.process.exe},
                        {"started_at", r.started_at},
                        {"boot_id", r.boot_id}};
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  return WriteFileAtomic(path, rec.dump() + "\n", 0640);
}

bool RecordIsLive(const RecordedProcess& r) {
  if (!r.boot_id.empty() && r.boot_id != BootId()) return false;
  ProcessIdentity now;
  return ReadProcessIdentity(r.process.pid, &now).ok() && now.SameAs(r.process);
}

namespace {

// "/var/lib/guardian/" and "/var/lib/guardian" name one folder.
std::string WithoutTrailingSlash(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

}  // namespace

std::map<std::string, RecordedProcess> FindUnrecordedServices(const std::string& state_dir,
                                                              const std::set<std::string>& names,
                                                              pid_t self) {
  std::map<std::string, RecordedProcess> found;
  if (names.empty()) return found;
  const std::string dir = WithoutTrailingSlash(state_dir);
  struct Match {
    ProcStat stat;
    std::string service;
  };
  std::vector<Match> matches;
  for (const ProcStat& st : ListProcesses()) {
    auto env = ReadEnvVars(st.pid, {kServiceEnv, kStateDirEnv});
    auto svc = env.find(kServiceEnv);
    auto owner = env.find(kStateDirEnv);
    if (svc == env.end() || owner == env.end() || !names.count(svc->second) ||
        WithoutTrailingSlash(owner->second) != dir)
      continue;
    matches.push_back(Match{st, svc->second});
  }
  std::map<pid_t, const Match*> by_pid;
  for (const auto& m : matches) by_pid[m.stat.pid] = &m;
  for (const auto& m : matches) {
    if (m.stat.pgrp != m.stat.pid) continue;  // services start in a process group of their own
    if (m.stat.ppid == self) continue;
    auto parent = by_pid.find(m.stat.ppid);
    if (parent != by_pid.end() && parent->second->service == m.service) continue;
    auto have = found.find(m.service);
    if (have != found.end() && have->second.process.start_ticks <= m.stat.start_ticks) continue;
    ProcessIdentity id;
    if (!ReadProcessIdentity(m.stat.pid, &id).ok() || id.start_ticks != m.stat.start_ticks)
      continue;  // exited since it was listed
    RecordedProcess r;
    r.process = id;
    r.started_at = StartTicksToWallMs(id.start_ticks);
    r.boot_id = BootId();
    r.found_by_environment = true;
    found[m.service] = r;
  }
  return found;
}

void Service::SetState(ServiceState s) { state_ = s; }

void Service::Emit(const std::string& kind, const std::string& detail, pid_t pid,
                   std::optional<ServiceExit> exit) {
  if (!on_event_) return;
  on_event_(*this, ServiceEvent{kind, detail, pid < 0 ? identity_.pid : pid, std::move(exit)});
}

ServiceSnapshot Service::Snapshot() const {
  ServiceSnapshot s;
  s.name = config_.name;
  s.state = state_;
  if (proc_) s.process = identity_;
  s.exe = last_exe_;
  s.adopted = adopted_;
  s.started_at = proc_ ? started_at_ : 0;
  s.ready_at = state_ == ServiceState::kReady ? ready_at_ : 0;
  s.port = port_;
  s.starts = starts_;
  s.failures = policy_.failures();
  if (state_ == ServiceState::kBackoff && next_start_mono_ >= 0)
    s.next_start_in_ms = std::max<int64_t>(0, next_start_mono_ - clock_->MonoMs());
  s.last_exit = last_exit_;
  return s;
}

void Service::Start(const RecordedProcess* recorded) {
  if (closing_ || proc_ || preparing_) return;
  stop_asked_ = false;
  if (recorded && TryAdopt(*recorded)) return;
  Spawn();
}

bool Service::TryAdopt(const RecordedProcess& recorded) {
  if (recorded.process.pid <= 0) return false;
  if (!recorded.boot_id.empty() && recorded.boot_id != BootId()) {
    Emit("stale_record",
         "the record names " + recorded.process.ToString() + " in an earlier boot (" +
             recorded.boot_id + "); not adopted",
         0);
    return false;
  }
  // The pidfd first, then the check: a pid reused after the check could not be the one held.
  int pidfd = PidfdOpen(recorded.process.pid);
  if (pidfd < 0) return false;
  ProcessIdentity now;
  if (!ReadProcessIdentity(recorded.process.pid, &now).ok() || !now.SameAs(recorded.process)) {
    ::close(pidfd);
    if (now.pid != 0)
      Emit("stale_record", "the record names " + recorded.process.ToString() +
                               ", but that pid is now " + now.ToString() + "; not adopted");
    return false;
  }
  auto* p = new Proc;
  p->owner = this;
  p->pidfd = pidfd;
  p->poll.data = p;
  uv_poll_init(loop_, &p->poll, pidfd);
  uv_poll_start(&p->poll, UV_READABLE, [](uv_poll_t* h, int, int) {
    auto* p = static_cast<Proc*>(h->data);
    uv_poll_stop(h);
    p->exited = true;
    Service* owner = p->owner;
    p->Close();
    if (owner) owner->OnExit(-1, 0);
  });
  proc_ = p;
  identity_ = now;
  last_exe_ = now.exe;
  adopted_ = true;
  started_at_ = recorded.started_at;
  SetState(ServiceState::kStarting);
  Emit("adopted", "found " + now.ToString() +
                      (recorded.found_by_environment
                           ? " still running, by its environment (no live record); adopted it"
                           : " still running; adopted it"));
  CheckReady();
  return true;
}

void Service::Spawn() {
  if (closing_ || proc_ || preparing_) return;
  restart_timer_.Stop();
  next_start_mono_ = -1;
  // The folders and the output file are disk work: done on the pool, the spawn on the loop.
  preparing_ = true;
  uint64_t generation = ++spawn_generation_;
  auto out = std::make_shared<int>(-1);
  auto cgroup_problem = std::make_shared<Status>();
  std::string output = config_.output;
  std::string status_dir =
      config_.status_file.empty() ? "" : fs::path(config_.status_file).parent_path().string();
  std::string cgroup = config_.cgroup;
  int64_t limit_mb = config_.memory_limit_mb;
  std::weak_ptr<bool> alive = alive_;
  QueueWork(
      loop_,
      [out, output, status_dir, cgroup, limit_mb, cgroup_problem] {
        std::error_code ec;
        fs::create_directories(fs::path(output).parent_path(), ec);
        if (!status_dir.empty()) fs::create_directories(status_dir, ec);
        *out = ::open(output.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (!cgroup.empty()) *cgroup_problem = PrepareMemoryCgroup(cgroup, limit_mb);
      },
      [this, alive, out, generation, cgroup_problem] {
        if (alive.expired() || generation != spawn_generation_ || closing_ || proc_) {
          if (*out >= 0) ::close(*out);  // a stop came first, or the service is gone
          if (!alive.expired() && generation == spawn_generation_) preparing_ = false;
          return;
        }
        preparing_ = false;
        // A cgroup that cannot be had is reported, not fatal: the service runs unconfined.
        if (!cgroup_problem->ok())
          Emit("cgroup_failed", "runs outside its cgroup: " + cgroup_problem->message(), 0);
        SpawnWith(*out, cgroup_problem->ok());
      });
}

void Service::SpawnWith(int out, bool join_cgroup) {
  std::map<std::string, std::string> extra = config_.env;
  extra[kServiceEnv] = config_.name;
  // With the name, it tells a successor which process to adopt if the record is never written.
  extra[kStateDirEnv] = state_dir_;
  EnvBlock env(SpawnEnvironment(extra));
  std::vector<std::string> args = config_.argv;
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  for (int i = 1; i <= 2; ++i) {
    stdio[i].flags = out >= 0 ? UV_INHERIT_FD : UV_IGNORE;
    stdio[i].data.fd = out;
  }
  uv_process_options_t o{};
  o.file = argv[0];
  o.args = argv.data();
  o.env = env.get();
  o.cwd = config_.cwd.c_str();
  o.stdio = stdio;
  o.stdio_count = 3;
  // Its own session and process group: stopping it reaches its children too.
  o.flags = UV_PROCESS_DETACHED;
  ApplyRunAs(config_.run_as, &o);
  o.exit_cb = [](uv_process_t* h, int64_t code, int sig) {
    auto* p = static_cast<Proc*>(h->data);
    p->exited = true;
    Service* owner = p->owner;
    p->Close();
    if (owner) owner->OnExit(code, sig);
  };

  auto* p = new Proc;
  p->spawned = true;
  p->owner = this;
  p->process.data = p;
  int rc = uv_spawn(loop_, &p->process, &o);
  if (out >= 0) ::close(out);
  ++starts_;
  if (rc != 0) {
    p->owner = nullptr;
    p->Close();  // uv_spawn initialised the handle even on failure
    std::string why = "cannot start '" + config_.argv[0] + "': " + uv_strerror(rc);
    last_exit_ = ServiceExit{127, 0, clock_->WallMs(), false};
    int64_t delay = policy_.OnFailure();
    Emit("exited", why + "; next try in " + std::to_string(delay) + " ms", 0, last_exit_);
    for (auto& w : std::exchange(restart_waiters_, {})) w(Status::IOError(why));
    SetState(ServiceState::kBackoff);
    next_start_mono_ = clock_->MonoMs() + delay;
    restart_timer_.Start(delay, [this] { Spawn(); });
    return;
  }
  proc_ = p;
  adopted_ = false;
  started_at_ = clock_->WallMs();
  // uv_spawn returns after the exec succeeded, so /proc shows the new program.
  identity_ = ProcessIdentity{};
  if (!ReadProcessIdentity(p->process.pid, &identity_).ok()) identity_.pid = p->process.pid;
  if (!identity_.exe.empty()) last_exe_ = identity_.exe;
  SetState(ServiceState::kStarting);
  Emit("started", "started " + identity_.ToString());
  CrashPoint("service", "spawned");
  std::string path = identity_file();
  RecordedProcess record;
  record.process = identity_;
  record.started_at = started_at_;
  record.boot_id = BootId();
  // Into its memory cgroup at once (uv_spawn has no hook before exec, so the first moments of
  // its life are charged to guardiand's cgroup).
  std::string cgroup = join_cgroup ? config_.cgroup : "";
  pid_t pid = identity_.pid;
  auto joined = std::make_shared<Status>();
  std::weak_ptr<bool> alive = alive_;
  QueueWork(
      loop_,
      [path, record, cgroup, pid, joined] {
        SaveRecordedProcess(path, record);
        if (!cgroup.empty()) *joined = JoinCgroup(cgroup, pid);
      },
      [this, alive, joined, pid] {
        if (!alive.expired() && !joined->ok())
          Emit("cgroup_failed", "runs outside its cgroup: " + joined->message(), pid);
      });
  for (auto& w : std::exchange(restart_waiters_, {})) w(Status::OK());

  if (!config_.status_file.empty() && !status_watch_) {
    status_watch_ = std::make_unique<FsWatch>(loop_);
    Status s = status_watch_->StartForFile(config_.status_file, [this] { CheckReady(); });
    if (!s.ok()) status_watch_.reset();  // the poll below still covers it
  }
  CheckReady();
}

void Service::CheckReady() {
  if (!proc_ || state_ == ServiceState::kStopping) return;
  if (read_in_flight_) {
    read_again_ = true;
    return;
  }
  pid_t pid = identity_.pid;
  std::weak_ptr<bool> alive = alive_;
  if (!config_.status_file.empty()) {
    read_in_flight_ = true;
    auto ready = std::make_shared<bool>(false);
    auto mine = std::make_shared<bool>(false);
    std::string path = config_.status_file;
    QueueWork(
        loop_, [path, pid, ready, mine] { ReadStatusFile(path, pid, ready.get(), mine.get()); },
        [this, alive, ready, mine, pid] {
          if (alive.expired()) return;
          read_in_flight_ = false;
          // A file written by another process says nothing about ours.
          if (proc_ && identity_.pid == pid && (*mine || state_ != ServiceState::kReady))
            OnStatusRead(*ready);
          if (std::exchange(read_again_, false)) CheckReady();
        });
  } else if (port_ > 0) {
    read_in_flight_ = true;
    ProbeTcp(loop_, port_, [this, alive, pid](bool ok) {
      if (alive.expired()) return;
      read_in_flight_ = false;
      if (proc_ && identity_.pid == pid) OnStatusRead(ok);
      if (std::exchange(read_again_, false)) CheckReady();
    });
  } else {
    OnStatusRead(true);
  }
  // Inotify is the fast path; this poll covers a missed event or a port with no event at all.
  if (state_ == ServiceState::kStarting && !ready_poll_.active())
    ready_poll_.Start(config_.status_file.empty() ? 100 : 250, [this] { CheckReady(); });
}

void Service::OnStatusRead(bool ready) {
  if (ready) {
    if (state_ == ServiceState::kStarting) MarkReady();
    int64_t healthy_at = policy_.HealthyAt();
    if (state_ == ServiceState::kReady && healthy_at >= 0) {
      int64_t now = clock_->MonoMs();
      int failures = policy_.failures();
      if (now < healthy_at) {
        // Early (the loop's timer clock lags the one the period started on): look again then.
        if (!healthy_timer_.active())
          healthy_timer_.Start(healthy_at - now + 1, [this] { CheckReady(); });
      } else if (policy_.ConfirmHealthy(now)) {
        Emit("backoff_reset", "ready for " + std::to_string(config_.healthy_after_ms) +
                                  " ms and verified; restart backoff reset after " +
                                  std::to_string(failures) + " failures");
      }
    }
  } else if (state_ == ServiceState::kReady) {
    MarkNotReady();
  }
}

void Service::MarkReady() {
  SetState(ServiceState::kReady);
  ready_poll_.Stop();
  ready_at_ = clock_->WallMs();
  policy_.OnReady(clock_->MonoMs());
  Emit("ready", identity_.ToString() + " is ready " + std::to_string(ready_at_ - started_at_) +
                    " ms after its start");
  NotifyReadyWaiters(true);
  // Re-verify at the end of the healthy period before forgiving earlier failures.
  healthy_timer_.Start(config_.healthy_after_ms, [this] { CheckReady(); });
}

void Service::MarkNotReady() {
  SetState(ServiceState::kStarting);
  policy_.OnNotReady();
  healthy_timer_.Stop();
  Emit("not_ready", identity_.ToString() + " no longer reports ready");
  ready_poll_.Start(250, [this] { CheckReady(); });
}

void Service::NotifyReadyWaiters(bool ready) {
  for (auto& w : std::exchange(ready_waiters_, {})) {
    w.timeout->Stop();
    w.done(ready);
  }
}

void Service::WaitReady(int64_t timeout_ms, std::function<void(bool)> done) {
  if (state_ == ServiceState::kReady) return done(true);
  auto timer = std::make_shared<Timer>(loop_);
  ready_waiters_.push_back({std::move(done), timer});
  Timer* raw = timer.get();
  raw->Start(timeout_ms, [this, raw] {
    for (auto it = ready_waiters_.begin(); it != ready_waiters_.end(); ++it) {
      if (it->timeout.get() == raw) {
        auto fn = std::move(it->done);
        auto keep = it->timeout;  // the Timer must outlive its own callback
        ready_waiters_.erase(it);
        fn(false);
        return;
      }
    }
  });
}

void Service::OnExit(int64_t code, int sig) {
  proc_ = nullptr;
  kill_timer_.Stop();
  ready_poll_.Stop();
  healthy_timer_.Stop();
  // Whatever ended it (asked for or not), its healthy period ends with it: the next process
  // earns its own before earlier failures are forgiven.
  policy_.OnNotReady();
  ServiceExit exit{adopted_ ? -1 : code, sig, clock_->WallMs(), stop_asked_};
  last_exit_ = exit;
  ProcessIdentity was = identity_;
  identity_ = ProcessIdentity{};
  ready_at_ = 0;
  NotifyReadyWaiters(false);
  if (stop_asked_ || closing_) {
    Emit("stopped", was.ToString() + " stopped: " + exit.ToString(), was.pid, exit);
    FinishStop();
    return;
  }
  int64_t delay = policy_.OnFailure();
  Emit("exited",
       was.ToString() + " exited unasked (" + exit.ToString() + "); restart " +
           std::to_string(policy_.failures()) + " in " + std::to_string(delay) + " ms",
       was.pid, exit);
  SetState(ServiceState::kBackoff);
  next_start_mono_ = clock_->MonoMs() + delay;
  restart_timer_.Start(delay, [this] { Spawn(); });
}

void Service::KillGroup(int sig) {
  if (!proc_) return;
  pid_t pid = identity_.pid;
  if (proc_->spawned) {
    // Our child, not reaped yet (its exit callback has not run): the pid and its process group
    // id cannot have been handed to anyone else.
    ::kill(-pid, sig);
    ::kill(pid, sig);  // in case it left its group
  } else if (proc_->pidfd >= 0) {
    // Adopted: the pidfd pins the very process that was verified. Its group is signalled only
    // after the pidfd shows the leader still alive (signal 0), and before the leader is sent
    // `sig`: signalled first, it could exit and be reaped (not by us) and free its pid as a
    // group id for a stranger to take.
    if (::syscall(SYS_pidfd_send_signal, proc_->pidfd, 0, nullptr, 0) == 0) ::kill(-pid, sig);
    ::syscall(SYS_pidfd_send_signal, proc_->pidfd, sig, nullptr, 0);
  }
}

void Service::Stop(const std::string& why, std::function<void()> done) {
  restart_timer_.Stop();
  next_start_mono_ = -1;
  if (preparing_) {
    ++spawn_generation_;  // the spawn being prepared will not happen
    preparing_ = false;
  }
  if (done) stop_waiters_.push_back(std::move(done));
  if (!proc_) {
    SetState(ServiceState::kStopped);
    FinishStop();
    return;
  }
  if (state_ == ServiceState::kStopping) return;
  stop_asked_ = true;
  SetState(ServiceState::kStopping);
  Emit("stopping", "stopping " + identity_.ToString() + ": " + why);
  KillGroup(SIGTERM);
  kill_timer_.Start(config_.stop_grace_ms, [this] {
    Emit("stopping", identity_.ToString() + " still running after " +
                         std::to_string(config_.stop_grace_ms) + " ms; SIGKILL");
    KillGroup(SIGKILL);
  });
}

void Service::FinishStop() {
  SetState(ServiceState::kStopped);
  stop_asked_ = false;
  for (auto& w : std::exchange(stop_waiters_, {})) w();
  if (closing_) {
    status_watch_.reset();
    if (auto fn = std::exchange(closed_, nullptr)) fn();
    return;
  }
  if (std::exchange(start_after_stop_, false)) Spawn();
}

void Service::Restart(const std::string& why, std::function<void(Status)> done) {
  if (closing_) {
    if (done) done(Status::Aborted("guardiand is stopping"));
    return;
  }
  if (done) restart_waiters_.push_back(std::move(done));
  if (!proc_) {
    Spawn();
    return;
  }
  start_after_stop_ = true;
  Stop(why, nullptr);
}

Status Service::Signal(int sig) {
  if (!proc_ || proc_->exited) return Status::NotFound(config_.name + " is not running");
  if (proc_->spawned) {
    // Unreaped child: the pid is still ours.
    if (::kill(identity_.pid, sig) != 0)
      return Status::IOError(std::string("kill: ") + std::strerror(errno));
    return Status::OK();
  }
  if (::syscall(SYS_pidfd_send_signal, proc_->pidfd, sig, nullptr, 0) != 0)
    return Status::IOError(std::string("pidfd_send_signal: ") + std::strerror(errno));
  return Status::OK();
}

void Service::Close(std::function<void()> closed) {
  closing_ = true;
  restart_timer_.Stop();
  ready_poll_.Stop();
  healthy_timer_.Stop();
  for (auto& w : std::exchange(restart_waiters_, {})) w(Status::Aborted("guardiand is stopping"));
  NotifyReadyWaiters(false);
  if (proc_ && config_.stop_on_exit) {
    closed_ = std::move(closed);
    Stop("guardiand is stopping", nullptr);
    return;
  }
  if (proc_) {
    // Left running on purpose; the identity file lets the next guardiand adopt it.
    Emit("detached", identity_.ToString() + " left running (stop_on_exit: false)");
    proc_->owner = nullptr;
    proc_->Close();
    proc_ = nullptr;
  }
  status_watch_.reset();
  closed();
}

}  // namespace guardian
