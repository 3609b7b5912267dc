#pragma once
// Daemon: guardiand itself. Owns the one libuv loop and everything on it: signal handlers
// (SIGTERM/SIGINT stop, SIGHUP reloads), the store thread, the playbook library and its
// watchers, the engine, the operator API's servers, metrics, the loop-lag meter and the status
// file.
//
// Run() returns the process exit code. A bad config at start is fatal (exit 2); a bad config
// at reload is reported and the running one stays.

#include <uv.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "daemon/api.h"
#include "daemon/config.h"
#include "daemon/engine.h"
#include "daemon/fleet_leader.h"
#include "daemon/fleet_member.h"
#include "daemon/fleet_slots.h"
#include "daemon/fs_watch.h"
#include "daemon/guardian_metrics.h"
#include "daemon/http_client.h"
#include "daemon/http_server.h"
#include "daemon/loop_lag.h"
#include "daemon/notify.h"
#include "daemon/self_check.h"
#include "daemon/store_thread.h"
#include "daemon/supervisor.h"
#include "daemon/timer.h"
#include "plugins/playbook_library.h"

namespace guardian {

// A config checked against what only the daemon knows (detectors, playbooks), with the
// playbook scan it was checked against, ready to install.
struct ValidatedConfig {
  ConfigLoad load;
  PlaybookLibrary::ScanResult scan;
  std::vector<std::string> playbook_errors;
};
// Blocking and self-contained: safe on the thread pool. `running` (playbook name -> mode) is
// what the daemon has installed: a check whose playbook file fails to load now is accepted if
// a previous good version of it is running, since that version stays in use.
ValidatedConfig LoadValidated(const std::string& path,
                              const std::map<std::string, std::vector<std::string>>& running = {});

// Loads a config and checks what only the daemon's registries know (detectors, playbooks);
// installs the playbooks found into `playbooks`.
ConfigLoad LoadAndValidate(const std::string& path, PlaybookLibrary* playbooks,
                           std::vector<std::string>* playbook_errors);

// `guardiand --check-config` and `guardian check-config`: prints every error to stderr and
// returns 2, or prints a summary and returns 0.
int CheckConfigCommand(const std::string& path);

class Daemon {
 public:
  explicit Daemon(std::string config_path) : config_path_(std::move(config_path)) {}
  int Run();

 private:
  using ReloadDone = std::function<void(Status, nlohmann::json)>;
  // SIGHUP and POST /v1/reload. `done` (may be empty) gets the outcome of a reload that
  // started after this call: a reload asked for while one runs is queued behind it.
  void Reload(ReloadDone done = nullptr);
  // Installs a validated config, or reports why not; the running config stays on error.
  Status ApplyReload(ValidatedConfig v, nlohmann::json* result);
  Status StartApi();
  ApiBackend MakeApiBackend();
  // The status snapshot served by /v1/status and written to status.json.
  nlohmann::json StatusJson() const;
  void AddStatusFields(nlohmann::json* j) const;  // the daemon's own fields of the snapshot
  nlohmann::json HealthJson() const;
  void Stop();
  void WatchPlaybookDirs();
  void RescanPlaybooks();
  void WriteStatus();
  void CloseAll();
  // Joins the fleet when the config has a `fleet:` section (docs/fleet.md).
  void StartFleet();
  // GET /v1/fleet: the fleet as etcd holds it now, and this host's part in it.
  void FleetJson(std::function<void(Status, nlohmann::json)> done);
  // The watchdog's health function: loop stalls and a store round trip (SelfCheck).
  std::string SelfCheckWatchdog();
  // Walks the audit trail's hash chain on the store thread; logs and keeps (audit_) the verdict.
  void VerifyAuditTrail();
  // Logs a service's lifecycle event and records it in the audit trail.
  void OnServiceEvent(const Service& service, const ServiceEvent& event);
  // systemd STATUS= text: "N checks, M playbooks, K open incidents" (+ "; " + status_note_).
  std::string NotifyStatus() const;

  std::string config_path_;
  uv_loop_t loop_{};
  std::shared_ptr<const Config> config_;
  std::unique_ptr<StoreThread> store_;
  std::unique_ptr<PlaybookLibrary> playbooks_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<Supervisor> supervisor_;
  std::unique_ptr<HttpClient> http_client_;    // probes and playbooks; closed in CloseAll
  std::unique_ptr<FleetMember> fleet_;         // with a `fleet:` section; closed in CloseAll
  std::unique_ptr<FleetSlots> fleet_slots_;    // the engine's; destroyed before fleet_
  std::unique_ptr<FleetLeader> fleet_leader_;  // the election; destroyed before fleet_
  std::unique_ptr<LoopLag> lag_;
  std::unique_ptr<Timer> status_timer_;
  std::unique_ptr<Timer> playbook_rescan_;
  std::unique_ptr<GuardianMetrics> metrics_;
  std::unique_ptr<Api> api_;
  std::vector<std::unique_ptr<HttpServer>> http_;
  std::string api_socket_;                    // unlinked at exit
  ApiConfig api_config_;                      // as started; changes need a restart
  std::vector<std::string> config_errors_;    // of the last rejected reload, until one succeeds
  std::vector<std::string> playbook_errors_;  // of the last playbook scan
  // The audit trail's chain as checked at start: {"ok": null} until the check is done.
  nlohmann::json audit_ = {{"ok", nullptr}};
  std::vector<ReloadDone> reload_waiters_;  // answered by the reload in flight
  std::vector<ReloadDone> reload_next_;     // answered by the one queued behind it
  std::unique_ptr<Notifier> notifier_;      // sd_notify; a no-op outside systemd
  std::unique_ptr<SelfCheck> self_check_;   // whether the watchdog may be pinged
  std::string status_note_;                 // e.g. the last reload's rejection, until one succeeds
  std::vector<std::unique_ptr<FsWatch>> playbook_watchers_;
  uv_signal_t sigterm_{}, sigint_{}, sighup_{};
  bool stopping_ = false;
  bool status_write_in_flight_ = false;
  bool rescan_in_flight_ = false;
  bool reload_in_flight_ = false;
  bool reload_again_ = false;
  bool rescan_again_ = false;
  int64_t started_at_ = 0;
  int lock_fd_ = -1;
};

}  // namespace guardian
