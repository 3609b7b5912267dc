#include "daemon/notify.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace guardian {

Notifier::Notifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  enabled_ = socket != nullptr && socket[0] != '\0';
}

Notifier::~Notifier() = default;

void Notifier::Send(const std::string& state) {
  if (!enabled_) return;
  // unset_environment=0: every later message needs NOTIFY_SOCKET again.
  int rc = sd_notify(0, state.c_str());
  if (rc < 0) {
    // Once: a notify socket that went away would otherwise log on every watchdog ping.
    static bool warned = false;
    if (!warned) {
      warned = true;
      spdlog::warn("sd_notify: {}", std::strerror(-rc));
    }
  }
}

void Notifier::Ready(const std::string& status_text) {
  if (!enabled_) return;
  last_status_ = status_text;
  Send("READY=1\nSTATUS=" + status_text + "\nMAINPID=" + std::to_string(::getpid()));
}

void Notifier::Status(const std::string& text) {
  if (!enabled_ || text == last_status_) return;
  last_status_ = text;
  Send("STATUS=" + text);
}

void Notifier::Reloading() {
  if (!enabled_) return;
  // MONOTONIC_USEC lets systemd (>= 253, Type=notify-reload) tell this reload from an older one.
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t usec = static_cast<uint64_t>(ts.tv_sec) * 1000000u + ts.tv_nsec / 1000;
  last_status_ = "reloading";
  Send("RELOADING=1\nSTATUS=reloading\nMONOTONIC_USEC=" + std::to_string(usec));
}

void Notifier::Stopping() {
  if (!enabled_) return;
  last_status_ = "stopping";
  Send("STOPPING=1\nSTATUS=stopping");
}

uint64_t Notifier::StartWatchdog(uv_loop_t* loop, HealthFn healthy) {
  if (!enabled_ || watchdog_) return 0;
  uint64_t usec = 0;
  // > 0 only if WATCHDOG_USEC is set and WATCHDOG_PID (if set) is this process.
  int rc = sd_watchdog_enabled(0, &usec);
  if (rc <= 0 || usec == 0) {
    if (rc < 0) spdlog::warn("watchdog: {}", std::strerror(-rc));
    return 0;
  }
  // Half the period, as sd_watchdog_enabled(3) advises: one late tick is not yet a kill.
  ping_period_ms_ = std::max<int64_t>(1, static_cast<int64_t>(usec / 2000));
  healthy_ = std::move(healthy);
  watchdog_ = std::make_unique<Timer>(loop);
  // A chore: it must not keep a stopping loop alive.
  watchdog_->Unref();
  // The first ping comes from the timer too: only a loop that runs pings.
  watchdog_->StartRepeat(ping_period_ms_, [this] { WatchdogTick(); });
  spdlog::info("systemd watchdog: {} ms, pinging every {} ms from the loop while healthy",
               usec / 1000, ping_period_ms_);
  return usec;
}

void Notifier::WatchdogTick() {
  std::string why = healthy_ ? healthy_() : "";
  if (why.empty()) {
    if (!withheld_reason_.empty()) {
      spdlog::info("watchdog: healthy again, pinging");
      Send("STATUS=" + last_status_);
    }
    withheld_reason_.clear();
    Send("WATCHDOG=1");
    return;
  }
  ++withheld_;
  if (withheld_reason_.empty()) {
    // On the change only: a wedged store would otherwise log every tick until systemd acts.
    spdlog::error("watchdog: withholding the ping: {}", why);
    Send("STATUS=watchdog ping withheld: " + why);
  }
  withheld_reason_ = why;
}

void Notifier::StopWatchdog() { watchdog_.reset(); }

}  // namespace guardian
