#pragma once
// Handles for the loop-driven wrappers of libraries that open their own sockets (libcurl,
// c-ares): the library says which socket to watch and when to wake it, and these carry that to
// libuv. Each is heap-allocated, frees itself in its own close callback, and can count itself in
// its owner's CloseLatch so the owner's Close() reports "closed" only after the last one.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "daemon/close_latch.h"

namespace guardian {

// SocketWatch: a uv_poll on a socket the library opened and owns.
class SocketWatch {
 public:
  // nullptr when libuv refuses the socket.
  static SocketWatch* Open(uv_loop_t* loop, int fd);
  // (Re)starts watching for UV_READABLE | UV_WRITABLE; `ready(status, events)` on each event.
  // `ready` may Close() this watch; it is not touched afterwards.
  void Start(int events, std::function<void(int status, int events)> ready);
  // Stops and closes; with `latch`, counted in it. The object is gone once libuv closed it.
  void Close(std::shared_ptr<CloseLatch> latch);
  int fd() const { return fd_; }

 private:
  SocketWatch() = default;
  uv_poll_t poll_;
  int fd_ = -1;
  bool closing_ = false;
  std::function<void(int, int)> ready_;
  std::shared_ptr<CloseLatch> latch_;
};

// Call first in a deadline timer's callback. Timers run before the loop polls for I/O, so after
// a stall (a slow callback, a slow spawn) a deadline can be due while the answer already waits
// on a socket. The first call re-arms `timer` (with `cb`, its callback) for one more loop turn, in
// which the loop polls, and returns true: the caller returns. The second returns false: the
// deadline stands. `*polled` is per arming; reset it when the timer is started anew. (1 ms, not 0:
// a 0 ms timer started in a timer callback runs in the same timers phase, before any poll.)
bool PollOnceBeforeDeadline(uv_timer_t* timer, uv_timer_cb cb, bool* polled);

// WakeTimer: a one-shot uv_timer a library asks for ("wake me in N ms"). It fires after one
// more poll of the loop's sockets, so a stalled loop does not turn an answer into a timeout.
class WakeTimer {
 public:
  static WakeTimer* Open(uv_loop_t* loop);
  void Start(uint64_t ms, std::function<void()> fire);
  void Stop();
  void Close(std::shared_ptr<CloseLatch> latch);

 private:
  WakeTimer() = default;
  static void OnTimer(uv_timer_t* h);
  uv_timer_t timer_;
  bool closing_ = false;
  bool polled_ = false;
  std::function<void()> fire_;
  std::shared_ptr<CloseLatch> latch_;
};

}  // namespace guardian
