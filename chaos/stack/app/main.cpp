// demo-app: the small real service that Guardian's demo stack supervises and heals. Its faults
// (a port already taken, a corrupt database, memory growth, a slow boot, a full disk) are real.
// See docs/demo-stack.md for the contract: command line, config, runtime files, endpoints.

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

#include "chaos/stack/app/app.h"
#include "chaos/stack/app/boot.h"
#include "chaos/stack/app/http.h"
#include "chaos/stack/app/maintenance.h"
#include "chaos/stack/app/model.h"
#include "chaos/stack/app/upstream.h"
#include "chaos/stack/app/util.h"

namespace demoapp {
namespace {

// The signals the app handles, all on one thread with sigwait. SIGUSR2 only wakes that thread
// when the process ends.
sigset_t HandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2}) sigaddset(&set, sig);
  return set;
}

// Re-reads app.yaml as a daemon does on SIGHUP: a bad file is reported and the running config
// kept; a good one is applied where that can be done live (the upstreams, the model server), and
// reported.
void ReloadConfig(App& app) {
  AppConfig cfg;
  std::string error;
  if (!LoadConfig(app.config.path, &cfg, &error)) {
    app.log->Error("config reload: kept the running config: " + error);
    app.status->ConfigLoaded(false, error);
    return;
  }
  app.upstreams->Reconfigure(UpstreamConfig{cfg.upstream_primary, cfg.upstream_backup,
                                            cfg.upstream_timeout_ms, cfg.token_file});
  app.model->Reconfigure(ModelConfig{cfg.model_url, cfg.model_name, cfg.model_timeout_ms});
  app.log->Info("config reload: " + app.config.path +
                " applied (upstreams, model; the rest at restart)");
  app.status->ConfigLoaded(true, "");
}

void SignalLoop(App& app, const std::atomic<bool>& quit) {
  sigset_t set = HandledSignals();
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (quit) return;
    if (sig == SIGTERM || sig == SIGINT) {
      app.log->Info(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
                    ": stopping");
      app.life.Finish(0);
    } else if (sig == SIGUSR1) {
      uint64_t freed = app.memory->ShedCaches();
      app.log->Info("SIGUSR1: shed caches, freed " + std::to_string(freed) + " bytes");
    } else if (sig == SIGHUP) {
      app.log->Reopen();
      app.log->Info(
          "SIGHUP: log reopened, re-reading the config and flags, reopening the database");
      ReloadConfig(app);
      app.flags->Load();
      if (app.db->opened()) {
        int64_t rows = 0;
        ReopenDatabase(app, &rows);
      }
    }
  }
}

std::string SelfExe() {
  char buf[PATH_MAX];
  if (realpath("/proc/self/exe", buf)) return buf;
  return "";
}

int Run(int argc, char** argv) {
  // Blocked first thing: a SIGHUP that arrives while the app is still starting (its supervisor
  // asking for a reopen) must wait for the signal thread, not kill the process. Blocked before
  // any thread starts, so every thread inherits the mask and only the signal thread gets them.
  sigset_t signals = HandledSignals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  CLI::App cli{"demo-app: the service Guardian's demo stack supervises (docs/demo-stack.md)"};
  std::string config_path;
  std::string runtime_dir;
  int port = 0;
  cli.add_option("--config", config_path, "the YAML config file")->required();
  cli.add_option("--runtime-dir", runtime_dir, "overrides runtime.dir");
  CLI::Option* port_opt = cli.add_option("--port", port, "overrides the registry and server.port")
                              ->check(CLI::Range(0, 65535));
  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e) == 0 ? 0 : 2;
  }

  AppConfig cfg;
  std::string error;
  if (!LoadConfig(config_path, &cfg, &error)) {
    fprintf(stderr, "demo-app: bad config: %s\n", error.c_str());
    return 2;
  }
  if (!runtime_dir.empty()) cfg.runtime_dir = std::filesystem::absolute(runtime_dir).string();
  for (const std::string& dir : {cfg.runtime_dir, cfg.log_dir}) {
    if (int err = MakeDirs(dir); err != 0) {
      fprintf(stderr, "demo-app: cannot create %s: %s\n", dir.c_str(), strerror(err));
      return 1;
    }
  }

  Status status(cfg.runtime_dir + "/status.json", SelfExe());
  Log log(cfg.log_dir + "/app.log", status);
  log.Info("demo-app starting: pid " + std::to_string(getpid()) + ", config " + cfg.path);

  App app;
  app.config = cfg;
  app.port = ResolvePort(cfg, port_opt->count() ? std::optional<int>(port) : std::nullopt, log);
  status.SetPort(app.port);

  Memory memory(status, static_cast<uint64_t>(cfg.low_memory_max_mb) << 20);
  Database db(cfg.db_path, cfg.busy_timeout_ms, cfg.seed_rows, log, status);
  SearchIndex index;
  Snapshots snapshots(cfg.snapshot_dir, db, log, status);
  UpstreamGlobalInit();
  Upstreams upstreams(UpstreamConfig{cfg.upstream_primary, cfg.upstream_backup,
                                     cfg.upstream_timeout_ms, cfg.token_file},
                      status);
  ModelClient model(ModelConfig{cfg.model_url, cfg.model_name, cfg.model_timeout_ms}, status);

  Flags defaults;
  defaults.offline_mode = cfg.offline_mode;
  std::set<std::string> critical;
  for (const ChunkConfig& c : cfg.chunks) {
    if (c.critical) critical.insert(c.name);
  }
  FlagsStore flags(cfg.runtime_dir, defaults, critical, log,
                   [&](const Flags& old, const Flags& now, const std::string& flags_error) {
                     // Memory first: once status shows the new seq, the flags are in force.
                     if (old.low_memory != now.low_memory) {
                       memory.SetLowMemory(now.low_memory);
                       log.Info(now.low_memory ? "low-memory mode on: caches shed and capped"
                                               : "low-memory mode off: cache cap lifted");
                     }
                     status.SetFlags(now, flags_error);
                   });
  status.SetFlags(defaults, "");
  flags.Load();

  HttpServer http(app);
  app.status = &status;
  app.log = &log;
  app.db = &db;
  app.memory = &memory;
  app.flags = &flags;
  app.index = &index;
  app.snapshots = &snapshots;
  app.upstreams = &upstreams;
  app.model = &model;
  app.http = &http;

  std::atomic<bool> quit_signals{false};
  std::thread signal_thread([&] { SignalLoop(app, quit_signals); });
  flags.StartWatch();
  Maintenance maintenance(app);
  maintenance.Start();
  std::thread boot([&] { RunBoot(app); });

  int code = app.life.Wait();
  if (code == 0) status.Stopping();
  boot.join();
  http.Stop();
  maintenance.Join();
  flags.StopWatch();
  db.Close();
  quit_signals = true;
  pthread_kill(signal_thread.native_handle(), SIGUSR2);
  signal_thread.join();
  log.Info("demo-app stopped (exit code " + std::to_string(code) + ")");
  return code;
}

}  // namespace
}  // namespace demoapp

int main(int argc, char** argv) { return demoapp::Run(argc, argv); }
