#pragma once
// Service: one process Guardian supervises (`services:` in guardian.yaml). It is spawned as an
// argv vector (never through a shell) in a session and process group of its own, with stdout
// and stderr appended to its output file, and known by its ProcessIdentity (pid AND start time),
// which is also written to STATE_DIR/services/NAME.json. A guardiand that restarts finds an
// instance that is still that very process and adopts it (watching a pidfd) instead of
// starting a second one; a pidfile naming a reused pid is not trusted.
//
// Ready means: the service's status file names this pid with state "ready" (when it has one),
// else its port accepts a connection (when it has one), else it is running. An exit nobody
// asked for restarts it after RestartPolicy's backoff; the backoff resets only once it has been
// ready for healthy_after_ms and is re-verified ready then. Slowness is never a reason to kill
// it here: slow boots and overload are for detectors and playbooks to judge.
//
// Thread: loop thread only. Close() before destroying; its callback runs once all handles are
// closed.

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "daemon/clock.h"
#include "daemon/config.h"
#include "daemon/fs_watch.h"
#include "daemon/proc_identity.h"
#include "daemon/restart_policy.h"
#include "daemon/status.h"
#include "daemon/timer.h"

namespace guardian {

enum class ServiceState { kStopped, kStarting, kReady, kBackoff, kStopping };
const char* ServiceStateName(ServiceState s);

struct ServiceExit {
  int64_t code = -1;  // -1 when unknown (an adopted process is not our child)
  int signal = 0;
  int64_t at = 0;      // wall ms
  bool asked = false;  // stopped by Guardian, not a failure
  std::string ToString() const;
};

// A lifecycle event, for the audit log, the supervisor and detectors. kind: started, adopted,
// stale_record, ready, not_ready, exited (unasked), stopping, stopped, backoff_reset, detached.
struct ServiceEvent {
  std::string kind;
  std::string detail;               // a sentence for the log
  pid_t pid = 0;                    // the process it concerns
  std::optional<ServiceExit> exit;  // exited and stopped
};

// What the API, status and playbooks see of a service.
struct ServiceSnapshot {
  std::string name;
  ServiceState state = ServiceState::kStopped;
  ProcessIdentity process;        // pid 0 when none runs
  bool adopted = false;           // found running at start, not spawned by this guardiand
  int64_t started_at = 0;         // wall ms of the current process's start; 0 when none
  int64_t ready_at = 0;           // wall ms it became ready; 0 when not ready
  std::string exe;                // the program of the last process started or adopted
  int port = 0;                   // from the port registry; 0 when it has none
  int starts = 0;                 // processes started by this guardiand
  int failures = 0;               // consecutive unasked exits since it was last verified healthy
  int64_t next_start_in_ms = -1;  // in backoff: when it starts again
  std::optional<ServiceExit> last_exit;
};

// What STATE_DIR/services/NAME.json records of the process a guardiand started.
struct RecordedProcess {
  ProcessIdentity process;
  int64_t started_at = 0;  // wall ms
  std::string boot_id;     // the boot it was recorded in ("" in records from before it was kept)
  // Not read from the record but found by FindUnrecordedServices().
  bool found_by_environment = false;
};
// STATE_DIR/services/NAME.json.
std::string IdentityFile(const std::string& state_dir, const std::string& name);
// Reads a record (blocking: call on the pool). NotFound when there is none.
Status LoadRecordedProcess(const std::string& path, RecordedProcess* out);
// Writes a record (atomically, making its folder first). Blocking: call on the pool.
Status SaveRecordedProcess(const std::string& path, const RecordedProcess& r);
// Whether `r` names a process that still runs, in this boot, with the start time recorded.
// Blocking (reads /proc): call on the pool.
bool RecordIsLive(const RecordedProcess& r);

// Every service process starts with these in its environment, and its helpers keep them.
inline constexpr const char* kServiceEnv = "GUARDIAN_SERVICE";     // the service's name
inline constexpr const char* kStateDirEnv = "GUARDIAN_STATE_DIR";  // the starting guardiand's
// For the services in `names`, the process a previous guardiand with `state_dir` started but
// did not record (it was killed between the spawn and the record's write): the oldest live
// process-group leader whose environment names the service and `state_dir`, whose parent is
// not another such process (a helper is younger than its service, and its child or orphan)
// and is not `self` (what this guardiand runs already). Walks /proc: call on the pool.
std::map<std::string, RecordedProcess> FindUnrecordedServices(const std::string& state_dir,
                                                              const std::set<std::string>& names,
                                                              pid_t self);

class Service {
 public:
  using EventFn = std::function<void(const Service&, const ServiceEvent&)>;

