#pragma once
// PidWatch: "tell me when this process exits", for a process Guardian did not start (a pidfile's
// pid). OpenPidfd opens a pidfd on the pid first and reads the identity of the process it pins
// after: a pidfd holds the pid, so the number cannot pass to another program in between. The
// pidfd becomes readable when the process exits, whoever its parent is; a uv_poll hands that to
// the loop. One object owns the handle; destroying it closes the handle (freed in its close
// callback) and the pidfd without calling back.
//
// Thread: OpenPidfd blocks (it reads /proc): call it on the pool. PidWatch: loop thread only.

#include <uv.h>

#include <functional>

#include "daemon/proc_identity.h"
#include "daemon/status.h"

namespace guardian {

// A pidfd on `pid` (in `*fd`, the caller's to close or hand to PidWatch) and the identity of
// the process it pins. NotFound: no such process, or only its zombie is left.
Status OpenPidfd(pid_t pid, ProcessIdentity* id, int* fd);

class PidWatch {
 public:
  explicit PidWatch(uv_loop_t* loop);
  ~PidWatch();
  PidWatch(const PidWatch&) = delete;
  PidWatch& operator=(const PidWatch&) = delete;

  // Watches the process `pidfd` (from OpenPidfd; owned from here on, closed even on failure).
  // `exited` runs once, on the loop thread.
  Status Start(int pidfd, std::function<void()> exited);
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
