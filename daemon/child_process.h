#pragma once
// ChildProcess: runs one program as an argv vector (never through a shell), captures its
// stdout and stderr up to a cap, and reports how it ended. It runs in a process group of its
// own; a timeout (or Kill) sends SIGTERM to that group, then SIGKILL after a grace period, so
// helpers it started end with it. Signals go only while our child is not yet reaped, so neither
// its pid nor its group id can have been reused; a helper that outlives its parent's exit by
// ignoring SIGTERM is not reached. A program that ends by itself leaves what it started
// running (a start script's daemon).
//
// Lifetime: Start() once; `done` is called exactly once on the loop thread after the process
// has exited and every handle is closed. Kill() may be called any time before that. The object
// deletes itself after `done` returns (create it with new and do not delete it).

#include <uv.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "daemon/run_as.h"
#include "daemon/status.h"

namespace guardian {

struct ChildResult {
  Status status;  // not ok when the program could not be started or timed out
  int64_t exit_code = -1;
  int term_signal = 0;
  std::string out;
  std::string err;
  bool timed_out = false;
};

struct ChildOptions {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no slash
  std::string file;               // the file to execute; empty = argv[0] (guardian.proc.run
                                  // runs the very file its program policy checked)
  std::string cwd;                // empty = inherit
  int64_t timeout_ms = 0;         // 0 = none
  int64_t kill_grace_ms = 2000;
  size_t output_cap = 64 * 1024;  // per stream; the rest is dropped
  // The program never sees guardiand's environment: a minimal one (daemon/spawn_env.h) plus
  // these entries.
  std::map<std::string, std::string> env;
  RunAs run_as;  // who it runs as; nothing set: guardiand's own user and group
};

class ChildProcess {
 public:
  static void Run(uv_loop_t* loop, ChildOptions opts, std::function<void(ChildResult)> done,
                  ChildProcess** handle_out = nullptr);
  // Ends the process early (SIGTERM, then SIGKILL after the grace period).
  void Kill();

 private:
  ChildProcess(uv_loop_t* loop, ChildOptions opts, std::function<void(ChildResult)> done);
  ~ChildProcess() = default;
  bool Start();
  void KillGroup(int sig);
  void OnExit(int64_t code, int sig);
  void MaybeFinish();
  void MaybeCloseTimer();
  void CloseHandle(uv_handle_t* h);

  uv_loop_t* loop_;
  ChildOptions opts_;
  std::function<void(ChildResult)> done_;
  ChildResult result_;
  uv_process_t proc_{};
  uv_pipe_t out_{};
  uv_pipe_t err_{};
  uv_timer_t timer_{};
  int open_handles_ = 0;
  bool exited_ = false;
  bool killing_ = false;
};

}  // namespace guardian
