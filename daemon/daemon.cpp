#include "daemon/daemon.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "daemon/audit_chain.h"
#include "daemon/clock.h"
#include "daemon/fault_vfs.h"
#include "daemon/notify.h"
#include "daemon/redact.h"
#include "daemon/self_check.h"
#include "daemon/work.h"
#include "detectors/detector.h"

namespace guardian {
namespace fs = std::filesystem;

ValidatedConfig LoadValidated(const std::string& path,
                              const std::map<std::string, std::vector<std::string>>& running) {
  ValidatedConfig v;
  ConfigLoad& load = v.load;
  load = LoadConfigFile(path, DetectorRegistry::Get().SchemaLookup());
  if (!load.ok()) return v;
  v.scan = PlaybookLibrary::InspectDirs(load.config->playbook_dirs, load.config->playbook_limits);
  PlaybookLibrary scratch(load.config->playbook_limits);
  v.playbook_errors = scratch.Install(v.scan);
  for (const auto& c : load.config->checks) {
    PlaybookInfo serves;
    if (auto pb = scratch.Find(c.playbook)) {
      serves.modes = pb->modes;
    } else if (auto it = running.find(c.playbook); it != running.end()) {
      // Its file fails to load now (the error is in playbook_errors), but the running library
      // keeps the previous good version, as it does when the file is edited.
      serves.modes = it->second;
    }
    if (serves.modes.empty()) {
      load.errors.push_back(
          {load.config->path, c.line, 1,
           "check '" + c.id + "': playbook '" + c.playbook + "' not found in playbook_dirs"});
    } else if (!serves.Serves(c.mode)) {
      load.errors.push_back({load.config->path, c.line, 1,
                             "check '" + c.id + "': playbook '" + c.playbook + "' is for mode '" +
                                 serves.ModesText() + "', not '" + c.mode + "'"});
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
  for (const auto& e : v.load.warnings) std::cerr << e.ToString() << "\n";
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
  // Before anything could echo them: the first log line, the first spawn.
  Redactor::Global().Add(config_->secrets);
  for (const auto& w : load.warnings) spdlog::warn("{}", w.ToString());
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

  // The API's listening sockets exist before the loop does: a socket that cannot be had is
  // fatal at start, with nothing to unwind yet.
  api_config_ = config_->api;
  std::vector<std::pair<int, std::string>> listeners;
  {
    int fd = -1;
    Status ls =
        ListenUnix(api_config_.socket, api_config_.socket_mode, api_config_.socket_gid, &fd);
    if (!ls.ok()) {
      spdlog::error("api: {}", ls.ToString());
      return 1;
    }
    api_socket_ = api_config_.socket;
    listeners.emplace_back(fd, api_config_.socket);
    if (!api_config_.tcp.empty()) {
      ls = ListenTcp(api_config_.tcp, &fd);
      if (!ls.ok()) {
        spdlog::error("api: {}", ls.ToString());
        ::close(listeners[0].first);
        ::unlink(api_socket_.c_str());
        return 1;
      }
      listeners.emplace_back(fd, api_config_.tcp);
    }
  }

  // Opening and reading what a previous run left happen before the loop starts, so nothing
  // waits on them; from here on the store is touched only by its thread.
  std::unique_ptr<Store> store;
  Status s = Store::Open(config_->state_dir + "/guardian.db", false, &store);
  auto close_listeners = [&] {
    for (auto& [fd, name] : listeners) ::close(fd);
    ::unlink(api_socket_.c_str());
  };
  if (!s.ok()) {
    spdlog::error("store: {}", s.ToString());
    close_listeners();
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
    close_listeners();
    return 1;
  }
  playbook_errors_ = pb_errors;

  // A client that hangs up mid-answer must not kill the daemon.
  std::signal(SIGPIPE, SIG_IGN);
  uv_loop_init(&loop_);
  store_ = std::make_unique<StoreThread>(&loop_, std::move(store));
  engine_ = std::make_unique<Engine>(&loop_, store_.get(), playbooks_.get(), SystemClock::Get());
  metrics_ = std::make_unique<GuardianMetrics>();
  engine_->set_metrics(metrics_.get());
  store_->set_latency_observer([this](int64_t us) { metrics_->StoreJob(us); });
  engine_->LoadValues(std::move(values));
  supervisor_ = std::make_unique<Supervisor>(
      &loop_, config_->state_dir, SystemClock::Get(),
      [this](const Service& s, const ServiceEvent& e) { OnServiceEvent(s, e); });
  engine_->set_supervisor(supervisor_.get());
  http_client_ = std::make_unique<HttpClient>(&loop_);
  engine_->set_http(http_client_.get());
  StartFleet();  // before any incident: a disruptive playbook then waits for it
  // The checks once the services are in place (the supervisor reads their records on the
  // pool): a first incident's playbook, or one resumed from before a crash, may act on them at
  // once. status.json appears then, with the checks in it.
  auto resumed =
      std::make_shared<std::pair<std::vector<IncidentRecord>, std::map<std::string, HoldRecord>>>(
          std::move(unfinished), std::move(holds));
  supervisor_->Apply(config_, [this, resumed] {
    engine_->Apply(config_);
    engine_->Recover(std::move(resumed->first), std::move(resumed->second));
    WriteStatus();
  });
  WatchPlaybookDirs();

  lag_ = std::make_unique<LoopLag>(&loop_);
  lag_->Start();
  status_timer_ = std::make_unique<Timer>(&loop_);
  status_timer_->StartRepeat(1000, [this] { WriteStatus(); });

  for (auto* sig : {&sigterm_, &sigint_, &sighup_}) {
    uv_signal_init(&loop_, sig);
    sig->data = this;
  }
  uv_signal_start(
      &sigterm_, [](uv_signal_t* h, int) { static_cast<Daemon*>(h->data)->Stop(); }, SIGTERM);
  uv_signal_start(
      &sigint_, [](uv_signal_t* h, int) { static_cast<Daemon*>(h->data)->Stop(); }, SIGINT);
  uv_signal_start(
      &sighup_,
      [](uv_signal_t* h, int) {
        spdlog::info("SIGHUP");
        auto* self = static_cast<Daemon*>(h->data);
        self->engine_->Audit("signal", "reload_request", "", "SIGHUP");
        self->Reload();
      },
      SIGHUP);

  api_ = std::make_unique<Api>(MakeApiBackend());
  HttpLimits limits;
  limits.max_connections = api_config_.max_connections;
  limits.idle_timeout_ms = api_config_.request_timeout_ms;
  limits.max_body_bytes = api_config_.max_body_bytes;
  int exit_code = 0;
  for (auto& [fd, name] : listeners) {
    // TCP has no file permissions to say who may connect: there the API only reads (status,
    // incidents, metrics). Changes go through the Unix socket.
    bool read_only = name != api_socket_;
    auto server = std::make_unique<HttpServer>(
        &loop_, limits, [this, read_only](const HttpRequest& req, Responder respond) {
          metrics_->ApiRequest();
          if (read_only && req.method != "GET") {
            return respond(ErrorResponse(
                403, "the TCP listener is read-only; use the Unix socket " + api_socket_));
          }
          api_->Handle(req, std::move(respond));
        });
    Status hs = server->Start(fd, name);
    http_.push_back(std::move(server));
    if (!hs.ok()) {
      spdlog::error("api: {}", hs.ToString());
      exit_code = 1;
    }
  }

  spdlog::info("guardiand {} started: {} checks, {} playbooks, state_dir {}, mode {}, api {}{}",
               getpid(), config_->checks.size(), playbooks_->Names().size(), config_->state_dir,
               config_->observe ? "observe" : "act", api_socket_,
               api_config_.tcp.empty() ? "" : " and " + api_config_.tcp);
  engine_->Audit("guardiand", "start", "",
                 std::string("pid ") + std::to_string(getpid()) + ", mode " +
                     (config_->observe ? "observe" : "act"));
  VerifyAuditTrail();
  // systemd: ready only once every handle is set up; the watchdog pings from this loop.
  notifier_ = std::make_unique<Notifier>();
  notifier_->StartWatchdog(&loop_, [this] { return SelfCheckWatchdog(); });
  // Both limits are one ping period: a stall or an unanswered store that long costs a ping.
  int64_t ping_ms = notifier_->ping_period_ms();
  self_check_ = std::make_unique<SelfCheck>(SelfCheckLimits{ping_ms, ping_ms});
  notifier_->Ready(NotifyStatus());
  if (exit_code != 0) Stop();
  uv_run(&loop_, UV_RUN_DEFAULT);
  // Only now: callbacks of pool work queued before the stop may still have reached the engine.
  engine_.reset();
  supervisor_.reset();
  http_client_.reset();
  http_.clear();
  api_.reset();

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
  ::unlink(api_socket_.c_str());
  ::close(lock_fd_);
  spdlog::info("guardiand stopped");
  return exit_code;
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
        playbook_errors_ = playbooks_->Install(std::move(*result));
        for (const auto& e : playbook_errors_) {
          spdlog::error("playbook reload: {} (the previous version stays in use)", e);
        }
        spdlog::info("playbook folders rescanned: {} playbooks, {} errors",
                     playbooks_->Names().size(), playbook_errors_.size());
        if (rescan_again_) {
          rescan_again_ = false;
          RescanPlaybooks();
        }
      });
}

void Daemon::Reload(ReloadDone done) {
  if (stopping_) {
    if (done) done(Status::Aborted("guardiand is stopping"), nullptr);
    return;
  }
  if (reload_in_flight_) {
    // The file may have changed after the running reload read it: read it once more after.
    reload_again_ = true;
    if (done) reload_next_.push_back(std::move(done));
    return;
  }
  spdlog::info("reloading {}", config_path_);
  notifier_->Reloading();
  reload_in_flight_ = true;
  if (done) reload_waiters_.push_back(std::move(done));
  // Reading and validating (config, every playbook's top level) happen on the pool; the loop
  // only swaps in a result that is known good, so a bad reload leaves everything as it was.
  auto v = std::make_shared<ValidatedConfig>();
  std::string path = config_path_;
  std::map<std::string, std::vector<std::string>> running;
  for (const auto& name : playbooks_->Names()) {
    if (auto pb = playbooks_->Find(name)) running[name] = pb->modes;
  }
  QueueWork(
      &loop_, [v, path, running] { *v = LoadValidated(path, running); },
      [this, v] {
        reload_in_flight_ = false;
        auto waiters = std::move(reload_waiters_);
        reload_waiters_.clear();
        Status s = Status::Aborted("guardiand is stopping");
        nlohmann::json result;
        if (!stopping_) {
          s = ApplyReload(std::move(*v), &result);
          notifier_->Ready(NotifyStatus());
        }
        for (auto& w : waiters) w(s, result);
        if (reload_again_) {
          reload_again_ = false;
          auto next = std::move(reload_next_);
          reload_next_.clear();
          if (stopping_) {
            for (auto& w : next) w(Status::Aborted("guardiand is stopping"), nullptr);
            return;
          }
          Reload();
          for (auto& w : next) reload_waiters_.push_back(std::move(w));
        }
      });
}

Status Daemon::ApplyReload(ValidatedConfig v, nlohmann::json* result) {
  for (const auto& e : v.playbook_errors) spdlog::error("playbook: {}", e);
  if (!v.load.ok()) {
    config_errors_.clear();
    for (const auto& e : v.load.errors) {
      spdlog::error("reload rejected: {}", e.ToString());
      config_errors_.push_back(e.ToString());
    }
    spdlog::error("reload rejected: {} error(s); the running config stays in effect",
                  v.load.errors.size());
    status_note_ = "reload rejected: " + std::to_string(v.load.errors.size()) + " errors";
    metrics_->Reload(false);
    engine_->Audit("guardiand", "reload", "",
                   "rejected: " + std::to_string(v.load.errors.size()) + " errors");
    *result = config_errors_;
    return Status::InvalidArgument(config_path_ + ": reload rejected (" +
                                   std::to_string(config_errors_.size()) +
                                   " errors); the running config stays in effect");
  }
  auto next = v.load.config;
  Redactor::Global().Add(next->secrets);
  nlohmann::json warnings = nlohmann::json::array();
  for (const auto& w : v.load.warnings) {
    spdlog::warn("reload: {}", w.ToString());
    warnings.push_back(w.ToString());
  }
  if (next->fleet != config_->fleet) {
    // The seat was taken with these values; rejoining under others live is not done yet.
    std::string w = "fleet change needs a restart; keeping the running values";
    spdlog::warn("reload: {}", w);
    warnings.push_back(w);
    auto patched = std::make_shared<Config>(*next);
    patched->fleet = config_->fleet;
    next = patched;
  }
  if (next->state_dir != config_->state_dir || next->api != api_config_) {
    // The store, lock and listeners were set up at start; moving them live could strand them.
    std::string what = next->state_dir != config_->state_dir ? "state_dir" : "api";
    if (next->state_dir != config_->state_dir && next->api != api_config_) what += " and api";
    std::string w = what + " change needs a restart; keeping the running values";
    spdlog::warn("reload: {}", w);
    warnings.push_back(w);
    auto patched = std::make_shared<Config>(*next);
    patched->state_dir = config_->state_dir;
    patched->api = api_config_;
    next = patched;
  }
  bool mode_changed = next->observe != config_->observe;
  config_ = next;
  spdlog::set_level(spdlog::level::from_str(config_->log_level));
  playbooks_->set_limits(config_->playbook_limits);
  // Playbooks first: checks that start with the new config must find theirs.
  playbook_errors_ = playbooks_->Install(std::move(v.scan));
  for (const auto& e : playbook_errors_) {
    spdlog::error("playbook reload: {} (the previous version stays in use)", e);
  }
  supervisor_->Apply(config_);
  engine_->Apply(config_);
  WatchPlaybookDirs();
  spdlog::info("reloaded: {} checks, mode {}", config_->checks.size(),
               config_->observe ? "observe" : "act");
  status_note_.clear();
  config_errors_.clear();
  metrics_->Reload(true);
  engine_->Audit(
      "guardiand", "reload", "",
      std::to_string(config_->checks.size()) + " checks" +
          (mode_changed ? std::string(", mode now ") + (config_->observe ? "observe" : "act")
                        : ""));
  *result = {{"reloaded", true},
             {"checks", config_->checks.size()},
             {"playbooks", playbooks_->Names().size()},
             {"mode", config_->observe ? "observe" : "act"},
             {"playbook_errors", playbook_errors_},
             {"warnings", warnings}};
  return Status::OK();
}

nlohmann::json Daemon::StatusJson() const {
  nlohmann::json j = engine_->StatusJson();
  AddStatusFields(&j);
  return j;
}

void Daemon::AddStatusFields(nlohmann::json* out) const {
  nlohmann::json& j = *out;
  int64_t now = SystemClock::Get()->WallMs();
  j["pid"] = getpid();
  j["version"] = GUARDIAN_VERSION;
  j["started_at"] = started_at_;
  j["uptime_ms"] = now - started_at_;
  j["config"] = config_path_;
  j["loop_lag_us"] = {{"p50", lag_->PercentileUs(0.5)},
                      {"p99", lag_->PercentileUs(0.99)},
                      {"max", lag_->MaxUs()},
                      {"samples", lag_->samples()}};
  j["store_latency_ms"] = store_->last_latency_ms();
  StoreHealth sh = store_->health();
  j["store"] = {{"state", sh.degraded ? "degraded" : "ok"},
                {"pending_writes", sh.pending},
                {"write_errors", sh.write_errors},
                {"dropped_writes", sh.dropped},
                {"degraded_since", sh.degraded_since ? nlohmann::json(sh.degraded_since) : nullptr},
                {"last_error", sh.last_error}};
  j["services"] = supervisor_->StatusJson();
  j["config_errors"] = config_errors_;
  j["playbook_errors"] = playbook_errors_;
  j["audit"] = audit_;
  if (notifier_ && notifier_->ping_period_ms() > 0) {
    j["watchdog"] = {{"ping_period_ms", notifier_->ping_period_ms()},
                     {"withheld", notifier_->withheld()},
                     {"withheld_reason", notifier_->withheld_reason()}};
  }
  if (fleet_) {
    j["fleet"] = fleet_->Describe();
    j["fleet"]["leader"] = fleet_leader_->Describe();
  }
  j["api"] = {
      {"socket", api_socket_},
      {"tcp", api_config_.tcp.empty() ? nlohmann::json(nullptr) : nlohmann::json(api_config_.tcp)}};
}

void Daemon::VerifyAuditTrail() {
  auto verifier = std::make_shared<AuditChainVerifier>();
  store_->Query([verifier](Store& s) { return s.VerifyAudit(verifier.get()); },
                [this, verifier](Status s) {
                  const AuditChainVerifier& v = *verifier;
                  if (!s.ok()) {
                    spdlog::error("audit trail: cannot read it: {}", s.ToString());
                    audit_ = {{"ok", nullptr}, {"error", s.message()}};
                    return;
                  }
                  audit_ = {{"ok", v.ok()}, {"verified_rows", v.rows()}, {"head", v.head()}};
                  if (v.ok()) {
                    // The head, logged, is what a later verify can be compared against.
                    spdlog::info("audit trail: {} rows verified, head {}", v.rows(), v.head());
                    return;
                  }
                  audit_["broken_row"] = v.broken_id();
                  audit_["reason"] = v.reason();
                  spdlog::error(
                      "audit trail broken at row {}: {}; rows 1 to {} check out (head {}). New "
                      "rows are still appended; `guardian audit verify` shows it",
                      v.broken_id(), v.reason(), v.head_id(), v.head());
                });
}

nlohmann::json Daemon::HealthJson() const {
  // From memory, without building the status: health is what probes poll.
  // "degraded": running, but an operator should look (a rejected reload, a broken playbook,
  // an audit trail someone edited, a tripped remediation breaker, a store whose disk refuses
  // writes).
  bool store_degraded = store_->health().degraded;
  bool fleet_cut_off = fleet_ && fleet_->state() == FleetMember::State::kCutOff;
  bool degraded = !config_errors_.empty() || !playbook_errors_.empty() ||
                  audit_.at("ok") == false || engine_->breaker_open() || store_degraded ||
                  fleet_cut_off;
  return {{"status", degraded ? "degraded" : "ok"},
          {"pid", getpid()},
          {"version", GUARDIAN_VERSION},
          {"uptime_ms", SystemClock::Get()->WallMs() - started_at_},
          {"mode", config_->observe || engine_->breaker_open() ? "observe" : "act"},
          {"checks", config_->checks.size()},
          {"open_incidents", engine_->open_incidents()},
          {"store", store_degraded ? "degraded" : "ok"},
          {"fleet", fleet_ ? nlohmann::json(FleetMember::StateName(fleet_->state()))
                           : nlohmann::json(nullptr)},
          {"loop_lag_us", {{"p99", lag_->PercentileUs(0.99)}, {"max", lag_->MaxUs()}}}};
}

ApiBackend Daemon::MakeApiBackend() {
  ApiBackend b;
  b.health = [this] { return HealthJson(); };
  b.status = [this] { return StatusJson(); };
  b.metrics = [this] { return metrics_->Render(StatusJson()); };
  b.store = [this](std::function<Status(Store&)> work, std::function<void(Status)> done) {
    store_->Query(std::move(work), std::move(done));
  };
  b.hold = [this](const std::string& check, const std::string& reason) {
    return engine_->Hold(check, reason, "api");
  };
  b.release = [this](const std::string& check) { return engine_->Release(check, "api"); };
  b.run = [this](const std::string& check, bool dry_run, bool force,
                 std::function<void(Status, nlohmann::json)> done) {
    if (dry_run) return engine_->DryRun(check, std::move(done));
    engine_->RunNow(check, force, "api", std::move(done));
  };
  b.reload = [this](std::function<void(Status, nlohmann::json)> done) {
    engine_->Audit("api", "reload_request", "", "");
    Reload(std::move(done));
  };
  b.fleet = [this](std::function<void(Status, nlohmann::json)> done) { FleetJson(done); };
  b.targets = [this] { return MttrTargets(*config_); };
  b.now_ms = [] { return SystemClock::Get()->WallMs(); };
#ifdef GUARDIAN_TEST_HOOKS
  b.debug_stall = [this](const std::string& where, int64_t ms) {
    spdlog::warn("debug: stalling the {} for {} ms on request", where, ms);
    if (where == "loop") {
      ::usleep(static_cast<useconds_t>(ms) * 1000);  // on purpose: a wedged loop
    } else {
      store_->Query([ms](Store&) {
        ::usleep(static_cast<useconds_t>(ms) * 1000);
        return Status::OK();
      });
    }
    return Status::OK();
  };
  b.debug_store_fault = [](const std::string& fault, int64_t after, int64_t count,
                           nlohmann::json* out) {
    FaultPlan plan;
    Status s = ParseFaultKind(fault, &plan.kind);
    if (!s.ok()) return s;
    plan.after = after;
    plan.count = count;
    spdlog::warn("debug: store fault {} (after {}, count {}) on request", fault, after, count);
    SetFaultPlan(plan);
    FaultStats st = CurrentFaultStats();
    *out = {{"fault", fault},      {"after", after},    {"count", count},
            {"writes", st.writes}, {"syncs", st.syncs}, {"injected", st.injected}};
    return Status::OK();
  };
#endif
  return b;
}

std::string Daemon::SelfCheckWatchdog() {
  int64_t now = static_cast<int64_t>(uv_now(&loop_));
  self_check_->SawLag(lag_->TakePeakUs() / 1000);
  std::string why = self_check_->Judge(now);
  // A round trip through the store thread and SQLite, judged at the next tick.
  if (self_check_->StoreProbeSent(now)) {
    store_->Query(
        [](Store& s) {
          return s.SchemaVersion() >= 0 ? Status::OK()
                                        : Status::IOError("cannot read the schema version");
        },
        [this](Status s) {
          self_check_->StoreProbeDone(static_cast<int64_t>(uv_now(&loop_)),
                                      s.ok() ? "" : s.message());
        });
  }
  return why;
}

void Daemon::WriteStatus() {
  if (status_write_in_flight_ || stopping_) return;
  // Sent only when the text changed.
  if (notifier_) notifier_->Status(NotifyStatus());
  // The same document as /v1/status, compact. The checks' entries come as text the engine keeps
  // while they do not change: with 1000 checks, building and dumping them all every second was
  // a third of the daemon's CPU. JSON keys are unordered, so `checks` may lead.
  nlohmann::json j = engine_->StatusJsonWithoutChecks();
  AddStatusFields(&j);
  // Evidence quotes broken files, which may hold bytes that are not UTF-8: replace, never throw.
  std::string rest = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string text = "{\"checks\":" + engine_->ChecksStatusText() +
                     (rest.size() > 2 ? "," + rest.substr(1) : "}") + "\n";
  if (auto redacted = Redactor::Global().Redacted(text)) text = std::move(*redacted);
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

std::string Daemon::NotifyStatus() const {
  std::string text = std::to_string(config_->checks.size()) + " checks, " +
                     std::to_string(playbooks_->Names().size()) + " playbooks, " +
                     std::to_string(engine_->open_incidents()) + " open incidents";
  if (!status_note_.empty()) text += "; " + status_note_;
  return text;
}

void Daemon::Stop() {
  if (stopping_) return;
  stopping_ = true;
  spdlog::info("stopping");
  notifier_->Stopping();
  // The API goes first: no operator request may start work the shutdown would abandon.
  // Requests still waiting get 503.
  for (auto& server : http_) server->Close(nullptr);
  // Playbooks end before the services they may be restarting are stopped.
  engine_->Shutdown([this] { supervisor_->Close([this] { CloseAll(); }); });
}

void Daemon::OnServiceEvent(const Service& service, const ServiceEvent& event) {
  bool bad = event.kind == "exited" || event.kind == "stale_record" || event.kind == "not_ready" ||
             event.kind == "cgroup_failed";
  if (bad) {
    spdlog::warn("service {}: {}", service.name(), event.detail);
  } else {
    spdlog::info("service {}: {}", service.name(), event.detail);
  }
  // Readiness flaps are in the log; the audit trail keeps what changed the process.
  if (event.kind == "not_ready" || event.kind == "ready") return;
  engine_->Audit("supervisor", "service_" + event.kind, "", service.name() + ": " + event.detail);
}

void Daemon::StartFleet() {
  if (!config_->fleet.enabled) return;
  // What other hosts (and `guardian fleet status`) see of this one, with each heartbeat.
  auto report = [this] {
    return nlohmann::json{{"version", GUARDIAN_VERSION},
                          {"pid", getpid()},
                          {"started_at", started_at_},
                          {"open_incidents", engine_->open_incidents()}};
  };
  fleet_ = std::make_unique<FleetMember>(&loop_, config_->fleet,
                                         config_->state_dir + "/fleet-lease", report);
  fleet_->OnChange([this](FleetMember::State s) {
    std::string detail = fleet_->config().name + " as " + fleet_->config().host;
    if (s == FleetMember::State::kCutOff)
      detail += ": " + fleet_->Describe()["last_error"].get<std::string>();
    engine_->Audit("guardiand", std::string("fleet_") + FleetMember::StateName(s), "", detail);
  });
  fleet_slots_ = std::make_unique<FleetSlots>(fleet_.get());
  engine_->set_fleet(fleet_slots_.get());
  fleet_leader_ = std::make_unique<FleetLeader>(
      fleet_.get(), [this](const std::string& kind, const std::string& detail) {
        engine_->Audit("guardiand", kind, "", detail);
      });
  fleet_->Start();
}

void Daemon::FleetJson(std::function<void(Status, nlohmann::json)> done) {
  if (!fleet_)
    return done(Status::NotFound("fleet mode is off: the config has no fleet: section"), nullptr);
  nlohmann::json me = fleet_->Describe();
  me["leader"] = fleet_leader_->Describe();
  fleet_leader_->Read([this, me, done](Status s, FleetRead read) {
    const FleetConfig& c = fleet_->config();
    nlohmann::json out;
    if (s.ok()) {
      out = FleetViewJson(c, read, SystemClock::Get()->WallMs());
      out["reachable"] = true;
    } else {
      // Cut off, say: what this host knows of itself is still worth showing.
      out = {{"fleet", c.name},
             {"reachable", false},
             {"error", "cannot read the fleet from etcd: " + s.message()},
             {"leader", nullptr},
             {"hosts", nlohmann::json::array()},
             {"budgets", nlohmann::json::array()},
             {"summary", nullptr}};
    }
    out["this_host"] = me;
    done(Status::OK(), out);
  });
}

void Daemon::CloseAll() {
  notifier_->StopWatchdog();
  lag_->Stop();
  lag_.reset();
  status_timer_.reset();
  playbook_rescan_.reset();
  playbook_watchers_.clear();
  for (auto* sig : {&sigterm_, &sigint_, &sighup_})
    uv_close(reinterpret_cast<uv_handle_t*>(sig), nullptr);
  if (http_client_) http_client_->Close([] {});
  // Leaving revokes the lease, so the seat and its slots are free at once; the loop runs on
  // until that request is answered (or times out).
  // The election and the slots first: nothing may be written for this host while it leaves.
  fleet_leader_.reset();
  engine_->set_fleet(nullptr);
  fleet_slots_.reset();
  if (fleet_) fleet_->Close([] {});
  store_->Close(nullptr);
}

}  // namespace guardian
