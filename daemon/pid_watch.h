#pragma once
// PidWatch: "tell me when this process exits", for a process Guardian did not start (a pidfile's
// pid). A pidfd is opened first and the pid's start time checked after, so a pid reused between
// the pidfile's write and the check cannot be the one watched. The pidfd becomes readable when
// the process exits, whoever its parent is; a uv_poll hands that to the loop. One object owns
// the handle; destroying it closes the handle (freed in its close callback) without calling back.
//
// Thread: loop thread only.

#include <uv.h>

#include <functional>

#include "daemon/proc_identity.h"
#include "daemon/status.h"

namespace guardian {

class PidWatch {
 public:
  explicit PidWatch(uv_loop_t* loop);
  ~PidWatch();
  PidWatch(const PidWatch&) = delete;
  PidWatch& operator=(const PidWatch&) = delete;

  // Watches `id` (pid and start time). NotFound: no such process any more, or the pid now names
  // another one (nothing is watched). `exited` runs once, on the loop thread.
  Status Start(const ProcessIdentity& id, std::function<void()> exited);
  bool watching() const { return h_ != nullptr; }
  // Whether the watched process has exited, asked now (a poll of the pidfd, without waiting),
  // for a caller that must not act on the event's turn in the loop.
  bool ExitedNow() const;

 private:
  struct Handle {
    uv_poll_t poll;
    int fd = -1;
    std::function<void()> exited;
  };
  void Close();
  uv_loop_t* loop_;
  Handle* h_ = nullptr;
};

}  // namespace guardian
