#include "daemon/notify.h"

#include <dlfcn.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace guardian {

// libsystemd, opened only under systemd (NOTIFY_SOCKET set). Linked in, it and what it links
// (libgcrypt, zstd, lz4, lzma, libcap) cost about 0.8 MiB resident in every guardiand, most of
// which never talk to systemd. Loaded once, never closed.
struct SdLib {
  decltype(&sd_notify) notify = nullptr;
  decltype(&sd_watchdog_enabled) watchdog_enabled = nullptr;
};

namespace {

const SdLib* LoadSdLib(std::string* error) {
  void* dl = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
  if (!dl) {
    const char* why = dlerror();
    *error = why ? why : "libsystemd.so.0: cannot be opened";
    return nullptr;
  }
  static SdLib lib;
  lib.notify = reinterpret_cast<decltype(&sd_notify)>(dlsym(dl, "sd_notify"));
  lib.watchdog_enabled =
      reinterpret_cast<decltype(&sd_watchdog_enabled)>(dlsym(dl, "sd_watchdog_enabled"));
  if (!lib.notify || !lib.watchdog_enabled) {
    *error = "libsystemd.so.0 lacks sd_notify or sd_watchdog_enabled";
    return nullptr;
  }
  return &lib;
}

}  // namespace

Notifier::Notifier() {
  const char* socket = std::getenv("NOTIFY_SOCKET");
  if (socket == nullptr || socket[0] == '\0') return;
  std::string error;
  sd_ = LoadSdLib(&error);
  // systemd waits for READY=1 that will never come, and says so when the unit times out.
  if (!sd_) spdlog::error("NOTIFY_SOCKET is set but systemd cannot be told anything: {}", error);
  enabled_ = sd_ != nullptr;
}

Notifier::~Notifier() = default;

void Notifier::Send(const std::string& state) {
  if (!enabled_) return;
  // unset_environment=0: every later message needs NOTIFY_SOCKET again.
  int rc = sd_->notify(0, state.c_str());
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
  int rc = sd_->watchdog_enabled(0, &usec);
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
