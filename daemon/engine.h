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

#include "daemon/check_runtime.h"
#include "daemon/clock.h"
#include "daemon/config.h"
#include "daemon/store.h"
#include "daemon/store_thread.h"
#include "plugins/playbook_library.h"

namespace guardian {

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

  // Status snapshot for the status file.
  nlohmann::json StatusJson() const;
  size_t running_playbooks() const;

 private:
  struct Incident;
  void OnObservation(CheckRuntime* check, const Observation& obs);
  void Open(CheckRuntime* check, const Observation& obs);
  void StartAttempt(Incident* inc);
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
  CheckRuntime* FindCheck(const std::string& id);
  void CloseCheck(std::unique_ptr<CheckRuntime> check);
  void MaybeShutdownDone();

  uv_loop_t* loop_;
  StoreThread* store_;
  PlaybookLibrary* playbooks_;
  const Clock* clock_;
  std::shared_ptr<const Config> config_;
  std::map<std::string, std::unique_ptr<CheckRuntime>> checks_;
  std::map<int64_t, std::unique_ptr<Incident>> incidents_;
  std::map<std::string, std::map<std::string, std::string>> values_;  // per check, cached
  std::set<std::string> opening_;  // checks whose incident is being recorded
  int closing_checks_ = 0;
  bool shutting_down_ = false;
  std::function<void()> shutdown_done_;
};

}  // namespace guardian
