#pragma once
// Engine: turns confirmed failures into incidents and drives each incident's playbook:
//   backup -> remediate -> verify -> probe (re-run the detector)
//     healthy      -> resolved (recovered_at, MTTR)
//     any failure  -> rollback, then retry after backoff within the check's budget,
//                     else escalated: the check is held until an operator releases it.
// Every step is journaled as `running` (and that write completed) before it acts. Incidents
// left unfinished by a crash or stop are resumed at start: re-probed, rolled back if a
// remediation was cut short, and retried or escalated; none is left running.
//
// Thread: loop thread only.

#include <uv.h>

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "daemon/backoff.h"
#include "daemon/check_runtime.h"
#include "daemon/clock.h"
#include "daemon/config.h"
#include "daemon/guardian_metrics.h"
#include "daemon/listen_table.h"
#include "daemon/store.h"
#include "daemon/store_thread.h"
#include "daemon/timer.h"
#include "plugins/host_api.h"
#include "plugins/playbook_library.h"

namespace guardian {

class PlaybookRun;
class Supervisor;
class HttpClient;
class FleetSlots;

class Engine {
 public:
  Engine(uv_loop_t* loop, StoreThread* store, PlaybookLibrary* playbooks, const Clock* clock);
  ~Engine();

  // Starts, replaces and stops checks to match `config`. Checks whose definition did not
  // change keep running untouched (their health, budget and open incident).
  void Apply(std::shared_ptr<const Config> config);
  // Picks up incidents a previous run left unfinished, and the holds and values it stored.
  void Recover(std::vector<IncidentRecord> unfinished, std::map<std::string, HoldRecord> holds);
  // Per-check values (guardian.state) stored by a previous run.
  void LoadValues(std::map<std::string, std::map<std::string, std::string>> values) {
    values_ = std::move(values);
  }
  // Stops every check and running playbook (running steps are journaled `interrupted`; their
  // incidents resume at the next start), then calls `done` when all handles are closed.
  void Shutdown(std::function<void()> done);

  // Operator controls, from the API. Each is recorded in the store's audit trail.
  // Hold: no new playbook attempt for the check until released (a running phase finishes; its
  // incident then waits, observed, for the check to heal or for a release).
  Status Hold(const std::string& check_id, const std::string& reason, const std::string& actor);
  // Release: lifts any hold (an operator's or an escalation's), resets the check's action
  // budget, and resumes incidents that were waiting on the hold.
  Status Release(const std::string& check_id, const std::string& actor);
  // Run: probes the check now; if it fails (or `force`), opens an incident at once, skipping
  // debounce, and runs its playbook. `done` gets {result, incident?, evidence}.
  void RunNow(const std::string& check_id, bool force, const std::string& actor,
              std::function<void(Status, nlohmann::json)> done);
  // Dry run: the check's playbook, every phase it has, against host functions that record
  // instead of acting (docs/playbook-api.md, "Dry run"). No incident, no budget; allowed while
  // held or observing. `done` gets {dry_run, check, playbook, phases[], actions[]}.
  void DryRun(const std::string& check_id, std::function<void(Status, nlohmann::json)> done);
  // Records an audit event (also used by the daemon for reloads and its start).
  void Audit(const std::string& actor, const std::string& kind, const std::string& check_id,
             const std::string& detail);

  // Where incident and phase events are counted; may stay unset (tests).
  void set_metrics(GuardianMetrics* metrics) { metrics_ = metrics; }
  // The services detectors watch and playbooks restart; set before the first Apply.
  void set_supervisor(Supervisor* supervisor) { supervisor_ = supervisor; }
  // The HTTP client detectors and playbooks share (probes on the loop).
  void set_http(HttpClient* http) { http_ = http; }
  // Fleet mode (docs/fleet.md): a disruptive playbook's attempt first takes a slot of its
  // check's mode (a `fleet_slot` step records the wait), holds it until the attempt ends, and
  // is held observe-only while the host is not connected to the fleet. Unset (or nullptr,
  // before `slots` goes): no fleet.
  void set_fleet(FleetSlots* slots);

