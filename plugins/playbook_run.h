#pragma once
// PlaybookRun: one incident's playbook in its own fresh sandbox. Each phase function
// (backup, remediate, verify, rollback) runs as a coroutine given `ctx`; host calls that wait
// yield it and it resumes from the loop. The phase ends with ok (its return value, if a string,
// is the step message) or an error (Lua error, budget, memory, deadline) as a Status. In a dry
// run (RunServices::dry_run) the host calls that act are recorded, not done: see recorded().
//
// Thread: loop thread only. Lifetime: destroy it only when no phase is running, or after
// Abort(); any host wait still in flight is cancelled or its result ignored.

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/config.h"
#include "daemon/status.h"
#include "daemon/timer.h"
#include "plugins/dry_run.h"
#include "plugins/host_api.h"
#include "plugins/playbook_library.h"
#include "plugins/sandbox.h"

namespace guardian {

class PlaybookRun {
 public:
  using PhaseDone = std::function<void(Status, std::string message)>;
  // Pushes the results of a finished wait onto the coroutine and returns how many. It runs
  // inside the resumed coroutine, so it may raise (and allocate past the memory cap safely).
  using Pusher = std::function<int(lua_State*)>;
  // Resumes the coroutine with results; safe to call after the run is gone (ignored).
  using Resume = std::function<void(Pusher)>;
  // Starts the wait; returns a function that cancels it (may be empty).
  using Starter = std::function<std::function<void()>(Resume)>;

  PlaybookRun(uv_loop_t* loop, std::shared_ptr<const PlaybookInfo> playbook, CheckConfig check,
              std::string check_state_dir, PlaybookLimits limits, RunServices services);
  ~PlaybookRun();

  // Creates the sandbox, installs the host API and the ctx table, loads the playbook.
  // `evidence` is what the detector saw when the incident opened (ctx.evidence).
  Status Start(int64_t incident_id, const std::string& evidence = "");
  bool HasPhase(const std::string& phase) const;
  // Runs one phase; `done` is called exactly once, never from inside this call.
  void RunPhase(const std::string& phase, int attempt, PhaseDone done);
  // Ends a running phase now: its `done` gets Status::Aborted(reason).
  void Abort(const std::string& reason);
  bool running() const { return static_cast<bool>(done_); }
  // The playbook as it was when this run started (a reload does not change a run under way).
  const PlaybookInfo& playbook() const { return *playbook_; }
  // Dry run only: what the phases would have done, in call order. Past kMaxRecorded calls
  // one last entry says recording stopped.
  const std::vector<DryRunAction>& recorded() const { return recorded_; }
  static constexpr size_t kMaxRecorded = 1000;

  // For host functions.
  static PlaybookRun* From(lua_State* L);
  int Await(lua_State* L, const char* what, Starter start);
  // Raises unless `L` is the running phase's coroutine and may yield (what Await requires).
  void CheckCanWait(lua_State* L, const char* what) const;
  // The gate of host functions that act. Outside a dry run it writes `call` with the
  // arguments in stack slots 1..nargs to the audit trail (RunServices::audit) and returns
  // false: act. In a dry run it records them under the current phase and returns true: the
  // caller answers what success answers and acts on nothing. Call it after checking the
  // arguments and the path policy, so those fail as in a real run.
  bool RecordAction(lua_State* L, const char* call, int nargs, std::string note = {});
  // Answers a call that would have waited, without waiting: yields like Await and resumes on
  // the next loop turn with `result`, so it can only happen where a real wait could.
  int AwaitNothing(lua_State* L, const char* what, Pusher result);
  bool dry_run() const { return services_.dry_run; }
  uv_loop_t* loop() const { return loop_; }
  const CheckConfig& check() const { return check_; }
  const std::string& check_state_dir() const { return check_state_dir_; }
  RunServices& services() { return services_; }
  // Resolves `path` for reading or writing; only paths under the check's declared roots pass.
  // With `follow_final` a symlink in the last component is followed (its target must be
  // inside the roots); without, the link itself is what is checked and acted on.
  Status ResolvePath(const std::string& path, bool write, std::string* resolved,
                     bool follow_final = true) const;

 private:
  void Continue(int nargs);
  static int AwaitDone(lua_State* L, int status, lua_KContext ctx);
  void Finish(Status s, std::string message);

  uv_loop_t* loop_;
  std::shared_ptr<const PlaybookInfo> playbook_;
  CheckConfig check_;
  std::string check_state_dir_;
  PlaybookLimits limits_;
  RunServices services_;
  std::unique_ptr<Sandbox> sandbox_;
  int playbook_ref_ = LUA_NOREF;  // the returned table
  int ctx_ref_ = LUA_NOREF;
  int thread_ref_ = LUA_NOREF;  // the running phase's coroutine, kept alive in the registry
  lua_State* thread_ = nullptr;
  std::string phase_;
  PhaseDone done_;
  Timer deadline_;
  Timer defer_;  // delivers results on a later loop turn
  std::function<void()> cancel_wait_;
  Pusher pending_push_;    // results of the finished wait, pushed when the coroutine resumes
  uint64_t wait_seq_ = 0;  // which wait a Resume belongs to
  std::shared_ptr<PlaybookRun*> self_;  // Resume holds a weak_ptr to this
  std::vector<std::string> write_roots_;
  std::vector<std::string> read_roots_;
  std::vector<DryRunAction> recorded_;
  std::map<std::string, std::string> dry_values_;  // guardian.state values set in a dry run
};

}  // namespace guardian
