#pragma once
// The control flags: RUNTIME/flags.json, written by Guardian (atomic rename), read by the app at
// start, within milliseconds of every change (inotify) and on SIGHUP.

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace demoapp {

class Log;

struct Flags {
  int64_t seq = 0;
  bool offline_mode = false;
  std::vector<std::string> degraded_features;
  std::string active_upstream = "primary";
  int64_t upstream_timeout_ms = 0;       // 0: the config's upstreams.timeout_ms
  std::vector<std::string> skip_chunks;  // applies at the next boot
  bool low_memory = false;

  bool degraded(const std::string& feature) const;
  bool skips(const std::string& chunk) const;
};

nlohmann::json FlagsToJson(const Flags& flags);

// Parses a flags document. Keys are optional and a missing key takes its value from `defaults`.
// On failure returns false with `error` naming `path` and the problem.
bool ParseFlags(const std::string& text, const std::string& path, const Flags& defaults, Flags* out,
                std::string* error);

class FlagsStore {
 public:
  // `on_apply(old, now, error)` runs after every load, good or bad (`error` empty when good).
  using ApplyFn = std::function<void(const Flags&, const Flags&, const std::string&)>;

  FlagsStore(std::string dir, Flags defaults, std::set<std::string> critical_chunks, Log& log,
             ApplyFn on_apply);
  ~FlagsStore();

  // Reads flags.json now. A missing file changes nothing; a bad one keeps the current flags.
  void Load();
  Flags Get() const;

  // Watches the folder in a thread of its own; false (and logged) when inotify is unavailable.
  bool StartWatch();
  void StopWatch();

 private:
  void WatchLoop();

  const std::string dir_;
  const std::string path_;
  const Flags defaults_;
  const std::set<std::string> critical_;
  Log& log_;
  ApplyFn on_apply_;

  std::mutex load_mu_;  // one load at a time (watch thread and SIGHUP)
  mutable std::mutex mu_;
  Flags current_;

  int inotify_fd_ = -1;
  int stop_fd_ = -1;
  std::thread thread_;
};

}  // namespace demoapp