  // Status snapshot for the API and metrics.
  nlohmann::json StatusJson() const;
  // The snapshot without `checks`, and `checks` as JSON text (a compact array), for the status
  // file written every second: an entry is serialized again only when what it shows changed,
  // so 1000 quiet checks cost a copy of their text, not 1000 objects built and dumped.
  nlohmann::json StatusJsonWithoutChecks() const;
  // True while the remediation breaker holds every check observe-only.
  bool breaker_open() const { return breaker_open_; }
  // {"open", "max_actions", "window_ms", "actions_in_window"[, "reason", "since", "closes_at"]}
  nlohmann::json BreakerJson() const;
  std::string ChecksStatusText();
  size_t running_playbooks() const;
  size_t open_incidents() const { return incidents_.size(); }

 private:
  struct Incident;
  void OnObservation(CheckRuntime* check, const Observation& obs);
  void Open(CheckRuntime* check, const Observation& obs,
            std::function<void(Status, int64_t)> opened = nullptr);
  // True when playbooks may act on `check` now; otherwise `why` says what stops them.
  // `fleet` false: whether the fleet is reachable does not matter (a rollback undoes this
  // host's own action, which must not wait out a partition).
  bool MayAct(CheckRuntime* check, std::string* why, bool fleet = true) const;
  // Records that the incident waits without acting (observe mode or hold).
  void Observe(Incident* inc, const std::string& why);
  // Journals a step that is over (ended now) and did not act: observe, wait, fleet_slot.
  void RecordStep(Incident* inc, const std::string& phase, int64_t started_at,
                  const std::string& status, const std::string& message);
  // Mid-attempt: if a hold or observe mode now stops its check, the incident waits (Observe,
  // with `context` appended to the reason) and this returns true.
  bool HeldBack(Incident* inc, const std::string& context, bool fleet = true);
  // Destroys `dead` on the next loop turn: callers may be inside its own callback.
  void FreeNextTurn(std::shared_ptr<void> dead);
  void ResumeObserved();
  // Causal suppression (a check's depends_on): before an incident acts, a dependency that is
  // failing (incident open, last look failing, or failing when probed now) is its root cause;
  // the incident is then linked to it (caused_by) and waits without a playbook of its own.
  void Triage(Incident* inc);
  void ProbeDependencies(int64_t id, size_t i);
  void MakeDependent(Incident* inc, const std::string& root_check, int64_t root_id);
  void Unlink(Incident* inc);
  // When a root cause's incident opens or ends: its dependents get its id, or are re-judged.
  void LinkDependents(const std::string& root_check, int64_t root_id);
  void RootEnded(const Incident& root);
  void RecheckDependent(int64_t id, int tries_left);
  // True when a dependency of `check` is failing now (incident open or last look failing).
  std::string FailingDependency(CheckRuntime* check, int64_t* root_id);
  // One playbook attempt at a time per service (the check's params.service): two playbooks
  // restarting one service at once undo each other's work. An incident whose service is being
  // acted on waits (state waiting); when that attempt ends, the longest waiting one re-probes
  // (the other playbook may have healed it too) and then acts. Its `wait` step records it.
  std::string ServiceOf(const std::string& check_id);
  Incident* ActingOn(const std::string& service, int64_t except);
  void WaitTurn(Incident* inc, const Incident& acting, const std::string& service);
  void PassTurn(const std::string& check_id);
  void TakeTurn(int64_t id);
  void StartAttempt(Incident* inc);
  // Fleet slots: whether `playbook` needs one (fleet mode, disruptive; `run`, when an incident
  // has one, is what will act) and, when the host is not connected, why it may not act;
  // taking one before an attempt; giving it back.
  bool NeedsSlot(const std::string& playbook, const PlaybookRun* run = nullptr) const;
  bool FleetStops(const std::string& playbook, std::string* why,
                  const PlaybookRun* run = nullptr) const;
  void TakeSlot(Incident* inc);
  void SlotAnswered(int64_t id, Status s);
  void ReleaseSlot(Incident* inc, const std::string& why);
  void RunStep(Incident* inc, const std::string& phase, std::function<void(Status)> next);
  void ActStep(std::shared_ptr<StepRecord> step, Status journaled,
               std::function<void(Status)> next);
  void ProbeForStep(const std::string& check_id, int tries,
                    std::function<void(Status, std::string)> finish);
  void AfterRemediation(Incident* inc, Status s);
  void Rollback(Incident* inc, const std::string& why);
  void RetryOrEscalate(Incident* inc, const std::string& why);
  void Resolve(Incident* inc, const std::string& reason);
  void Escalate(Incident* inc, const std::string& reason);
  void Persist(Incident* inc);
  void Finish(Incident* inc);
  bool EnsureRun(Incident* inc, std::string* error);
  RunServices ServicesFor(const std::string& check_id, RunServices::LogFn log);
  void DryRunPhase(int64_t key, size_t i, nlohmann::json out,
                   std::function<void(Status, nlohmann::json)> done);
  CheckRuntime* FindCheck(const std::string& id);
  void CloseCheck(std::unique_ptr<CheckRuntime> check);
  void MaybeShutdownDone();
  // The remediation breaker (config breaker): spends one of the actions all checks share, or
  // trips it: every check observe-only until the window has passed. False when it trips.
  bool SpendBreaker();
  void TripBreaker();
  void CloseBreaker();

