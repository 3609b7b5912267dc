#include "daemon/daemon.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iostream>

#include "daemon/clock.h"
#include "daemon/work.h"
#include "detectors/detector.h"

namespace guardian {
namespace fs = std::filesystem;

ValidatedConfig LoadValidated(const std::string& path) {
  ValidatedConfig v;
  ConfigLoad& load = v.load;
  load = LoadConfigFile(path, DetectorRegistry::Get().SchemaLookup());
  if (!load.ok()) return v;
  v.scan = PlaybookLibrary::InspectDirs(load.config->playbook_dirs, load.config->playbook_limits);
  PlaybookLibrary scratch(load.config->playbook_limits);
  v.playbook_errors = scratch.Install(v.scan);
  for (const auto& c : load.config->checks) {
    auto pb = scratch.Find(c.playbook);
    if (!pb) {
      load.errors.push_back(
          {load.config->path, c.line, 1,
           "check '" + c.id + "': playbook '" + c.playbook + "' not found in playbook_dirs"});
    } else if (pb->mode != c.mode) {
      load.errors.push_back({load.config->path, c.line, 1,
                             "check '" + c.id + "': playbook '" + c.playbook + "' is for mode '" +
                                 pb->mode + "', not '" + c.mode + "'"});
    }
  }
  if (!load.errors.empty()) load.config.reset();
  return v;
}

ConfigLoad LoadAndValidate(const std::string& path, PlaybookLibrary* playbooks,
                           std::vector<std::string>* playbook_errors) {
  ValidatedConfig v = LoadValidated(path);
  *playbook_errors = std::move(v.playbook_errors);
  if (v.load.ok()) {
    playbooks->set_limits(v.load.config->playbook_limits);
    playbooks->Install(std::move(v.scan));
  }
  return v.load;
}

int CheckConfigCommand(const std::string& path) {
  ValidatedConfig v = LoadValidated(path);
  for (const auto& e : v.load.errors) std::cerr << e.ToString() << "\n";
  for (const auto& e : v.playbook_errors) std::cerr << e << "\n";
  if (!v.load.ok() || !v.playbook_errors.empty()) return 2;
  std::cout << path << ": ok (" << v.load.config->checks.size() << " checks, "
            << v.scan.loaded.size() << " playbooks)\n";
  return 0;
}

int Daemon::Run() {
  started_at_ = SystemClock::Get()->WallMs();
  playbooks_ = std::make_unique<PlaybookLibrary>(PlaybookLimits{});
  std::vector<std::string> pb_errors;
  ConfigLoad load = LoadAndValidate(config_path_, playbooks_.get(), &pb_errors);
  for (const auto& e : pb_errors) spdlog::error("playbook: {}", e);
  if (!load.ok()) {
    for (const auto& e : load.errors) spdlog::error("{}", e.ToString());
    return 2;
  }
  config_ = load.config;
  spdlog::set_level(spdlog::level::from_str(config_->log_level));

  std::error_code ec;
  fs::create_directories(config_->state_dir, ec);
  if (ec) {
    spdlog::error("state_dir {}: {}", config_->state_dir, ec.message());
    return 1;
  }
  // One daemon per state dir: two would race on the same files and journal.
  std::string lock_path = config_->state_dir + "/guardiand.lock";
  lock_fd_ = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
  if (lock_fd_ < 0 || ::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    spdlog::error("{}: another guardiand is using this state_dir", lock_path);
    return 1;
  }
  std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd_, 0) != 0 || ::write(lock_fd_, pid.data(), pid.size()) < 0) {
    spdlog::warn("{}: cannot record pid", lock_path);
  }

  // Opening and reading what a previous run left happen before the loop starts, so nothing
  // waits on them; from here on the store is touched only by its thread.
  std::unique_ptr<Store> store;
  Status s = Store::Open(config_->state_dir + "/guardian.db", false, &store);
  if (!s.ok()) {
    spdlog::error("store: {}", s.ToString());
    return 1;
  }
  std::vector<IncidentRecord> unfinished;
  std::map<std::string, HoldRecord> holds;
  std::map<std::string, std::map<std::string, std::string>> values;
  s = store->UnfinishedIncidents(&unfinished);
  if (s.ok()) s = store->Holds(&holds);
  for (const auto& c : config_->checks) {
    if (s.ok()) s = store->Values(c.id, &values[c.id]);
  }
  if (!s.ok()) {
    spdlog::error("store: {}", s.ToString());
    return 1;
  }

  uv_loop_init(&loop_);
  store_ = std::make_unique<StoreThread>(&loop_, std::move(store));
  engine_ = std::make_unique<Engine>(&loop_, store_.get(), playbooks_.get(), SystemClock::Get());
  engine_->LoadValues(std::move(values));
  engine_->Apply(config_);
  engine_->Recover(std::move(unfinished), std::move(holds));
  WatchPlaybookDirs();

  lag_ = std::make_unique<LoopLag>(&loop_);
  lag_->Start();
  status_timer_ = std::make_unique<Timer>(&loop_);
  status_timer_->StartRepeat(1000, [this] { WriteStatus(); });
  WriteStatus();

  for (auto* sig : {&sigterm_, &sigint_, &sighup_}) {
    uv_signal_init(&loop_, sig);
    sig->data = this;
  }
  uv_signal_start(
      &sigterm_, [](uv_signal_t* h, int) { static_cast<Daemon*>(h->data)->Stop(); }, SIGTERM);
  uv_signal_start(
      &sigint_, [](uv_signal_t* h, int) { static_cast<Daemon*>(h->data)->Stop(); }, SIGINT);
  uv_signal_start(
      &sighup_, [](uv_signal_t* h, int) { static_cast<Daemon*>(h->data)->Reload(); }, SIGHUP);

  spdlog::info("guardiand {} started: {} checks, {} playbooks, state_dir {}", getpid(),
               config_->checks.size(), playbooks_->Names().size(), config_->state_dir);
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Only now: callbacks of pool work queued before the stop may still have reached the engine.
  engine_.reset();

  int rc = uv_loop_close(&loop_);
  if (rc != 0) {
    // Every handle must be closed by now; name the ones that were not.
    uv_walk(
        &loop_,
        [](uv_handle_t* h, void*) {
          spdlog::error("leaked handle: {}", uv_handle_type_name(h->type));
        },
        nullptr);
    return 1;
  }
  // The lock file stays: unlinking it would let a second daemon lock a new inode while a
  // slow first one still holds the old. The status file goes: no daemon is running now.
  ::unlink((config_->state_dir + "/status.json").c_str());
  ::close(lock_fd_);
  spdlog::info("guardiand stopped");
  return 0;
}

