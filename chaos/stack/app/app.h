#pragma once
// The parts of one running demo app, and its lifecycle (stop requests and the exit code).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>

#include "chaos/stack/app/app_config.h"
#include "chaos/stack/app/database.h"
#include "chaos/stack/app/flags.h"
#include "chaos/stack/app/log.h"
#include "chaos/stack/app/memory.h"
#include "chaos/stack/app/search_index.h"
#include "chaos/stack/app/snapshot.h"
#include "chaos/stack/app/status.h"

namespace demoapp {

class HttpServer;
class ModelClient;
class Upstreams;

// Who asked the process to end, and with which exit code. Sleeps in boot chunks and in the
// maintenance thread wait here, so that a stop never waits for them.
class Lifecycle {
 public:
  // The first request wins: a SIGTERM after a bind failure keeps exit code 3.
  void Finish(int exit_code) {
    std::lock_guard lock(mu_);
    if (!exit_code_) exit_code_ = exit_code;
    cv_.notify_all();
  }
  bool finished() const {
    std::lock_guard lock(mu_);
    return exit_code_.has_value();
  }
  // Sleeps up to `ms`; false when the process is finishing.
  bool Sleep(int64_t ms) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return exit_code_.has_value(); });
    return !exit_code_.has_value();
  }
  int Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return exit_code_.has_value(); });
    return *exit_code_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<int> exit_code_;
};

struct App {
  AppConfig config;
  int port = 0;  // the port to bind: --port, else the registry, else server.port
  Status* status = nullptr;
  Log* log = nullptr;
  Database* db = nullptr;
  Memory* memory = nullptr;
  FlagsStore* flags = nullptr;
  SearchIndex* index = nullptr;
  Snapshots* snapshots = nullptr;
  HttpServer* http = nullptr;
  Upstreams* upstreams = nullptr;
  ModelClient* model = nullptr;
  Lifecycle life;
};

}  // namespace demoapp