  Service(uv_loop_t* loop, ServiceConfig config, std::string state_dir, const Clock* clock,
          EventFn on_event);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Adopts `recorded` (what a previous guardiand started) if it is still that very process,
  // else spawns a new one.
  void Start(const RecordedProcess* recorded = nullptr);
  // TERM to the process group, KILL after stop_grace_ms; `done` once it has exited. It stays
  // stopped until Start() or Restart().
  void Stop(const std::string& why, std::function<void()> done);
  // Stops it if it runs, then starts it at once: a deliberate restart skips the backoff.
  // `done` gets ok once the new process runs (not yet ready), or why it could not start.
  void Restart(const std::string& why, std::function<void(Status)> done);
  // `done(true)` once ready, `done(false)` after timeout_ms or when it exits first.
  void WaitReady(int64_t timeout_ms, std::function<void(bool)> done);
  // For guardiand's shutdown: stops it when stop_on_exit, else leaves it running for the next
  // guardiand to adopt. `closed` runs once every handle is closed.
  void Close(std::function<void()> closed);
  // Sends `sig` to the service's main process only if it is still the process we started.
  Status Signal(int sig);

  const ServiceConfig& config() const { return config_; }
  const std::string& name() const { return config_.name; }
  ServiceSnapshot Snapshot() const;
  ServiceState state() const { return state_; }
  // Started but not ready yet, including the preparation before the process exists.
  bool coming_up() const { return state_ == ServiceState::kStarting || preparing_; }
  void set_port(int port) { port_ = port; }
  int port() const { return port_; }

 private:
  struct Proc;  // the uv_process_t or the pidfd poll of the running process

  // Prepares the output file (and cgroup) on the pool, then SpawnWith() on the loop.
  void Spawn();
  void SpawnWith(int out_fd, bool join_cgroup);
  bool TryAdopt(const RecordedProcess& recorded);
  void OnExit(int64_t code, int sig);
  void CheckReady();
  void OnStatusRead(bool ready);
  void MarkReady();
  void MarkNotReady();
  void VerifyHealthy();
  void KillGroup(int sig);
  void FinishStop();
  void SetState(ServiceState s);
  void Emit(const std::string& kind, const std::string& detail, pid_t pid = -1,
            std::optional<ServiceExit> exit = std::nullopt);
  void NotifyReadyWaiters(bool ready);
  std::string identity_file() const;

  uv_loop_t* loop_;
  ServiceConfig config_;
  std::string state_dir_;
  const Clock* clock_;
  EventFn on_event_;
  RestartPolicy policy_;
  ServiceState state_ = ServiceState::kStopped;
  Proc* proc_ = nullptr;
  ProcessIdentity identity_;
  std::string last_exe_;
  bool adopted_ = false;
  int64_t started_at_ = 0;
  int64_t ready_at_ = 0;
  int port_ = 0;
  int starts_ = 0;
  int64_t next_start_mono_ = -1;
  std::optional<ServiceExit> last_exit_;
  bool stop_asked_ = false;
  bool start_after_stop_ = false;
  bool closing_ = false;
  Timer restart_timer_;
  Timer kill_timer_;
  Timer ready_poll_;
  Timer healthy_timer_;
  std::unique_ptr<FsWatch> status_watch_;
  std::vector<std::function<void()>> stop_waiters_;
  std::vector<std::function<void(Status)>> restart_waiters_;
  struct ReadyWaiter {
    std::function<void(bool)> done;
    std::shared_ptr<Timer> timeout;
  };
  std::vector<ReadyWaiter> ready_waiters_;
  std::function<void()> closed_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  bool preparing_ = false;         // Spawn's pool work is under way
  uint64_t spawn_generation_ = 0;  // a Stop during preparation makes its spawn stale
  bool read_in_flight_ = false;
  bool read_again_ = false;
};

}  // namespace guardian