void Daemon::WatchPlaybookDirs() {
  playbook_watchers_.clear();
  if (!playbook_rescan_) playbook_rescan_ = std::make_unique<Timer>(&loop_);
  for (const auto& dir : config_->playbook_dirs) {
    auto w = std::make_unique<FsWatch>(&loop_);
    Status s = w->Start(dir, [this](const std::string& name) {
      if (!name.empty() && !name.ends_with(".lua")) return;
      // Editors write in bursts; rescan once things settle.
      playbook_rescan_->Start(100, [this] { RescanPlaybooks(); });
    });
    if (!s.ok()) spdlog::warn("playbook dir: {}", s.message());
    playbook_watchers_.push_back(std::move(w));
  }
}

void Daemon::RescanPlaybooks() {
  if (stopping_) return;
  if (rescan_in_flight_) {
    rescan_again_ = true;
    return;
  }
  rescan_in_flight_ = true;
  // Reading and test-loading the files happens on the pool; installing them on the loop.
  auto dirs = config_->playbook_dirs;
  auto limits = playbooks_->limits();
  auto result = std::make_shared<PlaybookLibrary::ScanResult>();
  QueueWork(
      &loop_, [dirs, limits, result] { *result = PlaybookLibrary::InspectDirs(dirs, limits); },
      [this, result] {
        rescan_in_flight_ = false;
        if (stopping_) return;
        for (const auto& e : playbooks_->Install(std::move(*result))) {
          spdlog::error("playbook reload: {} (the previous version stays in use)", e);
        }
        if (rescan_again_) {
          rescan_again_ = false;
          RescanPlaybooks();
        }
      });
}

