#pragma once
// Notifier: tells systemd how guardiand is doing through the sd_notify protocol (libsystemd):
// READY, RELOADING, STOPPING, STATUS and the WATCHDOG keep-alive, for a `Type=notify` unit.
// Without NOTIFY_SOCKET (not started by systemd) every call is a cheap no-op, and libsystemd is
// not even loaded: it is opened with dlopen only when NOTIFY_SOCKET is set.
//
// The watchdog pings come from a timer on the daemon's own loop, not from a thread, on
// purpose: if the loop is stuck (a blocking callback, a deadlock), the pings stop and systemd
// kills and restarts the daemon. A thread would keep pinging for a daemon that does nothing.
// A loop that turns but badly (long stalls, a store that does not answer) is caught by the
// health function the daemon gives (SelfCheck): the ping is withheld while it says no.
//
// Loop thread only. The watchdog's timer must be released with StopWatchdog() before the loop
// is closed.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "daemon/timer.h"

namespace guardian {

struct SdLib;  // libsystemd's functions (notify.cpp)

class Notifier {
 public:
  Notifier();  // reads NOTIFY_SOCKET once
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  bool enabled() const { return enabled_; }
  // Start-up finished or a reload was applied (or rejected): READY=1, STATUS, MAINPID.
  void Ready(const std::string& status_text);
  // STATUS=text; sent only when the text changed since the last one sent.
  void Status(const std::string& text);
  // A reload started; Ready() again when it is done.
  void Reloading();
  void Stopping();

  // Asked before each ping: "" to ping, else why not.
  using HealthFn = std::function<std::string()>;
  // If the unit has a watchdog (WatchdogSec=, seen as WATCHDOG_USEC), pings WATCHDOG=1 every
  // half period from `loop` while `healthy` (may be empty) says so. Returns the period in
  // microseconds, 0 if there is no watchdog.
  uint64_t StartWatchdog(uv_loop_t* loop, HealthFn healthy = nullptr);
  // Closes the timer; safe to call twice or without StartWatchdog().
  void StopWatchdog();
  // Pings withheld because `healthy` said no, and why the last one was ("" while healthy).
  int64_t withheld() const { return withheld_; }
  const std::string& withheld_reason() const { return withheld_reason_; }
  int64_t ping_period_ms() const { return ping_period_ms_; }

 private:
  void Send(const std::string& state);
  void WatchdogTick();
  bool enabled_ = false;
  const SdLib* sd_ = nullptr;  // libsystemd's functions, while enabled
  HealthFn healthy_;
  int64_t ping_period_ms_ = 0;
  int64_t withheld_ = 0;
  std::string withheld_reason_;
  std::string last_status_;
  std::unique_ptr<Timer> watchdog_;
};

}  // namespace guardian