  uv_loop_t* loop_;
  StoreThread* store_;
  PlaybookLibrary* playbooks_;
  const Clock* clock_;
  std::shared_ptr<const Config> config_;
  ListenTable listen_table_;  // shared by tcp checks with method listen; outlives the checks
  std::map<std::string, std::unique_ptr<CheckRuntime>> checks_;
  // What a check's status entry shows; its text is reused while this stays equal.
  struct StatusKey {
    const CheckRuntime* check = nullptr;
    std::string mode;
    int64_t interval_ms = 0;
    int64_t target_ms = 0;
    Observation::Health health = Observation::Health::kUnknown;
    std::string evidence;
    bool degraded = false;
    std::map<std::string, double> gauges;
    bool held = false;
    std::string hold_reason;
    int64_t incident = 0;
    int64_t hold_since = 0;
    int budget_remaining = 0;
    int budget_spent = 0;
    bool operator==(const StatusKey&) const = default;
  };
  struct StatusEntry {
    StatusKey key;
    std::string text;
  };
  std::map<std::string, StatusEntry> status_cache_;
  static StatusKey StatusKeyOf(CheckRuntime& c);
  static bool SameStatus(const StatusKey& k, CheckRuntime& c);
  nlohmann::json CheckStatusJson(const std::string& id, CheckRuntime& c) const;
  std::map<int64_t, std::unique_ptr<Incident>> incidents_;
  std::map<std::string, std::map<std::string, std::string>> values_;  // per check, cached
  std::map<int64_t, std::unique_ptr<PlaybookRun>> dry_runs_;
  int64_t dry_run_seq_ = 0;
  std::set<std::string> opening_;                 // checks whose incident is being recorded
  std::map<std::string, int64_t> last_incident_;  // per check, the newest incident's id
  int closing_checks_ = 0;
  bool shutting_down_ = false;
  std::function<void()> shutdown_done_;
  mutable ActionBudget breaker_;  // mutable: reading what was spent drops what expired
  bool breaker_open_ = false;
  std::string breaker_reason_;
  int64_t breaker_since_ = 0;             // wall ms it tripped
  int64_t breaker_closes_at_ = 0;         // wall ms it closes by itself
  std::unique_ptr<Timer> breaker_timer_;  // while open; closed by Shutdown with the rest
  GuardianMetrics* metrics_ = nullptr;
  Supervisor* supervisor_ = nullptr;
  HttpClient* http_ = nullptr;
  FleetSlots* fleet_ = nullptr;
};

}  // namespace guardian