void Daemon::Reload() {
  if (stopping_) return;
  if (reload_in_flight_) {
    reload_again_ = true;
    return;
  }
  spdlog::info("SIGHUP: reloading {}", config_path_);
  reload_in_flight_ = true;
  // Reading and validating (config, every playbook's top level) happen on the pool; the loop
  // only swaps in a result that is known good, so a bad reload leaves everything as it was.
  auto v = std::make_shared<ValidatedConfig>();
  std::string path = config_path_;
  QueueWork(
      &loop_, [v, path] { *v = LoadValidated(path); },
      [this, v] {
        reload_in_flight_ = false;
        if (!stopping_) ApplyReload(std::move(*v));
        if (reload_again_ && !stopping_) {
          reload_again_ = false;
          Reload();
        }
      });
}

void Daemon::ApplyReload(ValidatedConfig v) {
  for (const auto& e : v.playbook_errors) spdlog::error("playbook: {}", e);
  if (!v.load.ok()) {
    for (const auto& e : v.load.errors) spdlog::error("reload rejected: {}", e.ToString());
    spdlog::error("reload rejected: {} error(s); the running config stays in effect",
                  v.load.errors.size());
    return;
  }
  auto next = v.load.config;
  if (next->state_dir != config_->state_dir) {
    spdlog::warn("reload: state_dir change to {} needs a restart; keeping {}", next->state_dir,
                 config_->state_dir);
    auto patched = std::make_shared<Config>(*next);
    patched->state_dir = config_->state_dir;
    next = patched;
  }
  config_ = next;
  spdlog::set_level(spdlog::level::from_str(config_->log_level));
  playbooks_->set_limits(config_->playbook_limits);
  // Playbooks first: checks that start with the new config must find theirs.
  playbooks_->Install(std::move(v.scan));
  engine_->Apply(config_);
  WatchPlaybookDirs();
  spdlog::info("reloaded: {} checks", config_->checks.size());
}

void Daemon::WriteStatus() {
  if (status_write_in_flight_ || stopping_) return;
  nlohmann::json j = engine_->StatusJson();
  j["pid"] = getpid();
  j["started_at"] = started_at_;
  j["config"] = config_path_;
  j["loop_lag_us"] = {{"p50", lag_->PercentileUs(0.5)},
                      {"p99", lag_->PercentileUs(0.99)},
                      {"max", lag_->MaxUs()},
                      {"samples", lag_->samples()}};
  j["store_latency_ms"] = store_->last_latency_ms();
  // Evidence quotes broken files, which may hold bytes that are not UTF-8: replace, never throw.
  std::string text = j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::string path = config_->state_dir + "/status.json";
  status_write_in_flight_ = true;
  QueueWork(
      &loop_,
      [text, path] {
        std::string tmp = path + ".tmp";
        {
          std::ofstream out(tmp, std::ios::trunc);
          out << text;
        }
        std::error_code ec;
        fs::rename(tmp, path, ec);
      },
      [this] { status_write_in_flight_ = false; });
}

void Daemon::Stop() {
  if (stopping_) return;
  stopping_ = true;
  spdlog::info("stopping");
  engine_->Shutdown([this] { CloseAll(); });
}

void Daemon::CloseAll() {
  lag_->Stop();
  lag_.reset();
  status_timer_.reset();
  playbook_rescan_.reset();
  playbook_watchers_.clear();
  for (auto* sig : {&sigterm_, &sigint_, &sighup_})
    uv_close(reinterpret_cast<uv_handle_t*>(sig), nullptr);
  store_->Close(nullptr);
}

}  // namespace guardian
