#include "daemon/engine.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <iterator>

#include "daemon/crash_point.h"
#include "daemon/fleet_slots.h"
#include "daemon/modes.h"
#include "daemon/timer.h"
#include "plugins/dry_run.h"
#include "plugins/playbook_run.h"

namespace guardian {
namespace fs = std::filesystem;

namespace {
// Holds set by escalation (as opposed to an operator's) lift themselves when the check is seen
// healthy or a budget window (window_ms) has passed since the hold, so "gave up" is never a state
// only a human can leave.
constexpr const char* kAutoHoldPrefix = "escalated: ";

// How often an incident waiting for its service's turn looks again, should no end of the
// other attempt wake it first.
constexpr int64_t kTurnRecheckMs = 5000;

// How soon a slot refused on a late keep-alive (the host still connected) is asked for again.
constexpr int64_t kSlotRetryMs = 1000;
// Attempts a lost fleet slot may cut short without counting against the playbook's retries.
constexpr int kMaxSlotLosses = 3;

bool IsAutoHold(const std::string& reason) { return reason.rfind(kAutoHoldPrefix, 0) == 0; }
}  // namespace

struct Engine::Incident {
  IncidentRecord rec;
  std::unique_ptr<PlaybookRun> run;
  std::unique_ptr<Timer> retry_timer;
  int attempt = 0;
  bool remediate_started = false;
  // 1 when this process resumed it from an attempt a crash cut short: that attempt was not the
  // playbook's failure, so one more is allowed. One per restart, with attempts kept in the
  // store, so a playbook that crashes the daemon each time still ends escalated.
  int interrupted = 0;
  bool observing = false;  // waits without acting (observe mode or hold); resolves on health
  bool dependent = false;  // caused by root_check's failure (depends_on): waits, never acts
  // Its dependencies are being probed (Triage): resumed once, not again by every trigger of
  // ResumeObserved (a reconnect, a release, a reload) that comes before the answers.
  bool triaging = false;
  std::string root_check;
  int64_t waiting_since = 0;           // waits for its service's turn (WaitTurn), since then
  std::string waiting_for;             // why, for its `wait` step
  std::vector<std::string> log_lines;  // the current phase's guardian.log lines
  // Fleet slot (set_fleet): asked for since slot_since (0: not asked), granted when slot_held;
  // slot_wait_why is the last reason to wait (empty: granted at once).
  int64_t slot_since = 0;
  bool slot_held = false;
  int slot_losses = 0;  // attempts stopped before remediate by a lost slot: not the playbook's
  std::string slot_wait_why;
  std::string SlotHolder() const { return "incident " + std::to_string(rec.id); }
};

Engine::Engine(uv_loop_t* loop, StoreThread* store, PlaybookLibrary* playbooks, const Clock* clock)
    : loop_(loop),
      store_(store),
      playbooks_(playbooks),
      clock_(clock),
      listen_table_(loop),
      breaker_(Budget{}, clock) {}

Engine::~Engine() = default;

CheckRuntime* Engine::FindCheck(const std::string& id) {
  auto it = checks_.find(id);
  return it == checks_.end() ? nullptr : it->second.get();
}

static bool SameCheck(const CheckConfig& a, const CheckConfig& b) {
  return a.id == b.id && a.mode == b.mode && a.interval_ms == b.interval_ms &&
         a.debounce == b.debounce && a.jitter == b.jitter && a.target_ms == b.target_ms &&
         a.playbook == b.playbook && a.retries == b.retries &&
         a.budget.max_actions == b.budget.max_actions && a.budget.window_ms == b.budget.window_ms &&
         a.params == b.params && a.depends_on == b.depends_on && a.run_as == b.run_as &&
         a.env == b.env && a.programs == b.programs;
}

void Engine::Apply(std::shared_ptr<const Config> config) {
  config_ = config;
  breaker_.set_budget(config->breaker);
  std::map<std::string, const CheckConfig*> wanted;
  for (const auto& c : config->checks) wanted[c.id] = &c;

  // Stop checks that are gone or changed; an open incident keeps its own copy of what it needs.
  for (auto it = checks_.begin(); it != checks_.end();) {
    auto w = wanted.find(it->first);
    if (w != wanted.end() && SameCheck(*w->second, it->second->config())) {
      ++it;
      continue;
    }
    spdlog::info("check {}: {}", it->first,
                 w == wanted.end() ? "removed" : "changed; restarting it");
    CloseCheck(std::move(it->second));
    it = checks_.erase(it);
  }
  for (const auto& c : config->checks) {
    if (checks_.count(c.id)) continue;
    const DetectorFactory* f = DetectorRegistry::Get().Find(c.mode);
    if (f == nullptr) continue;  // the config loader already refused this
    DetectorEnv env;
    env.loop = loop_;
    env.supervisor = supervisor_;
    env.http = http_;
    env.listen_table = &listen_table_;
    env.check = c;
    if (const ServiceConfig* svc = config->FindService(ParamString(c.params, "service")))
      env.service = *svc;
    env.check_state_dir = (fs::path(config->state_dir) / "checks" / c.id).string();
    std::error_code ec;
    fs::create_directories(env.check_state_dir, ec);
    auto check = std::make_unique<CheckRuntime>(
        loop_, c, env.check_state_dir, f->make(env), clock_,
        [this](CheckRuntime* ch, const Observation& o) { OnObservation(ch, o); });
    // A restarted check inherits the open (or opening) incident of its previous definition.
    if (opening_.count(c.id)) check->incident_id = -1;
    for (const auto& [id, inc] : incidents_) {
      if (inc->rec.check_id == c.id) check->incident_id = id;
    }
    check->Start();
    checks_[c.id] = std::move(check);
  }
  ResumeObserved();
}

void Engine::ResumeObserved() {
  // Incidents that waited on observe mode or a hold act once nothing stops them any more.
  std::vector<int64_t> ready;
  for (const auto& [id, inc] : incidents_) {
    CheckRuntime* check = FindCheck(inc->rec.check_id);
    std::string why;
    // A removed check's incident goes too: StartAttempt escalates it as no longer configured.
    if (inc->observing && !inc->dependent && !inc->triaging && (!check || MayAct(check, &why)))
      ready.push_back(id);
  }
  for (int64_t id : ready) {
    auto it = incidents_.find(id);
    if (it == incidents_.end()) continue;
    spdlog::info("incident {} ({}): acting again", id, it->second->rec.check_id);
    // One that never acted is judged first: a root cause it depends on may be failing now.
    if (it->second->attempt == 0)
      Triage(it->second.get());
    else
      StartAttempt(it->second.get());
  }
}

void Engine::Audit(const std::string& actor, const std::string& kind, const std::string& check_id,
                   const std::string& detail) {
  EventRecord e{0, clock_->WallMs(), actor, kind, check_id, detail, ""};
  store_->Submit([e](Store& s) { return s.AddEvent(e); },
                 [kind](Status s) {
                   if (!s.ok()) spdlog::error("audit {}: cannot record: {}", kind, s.ToString());
                 });
}

Status Engine::Hold(const std::string& check_id, const std::string& reason,
                    const std::string& actor) {
  CheckRuntime* check = FindCheck(check_id);
  if (!check) return Status::NotFound("no check '" + check_id + "'");
  if (reason.empty()) return Status::InvalidArgument("a hold needs a reason");
  int64_t now = clock_->WallMs();
  check->Hold(reason, now);
  store_->Submit([check_id, reason, now](Store& s) { return s.SetHold(check_id, reason, now); });
  Audit(actor, "hold", check_id, reason);
  spdlog::warn("check {}: held by {}: {}", check_id, actor, reason);
  return Status::OK();
}

Status Engine::Release(const std::string& check_id, const std::string& actor) {
  CheckRuntime* check = FindCheck(check_id);
  if (!check) return Status::NotFound("no check '" + check_id + "'");
  std::string was = check->held() ? check->hold_reason() : "not held";
  check->Release();
  check->budget().Reset();
  if (check->incident_id == 0) check->health().Reset();
  store_->Submit([check_id](Store& s) { return s.ClearHold(check_id); });
  Audit(actor, "release", check_id, was);
  spdlog::info("check {}: released by {} (was: {})", check_id, actor, was);
  ResumeObserved();
  return Status::OK();
}

void Engine::RunNow(const std::string& check_id, bool force, const std::string& actor,
                    std::function<void(Status, nlohmann::json)> done) {
  CheckRuntime* check = FindCheck(check_id);
  if (!check) return done(Status::NotFound("no check '" + check_id + "'"), nullptr);
  std::string why;
  if (!MayAct(check, &why)) return done(Status::Busy(why), nullptr);
  if (check->incident_id != 0) {
    return done(Status::Busy("incident " + std::to_string(check->incident_id) +
                             " is already open for this check"),
                nullptr);
  }
  check->ProbeOnce([this, check_id, force, actor, done](Observation obs) {
    CheckRuntime* check = FindCheck(check_id);
    if (shutting_down_) return done(Status::Aborted("guardiand is stopping"), nullptr);
    if (!check) return done(Status::NotFound("check '" + check_id + "' was removed"), nullptr);
    if (obs.health == Observation::Health::kUnknown) {
      // e.g. a reload restarted the check mid-probe: unknown is not failing, so do not act.
      return done(Status::Busy("the probe was inconclusive (" + obs.evidence + "); try again"),
                  nullptr);
    }
    nlohmann::json out = {{"check", check_id}, {"evidence", obs.evidence}, {"healthy", obs.ok()}};
    if (obs.ok() && !force) {
      out["result"] = "healthy";
      return done(Status::OK(), out);
    }
    if (check->incident_id != 0) {
      return done(
          Status::Busy("incident " + std::to_string(check->incident_id) + " opened meanwhile"),
          nullptr);
    }
    Observation o = obs;
    if (o.ok()) o = Observation::Failing("run by " + actor + " (forced; the check was healthy)");
    Audit(actor, "run", check_id, force ? "forced" : o.evidence);
    Open(check, o, [out, done](Status s, int64_t id) mutable {
      if (!s.ok()) return done(s, nullptr);
      out["result"] = "opened";
      out["incident"] = id;
      done(Status::OK(), out);
    });
  });
}

void Engine::CloseCheck(std::unique_ptr<CheckRuntime> check) {
  ++closing_checks_;
  CheckRuntime* raw = check.release();
  raw->Close([this, raw] {
    delete raw;
    --closing_checks_;
    MaybeShutdownDone();
  });
}

void Engine::OnObservation(CheckRuntime* check, const Observation& obs) {
  if (shutting_down_) return;
  if (check->incident_id != 0) {
    // The incident's own probe decides, unless it only observes: then health ends it.
    auto it = incidents_.find(check->incident_id);
    if (it != incidents_.end() && it->second->observing && obs.ok()) {
      Incident* inc = it->second.get();
      Resolve(inc, "recovered without action (" + inc->rec.reason + ")");
    } else if (it != incidents_.end() && it->second->slot_since && !it->second->slot_held &&
               obs.ok()) {
      Incident* inc = it->second.get();
      Resolve(inc, "healthy again while " + inc->rec.reason);
    } else if (it != incidents_.end() && it->second->dependent && obs.failing()) {
      // Still failing with its root cause fine again (say it healed without an incident):
      // this failure is its own after all.
      int64_t root_id = 0;
      if (FailingDependency(check, &root_id).empty()) {
        Unlink(it->second.get());
        Triage(it->second.get());
      }
    }
    return;
  }
  auto t = check->health().Observe(obs, clock_->WallMs());
  if (check->held()) {
    // A full window without actions is the cool-down; lifting sooner would let a fault that
    // defeats its playbook loop through incidents.
    bool cooled_down = clock_->WallMs() - check->hold_since() >= check->config().budget.window_ms;
    bool lift =
        IsAutoHold(check->hold_reason()) && (obs.ok() || cooled_down || !obs.new_input.empty());
    if (!lift) return;
    std::string why = obs.ok()                 ? "check is healthy again"
                      : !obs.new_input.empty() ? "new input: " + obs.new_input
                                               : "a budget window has passed since the hold";
    spdlog::info("check {}: hold lifted ({})", check->config().id, why);
    check->Release();
    check->health().Reset();
    std::string id = check->config().id;
    store_->Submit([id](Store& s) { return s.ClearHold(id); });
    Audit("guardiand", "release", id, why);
    if (!obs.ok()) t = check->health().Observe(obs, clock_->WallMs());
  }
  if (t == CheckHealth::Transition::kConfirmed) Open(check, obs);
}

void Engine::Open(CheckRuntime* check, const Observation& obs,
                  std::function<void(Status, int64_t)> opened) {
  auto inc = std::make_unique<Incident>();
  const CheckConfig& c = check->config();
  inc->rec.check_id = c.id;
  inc->rec.mode = c.mode;
  inc->rec.state = kStateOpen;
  inc->rec.detected_at = clock_->WallMs();
  // An operator's run may open an incident before debounce saw any failure.
  inc->rec.onset_at =
      check->health().onset_ms() ? check->health().onset_ms() : inc->rec.detected_at;
  inc->rec.target_ms = c.target_ms;
  inc->rec.playbook = c.playbook;
  inc->rec.evidence = obs.evidence;
  spdlog::warn("check {}: {} confirmed: {}", c.id, c.mode, obs.evidence);
  check->incident_id = -1;  // opening: ignore observations until the incident exists
  opening_.insert(c.id);
  inc->rec.id = store_->NewIncidentId();
  auto rec = std::make_shared<IncidentRecord>(inc->rec);
  Incident* raw = inc.release();
  store_->Submit([rec](Store& s) { return s.InsertIncident(rec.get()); },
                 [this, raw, rec, opened](Status s) {
                   std::unique_ptr<Incident> inc(raw);
                   opening_.erase(inc->rec.check_id);
                   CheckRuntime* check = FindCheck(inc->rec.check_id);
                   if (!s.ok()) {
                     // Without a journal row we must not act: nothing would record what we did.
                     spdlog::error(
                         "check {}: cannot record incident ({}); will retry on the next failure",
                         inc->rec.check_id, s.ToString());
                     if (check) {
                       check->incident_id = 0;
                       check->health().Reset();
                     }
                     if (opened) opened(s, 0);
                     return;
                   }
                   CrashPoint("incident", "opened");
                   inc->rec.id = rec->id;
                   int64_t id = rec->id;
                   if (check) check->incident_id = id;
                   if (metrics_) metrics_->IncidentOpened(inc->rec.mode);
                   std::string check_id = inc->rec.check_id;
                   last_incident_[check_id] = id;
                   incidents_[id] = std::move(inc);
                   if (opened) opened(Status::OK(), id);
                   if (shutting_down_) return;  // resumed at the next start
                   LinkDependents(check_id, id);
                   Triage(incidents_[id].get());
                 });
}

RunServices Engine::ServicesFor(const std::string& check_id, RunServices::LogFn log) {
  RunServices services;
  services.supervisor = supervisor_;
  services.http = http_;
  services.probe = [this, check_id](std::function<void(Observation)> done) {
    CheckRuntime* ch = FindCheck(check_id);
    if (!ch) {
      done(Observation::Unknown("check is no longer configured"));
      return;
    }
    ch->ProbeOnce(std::move(done));
  };
  services.get_value = [this, check_id](const std::string& key) {
    auto& m = values_[check_id];
    auto it = m.find(key);
    return it == m.end() ? std::string() : it->second;
  };
  services.set_value = [this, check_id](const std::string& key, const std::string& value) {
    auto& m = values_[check_id];
    if (m.size() >= 256 && !m.count(key)) {
      return Status::InvalidArgument("check '" + check_id + "' already keeps 256 values");
    }
    m[key] = value;
    store_->Submit([check_id, key, value](Store& s) { return s.SetValue(check_id, key, value); });
    return Status::OK();
  };
  services.log = std::move(log);
  CheckRuntime* ch = FindCheck(check_id);
  std::string actor = "playbook:" + (ch ? ch->config().playbook : std::string("?"));
  services.audit = [this, check_id, actor](const std::string& action) {
    Audit(actor, "action", check_id, action);
  };
  return services;
}

void Engine::DryRun(const std::string& check_id, std::function<void(Status, nlohmann::json)> done) {
  if (shutting_down_) return done(Status::Aborted("guardiand stopping"), nullptr);
  CheckRuntime* check = FindCheck(check_id);
  if (!check) return done(Status::NotFound("no check '" + check_id + "'"), nullptr);
  auto pb = playbooks_->Find(check->config().playbook);
  if (!pb) {
    return done(Status::NotFound("playbook '" + check->config().playbook + "' is not loaded"),
                nullptr);
  }
  RunServices services =
      ServicesFor(check_id, [check_id](const std::string& level, const std::string& line) {
        spdlog::log(spdlog::level::from_str(level), "dry run ({}): {}", check_id, line);
      });
  services.dry_run = true;
  auto run = std::make_unique<PlaybookRun>(loop_, pb, check->config(), check->state_dir(),
                                           config_->playbook_limits, std::move(services));
  Status s = run->Start(0, check->last_observation().evidence);
  if (!s.ok()) return done(Status::IOError("playbook failed to start: " + s.message()), nullptr);
  spdlog::info("dry run of {} ({})", check_id, pb->name);
  int64_t key = ++dry_run_seq_;
  dry_runs_[key] = std::move(run);
  nlohmann::json out = {{"dry_run", true},
                        {"check", check_id},
                        {"playbook", pb->name},
                        {"phases", nlohmann::json::array()}};
  DryRunPhase(key, 0, std::move(out), std::move(done));
}

void Engine::DryRunPhase(int64_t key, size_t i, nlohmann::json out,
                         std::function<void(Status, nlohmann::json)> done) {
  // Every phase runs, rollback too, so the operator sees all that the playbook could do.
  static const char* const kPhases[] = {"backup", "remediate", "verify", "rollback"};
  auto it = dry_runs_.find(key);
  if (it == dry_runs_.end()) return done(Status::Aborted("guardiand stopping"), nullptr);
  PlaybookRun* run = it->second.get();
  for (; i < std::size(kPhases) && !run->HasPhase(kPhases[i]); ++i) {
    out["phases"].push_back({{"phase", kPhases[i]}, {"status", "absent"}, {"message", ""}});
  }
  if (i == std::size(kPhases)) {
    out["actions"] = DryRunJson(run->recorded());
    // We may be inside this run's own callback: free it on the next loop turn.
    FreeNextTurn(std::shared_ptr<PlaybookRun>(it->second.release()));
    dry_runs_.erase(it);
    return done(Status::OK(), std::move(out));
  }
  run->RunPhase(kPhases[i], 1, [this, key, i, out, done](Status s, std::string message) mutable {
    if (shutting_down_) return done(Status::Aborted("guardiand stopping"), nullptr);
    out["phases"].push_back({{"phase", kPhases[i]},
                             {"status", s.ok() ? "ok" : "failed"},
                             {"message", s.ok() ? message : s.message()}});
    DryRunPhase(key, i + 1, std::move(out), std::move(done));
  });
}

bool Engine::EnsureRun(Incident* inc, std::string* error) {
  if (inc->run) return true;
  CheckRuntime* check = FindCheck(inc->rec.check_id);
  if (!check) {
    *error = "check '" + inc->rec.check_id + "' is no longer configured";
    return false;
  }
  auto pb = playbooks_->Find(inc->rec.playbook);
  if (!pb) {
    *error = "playbook '" + inc->rec.playbook + "' is not loaded";
    return false;
  }
  std::string check_id = check->config().id;
  int64_t id = inc->rec.id;
  RunServices services = ServicesFor(
      check_id, [this, id, check_id](const std::string& level, const std::string& line) {
        spdlog::log(spdlog::level::from_str(level), "incident {} ({}): {}", id, check_id, line);
        auto it = incidents_.find(id);
        if (it != incidents_.end() && it->second->log_lines.size() < 20)
          it->second->log_lines.push_back(line);
      });
  inc->run = std::make_unique<PlaybookRun>(loop_, pb, check->config(), check->state_dir(),
                                           config_->playbook_limits, std::move(services));
  Status s = inc->run->Start(inc->rec.id, inc->rec.evidence);
  if (!s.ok()) {
    inc->run.reset();
    *error = "playbook failed to start: " + s.message();
    return false;
  }
  return true;
}

bool Engine::MayAct(CheckRuntime* check, std::string* why, bool fleet) const {
  if (config_ && config_->observe) {
    *why = "observe mode: guardiand records incidents and takes no action";
    return false;
  }
  if (check->held()) {
    *why = "check held: " + check->hold_reason();
    return false;
  }
  return !fleet || !FleetStops(check->config().playbook, why);
}

bool Engine::SpendBreaker() {
  if (breaker_.TrySpend()) return true;
  TripBreaker();
  return false;
}

void Engine::TripBreaker() {
  const Budget& b = config_->breaker;
  breaker_open_ = true;
  breaker_since_ = clock_->WallMs();
  breaker_closes_at_ = breaker_since_ + b.window_ms;
  breaker_reason_ = "remediation breaker open: " + std::to_string(b.max_actions) +
                    " playbook attempts across all checks within " +
                    std::to_string(b.window_ms / 1000) +
                    " s; observe-only until it closes by itself after " +
                    std::to_string(b.window_ms / 1000) + " s";
  spdlog::error("{}", breaker_reason_);
  Audit("guardiand", "breaker_open", "", breaker_reason_);
  // Attempts already under way were allowed and run to their end: stopping them between
  // backup and remediate would waste what they spent and leave their checks broken.
  breaker_timer_ = std::make_unique<Timer>(loop_);
  breaker_timer_->Start(b.window_ms, [this] { CloseBreaker(); });
}

void Engine::CloseBreaker() {
  if (!breaker_open_) return;
  breaker_open_ = false;
  breaker_reason_.clear();
  FreeNextTurn(std::move(breaker_timer_));  // we are in its callback
  breaker_.Reset();                         // what tripped it is the past window's
  spdlog::warn("remediation breaker closed after {} s: acting again",
               (clock_->WallMs() - breaker_since_) / 1000);
  Audit("guardiand", "breaker_closed", "", "");
  ResumeObserved();
}

nlohmann::json Engine::BreakerJson() const {
  const Budget& b = config_ ? config_->breaker : Budget{};
  nlohmann::json j = {{"open", breaker_open_},
                      {"max_actions", b.max_actions},
                      {"window_ms", b.window_ms},
                      {"actions_in_window", breaker_.spent()}};
  if (breaker_open_) {
    j["reason"] = breaker_reason_;
    j["since"] = breaker_since_;
    j["closes_at"] = breaker_closes_at_;
  }
  return j;
}

void Engine::Observe(Incident* inc, const std::string& why) {
  ReleaseSlot(inc, "not acting");
  bool was = inc->observing;
  bool was_acting = inc->rec.state == kStateRunning;
  inc->observing = true;
  inc->rec.state = kStateOpen;
  inc->rec.reason = why;
  Persist(inc);
  if (was_acting) PassTurn(inc->rec.check_id);
  if (was) return;
  spdlog::warn("incident {} ({}): not acting: {}", inc->rec.id, inc->rec.check_id, why);
  RecordStep(inc, "observe", clock_->WallMs(), "skipped", why);
}

void Engine::RecordStep(Incident* inc, const std::string& phase, int64_t started_at,
                        const std::string& status, const std::string& message) {
  auto step = std::make_shared<StepRecord>();
  step->id = store_->NewStepId();
  step->incident_id = inc->rec.id;
  step->attempt = inc->attempt;
  step->phase = phase;
  step->started_at = started_at;
  step->ended_at = clock_->WallMs();
  step->status = status;
  step->message = message;
  store_->Submit([step](Store& s) { return s.InsertStep(step.get()); });
}

bool Engine::HeldBack(Incident* inc, const std::string& context, bool fleet) {
  CheckRuntime* check = FindCheck(inc->rec.check_id);
  std::string why;
  if (!check || MayAct(check, &why, fleet)) return false;
  Observe(inc, why + context);
  return true;
}

void Engine::FreeNextTurn(std::shared_ptr<void> dead) {
  auto* timer = new Timer(loop_);
  timer->Start(0, [timer, dead]() mutable {
    dead.reset();
    delete timer;
  });
}

std::string Engine::FailingDependency(CheckRuntime* check, int64_t* root_id) {
  for (const auto& dep_id : check->config().depends_on) {
    CheckRuntime* dep = FindCheck(dep_id);
    if (!dep) continue;
    // -1: its incident is being recorded (the id comes through LinkDependents). Degraded: its
    // playbook holds it in a degraded mode while the fault lasts (offline mode, say).
    const Observation& last = dep->last_observation();
    if (dep->incident_id != 0 || last.failing() || last.degraded) {
      *root_id = dep->incident_id > 0 ? dep->incident_id : 0;
      // Degraded with no incident open: the one that put it in that mode is the root cause.
      if (*root_id == 0 && last.degraded) {
        auto it = last_incident_.find(dep_id);
        if (it != last_incident_.end()) *root_id = it->second;
      }
      return dep_id;
    }
  }
  return "";
}

void Engine::Triage(Incident* inc) {
  CheckRuntime* check = FindCheck(inc->rec.check_id);
  if (!check || check->config().depends_on.empty()) return StartAttempt(inc);
  int64_t root_id = 0;
  std::string root = FailingDependency(check, &root_id);
  if (!root.empty()) return MakeDependent(inc, root, root_id);
  // None known to fail: ask each now, since a root cause may have broken since its last probe.
  inc->triaging = true;
  ProbeDependencies(inc->rec.id, 0);
}

void Engine::ProbeDependencies(int64_t id, size_t i) {
  auto it = incidents_.find(id);
  if (it == incidents_.end() || shutting_down_) return;
  CheckRuntime* check = FindCheck(it->second->rec.check_id);
  if (!check || i >= check->config().depends_on.size()) {
    it->second->triaging = false;
    return StartAttempt(it->second.get());
  }
  std::string dep_id = check->config().depends_on[i];
  CheckRuntime* dep = FindCheck(dep_id);
  if (!dep) return ProbeDependencies(id, i + 1);
  dep->ProbeOnce([this, id, i, dep_id](Observation obs) {
    auto it = incidents_.find(id);
    if (it == incidents_.end() || shutting_down_) return;
    if (!obs.failing()) return ProbeDependencies(id, i + 1);
    it->second->triaging = false;
    CheckRuntime* dep = FindCheck(dep_id);
    MakeDependent(it->second.get(), dep_id, dep && dep->incident_id > 0 ? dep->incident_id : 0);
    if (dep && dep->incident_id == 0) dep->ProbeNow();  // its own incident, without delay
  });
}

void Engine::MakeDependent(Incident* inc, const std::string& root_check, int64_t root_id) {
  inc->dependent = true;
  inc->root_check = root_check;
  inc->rec.caused_by = root_id;
  spdlog::warn("incident {} ({}): caused by check {}{}; no playbook of its own", inc->rec.id,
               inc->rec.check_id, root_check,
               root_id ? " (incident " + std::to_string(root_id) + ")" : "");
  Observe(inc, "caused by check " + root_check + ", which it depends on: no playbook of its own");
}

void Engine::Unlink(Incident* inc) {
  // The root cause did not explain it after all: the record says so (caused_by cleared).
  inc->dependent = false;
  inc->observing = false;
  inc->root_check.clear();
  inc->rec.caused_by = 0;
}

void Engine::LinkDependents(const std::string& root_check, int64_t root_id) {
  for (auto& [id, inc] : incidents_) {
    if (inc->dependent && inc->root_check == root_check && inc->rec.caused_by == 0) {
      inc->rec.caused_by = root_id;
      Persist(inc.get());
    }
  }
}

void Engine::RootEnded(const Incident& root) {
  bool healed = root.rec.state == kStateResolved;
  for (auto& [id, inc] : incidents_) {
    if (!inc->dependent || inc->root_check != root.rec.check_id) continue;
    // Escalated: the root cause stays broken and held; its dependents wait on their health.
    if (healed) RecheckDependent(id, 3);
  }
}

void Engine::RecheckDependent(int64_t id, int tries_left) {
  auto it = incidents_.find(id);
  if (it == incidents_.end() || shutting_down_ || !it->second->dependent) return;
  // Its own probe says whether the root cause's heal was its heal too. A dependent may take a
  // moment to follow (a reconnect), so it gets a few probe periods before it counts as its own.
  ProbeForStep(it->second->rec.check_id, 2, [this, id, tries_left](Status s, std::string) {
    auto it = incidents_.find(id);
    if (it == incidents_.end() || shutting_down_ || !it->second->dependent) return;
    Incident* inc = it->second.get();
    if (s.ok()) {
      return Resolve(inc,
                     "recovered with its root cause (check " + inc->root_check +
                         (inc->rec.caused_by ? ", incident " + std::to_string(inc->rec.caused_by)
                                             : std::string()) +
                         ")");
    }
    CheckRuntime* check = FindCheck(inc->rec.check_id);
    int64_t root_id = 0;
    if (check && !FailingDependency(check, &root_id).empty()) return;  // still explained: wait
    if (tries_left > 1 && check) {
      inc->retry_timer = std::make_unique<Timer>(loop_);
      inc->retry_timer->Start(check->config().interval_ms,
                              [this, id, tries_left] { RecheckDependent(id, tries_left - 1); });
      return;
    }
    spdlog::warn("incident {} ({}): still failing after its root cause healed: acting on it", id,
                 inc->rec.check_id);
    Unlink(inc);
    Triage(inc);
  });
}

std::string Engine::ServiceOf(const std::string& check_id) {
  CheckRuntime* check = FindCheck(check_id);
  return check ? ParamString(check->config().params, "service") : std::string();
}

Engine::Incident* Engine::ActingOn(const std::string& service, int64_t except) {
  if (service.empty()) return nullptr;
  for (auto& [id, inc] : incidents_) {
    if (id != except && inc->rec.state == kStateRunning && !inc->observing && !inc->dependent &&
        ServiceOf(inc->rec.check_id) == service)
      return inc.get();
  }
  return nullptr;
}

void Engine::WaitTurn(Incident* inc, const Incident& acting, const std::string& service) {
  // Other hosts may act meanwhile; the slot is asked for again once it is this one's turn.
  ReleaseSlot(inc, "waiting for service " + service);
  std::string why = "waiting for incident " + std::to_string(acting.rec.id) + " (check " +
                    acting.rec.check_id + "), whose playbook is acting on service " + service;
  inc->rec.state = kStateWaiting;
  inc->rec.reason = why;
  Persist(inc);
  // PassTurn wakes it when that attempt ends; a slow look now and then is the safety net.
  int64_t id = inc->rec.id;
  inc->retry_timer = std::make_unique<Timer>(loop_);
  inc->retry_timer->Start(kTurnRecheckMs, [this, id] { TakeTurn(id); });
  if (inc->waiting_since) return;
  inc->waiting_since = clock_->WallMs();
  inc->waiting_for = why;
  spdlog::info("incident {} ({}): {}", inc->rec.id, inc->rec.check_id, why);
}

void Engine::PassTurn(const std::string& check_id) {
  std::string service = ServiceOf(check_id);
  if (service.empty()) return;
  Incident* next = nullptr;
  for (auto& [id, inc] : incidents_) {
    if (inc->waiting_since && ServiceOf(inc->rec.check_id) == service &&
        (!next || inc->waiting_since < next->waiting_since))
      next = inc.get();
  }
  if (!next) return;
  // On the next loop turn: the caller may be deep inside the other incident's callbacks.
  int64_t id = next->rec.id;
  next->retry_timer = std::make_unique<Timer>(loop_);
  next->retry_timer->Start(0, [this, id] { TakeTurn(id); });
}

void Engine::TakeTurn(int64_t id) {
  auto it = incidents_.find(id);
  if (it == incidents_.end() || shutting_down_ || !it->second->waiting_since) return;
  Incident* inc = it->second.get();
  std::string service = ServiceOf(inc->rec.check_id);
  if (const Incident* acting = ActingOn(service, id)) return WaitTurn(inc, *acting, service);
  RecordStep(inc, "wait", inc->waiting_since, "ok", inc->waiting_for);
  inc->waiting_since = 0;
  // The other playbook may have healed this failure too (a restart often does).
  RunStep(inc, "probe", [this, id](Status s) {
    auto it = incidents_.find(id);
    if (it == incidents_.end()) return;
    if (s.ok()) return Resolve(it->second.get(), "healthy again after waiting its turn");
    StartAttempt(it->second.get());
  });
}

void Engine::StartAttempt(Incident* inc) {
  CheckRuntime* check = FindCheck(inc->rec.check_id);
  if (!check) return Escalate(inc, "check '" + inc->rec.check_id + "' is no longer configured");
  std::string why;
  if (!MayAct(check, &why)) return Observe(inc, why);
  // Not in MayAct: that also stops attempts under way (HeldBack), which the breaker lets finish.
  // Judged before `observing` is cleared, so a waiting incident gets no second observe step.
  if (breaker_open_) return Observe(inc, breaker_reason_);
  inc->observing = false;
  std::string service = ServiceOf(inc->rec.check_id);
  if (const Incident* acting = ActingOn(service, inc->rec.id))
    return WaitTurn(inc, *acting, service);
  // The fleet's turn before any budget is spent: a host kept waiting has not acted.
  // (A check whose budget is spent escalates below without taking a turn first.)
  if (NeedsSlot(inc->rec.playbook, inc->run.get()) && !inc->slot_held &&
      check->budget().Remaining() > 0)
    return TakeSlot(inc);
  // The check's own budget is judged first: an attempt it refuses spends nothing shared.
  if (check->budget().Remaining() > 0 && !SpendBreaker()) return Observe(inc, breaker_reason_);
  if (!check->budget().TrySpend()) {
    return Escalate(inc, "action budget spent (" +
                             std::to_string(check->config().budget.max_actions) + " actions per " +
                             std::to_string(check->config().budget.window_ms / 1000) + " s)");
  }
  std::string error;
  if (!EnsureRun(inc, &error)) return Escalate(inc, error);
  inc->attempt++;
  inc->rec.attempts = inc->attempt;
  inc->rec.state = kStateRunning;
  inc->remediate_started = false;
  Persist(inc);
#ifdef GUARDIAN_TEST_HOOKS
  // attempt:journaled: dies on the store thread once the attempt's number is durable and
  // before its first step's row is (jobs run in order): a crash between two steps.
  store_->Submit(
      [](Store&) {
        CrashPoint("attempt", "journaled");
        return Status::OK();
      },
      [](Status) {});
#endif
  int64_t id = inc->rec.id;
  RunStep(inc, "backup", [this, id](Status s) {
    Incident* inc = incidents_.count(id) ? incidents_[id].get() : nullptr;
    if (!inc) return;
    if (!s.ok()) return RetryOrEscalate(inc, "backup failed: " + s.message());
    // A hold or observe mode that came while backup ran stops the attempt before it acts.
    if (HeldBack(inc, "")) return;
    // Never act on a stale slot: the lease under it must still be this host's, and the grant
    // this incident's. Lost while still connected (a late keep-alive, say), it asks again;
    // the attempt was the fleet's doing, not the playbook's, so it does not count (3 at most).
    if (NeedsSlot(inc->rec.playbook, inc->run.get()) &&
        (!inc->slot_held || !fleet_->Holds(inc->rec.mode, inc->SlotHolder()))) {
      ReleaseSlot(inc, "lost before remediate");
      if (inc->slot_losses < kMaxSlotLosses) ++inc->slot_losses;
      return RetryOrEscalate(inc, "the fleet slot of " + inc->rec.mode +
                                      " was lost before remediate (its lease is not certainly "
                                      "live); asking again");
    }
    inc->remediate_started = true;
    RunStep(inc, "remediate", [this, id](Status s) {
      Incident* inc = incidents_.count(id) ? incidents_[id].get() : nullptr;
      if (!inc) return;
      if (!s.ok()) return Rollback(inc, "remediate failed: " + s.message());
      RunStep(inc, "verify", [this, id](Status s) {
        Incident* inc = incidents_.count(id) ? incidents_[id].get() : nullptr;
        if (!inc) return;
        if (!s.ok()) return Rollback(inc, "verify failed: " + s.message());
        RunStep(inc, "probe", [this, id](Status s) {
          Incident* inc = incidents_.count(id) ? incidents_[id].get() : nullptr;
          if (!inc) return;
          if (!s.ok()) return Rollback(inc, "still failing after remediation: " + s.message());
          Resolve(inc, "verified healthy after attempt " + std::to_string(inc->attempt));
        });
      });
    });
  });
}

void Engine::set_fleet(FleetSlots* slots) {
  fleet_ = slots;
  if (!slots) return;  // leaving the fleet (guardiand stopping)
  // Back in the fleet: disruptive playbooks held while cut off may act again.
  slots->member()->OnChange([this](FleetMember::State s) {
    if (s == FleetMember::State::kConnected && !shutting_down_) ResumeObserved();
  });
}

bool Engine::NeedsSlot(const std::string& playbook, const PlaybookRun* run) const {
  if (!fleet_) return false;
  // An incident's run acts with the code it started with, even if the file changed or went.
  if (run) return run->playbook().disruptive;
  // Unknown (removed, or failed to load): not known to be harmless, so it waits its turn.
  auto pb = playbooks_->Find(playbook);
  return !pb || pb->disruptive;
}

bool Engine::FleetStops(const std::string& playbook, std::string* why,
                        const PlaybookRun* run) const {
  if (!NeedsSlot(playbook, run)) return false;
  FleetMember::State s = fleet_->member()->state();
  if (s == FleetMember::State::kConnected) return false;
  const FleetConfig& c = fleet_->member()->config();
  *why = (s == FleetMember::State::kCutOff ? "cut off from fleet " : "not yet joined to fleet ") +
         c.name + ": disruptive playbook '" + playbook + "' held observe-only until it is back";
  return true;
}

void Engine::TakeSlot(Incident* inc) {
  if (!inc->slot_since) {
    inc->slot_since = clock_->WallMs();
    inc->slot_wait_why.clear();
  }
  inc->rec.state = kStateWaiting;
  inc->rec.reason = "taking a fleet slot of " + inc->rec.mode;
  Persist(inc);
  int64_t id = inc->rec.id;
  // Either callback may come at once, from inside Acquire.
  fleet_->Acquire(
      inc->rec.mode, inc->SlotHolder(), [this, id](Status s) { SlotAnswered(id, s); },
      [this, id](const std::string& why) {
        auto it = incidents_.find(id);
        if (it == incidents_.end() || it->second->slot_wait_why == why) return;
        Incident* inc = it->second.get();
        if (inc->slot_wait_why.empty())
          spdlog::info("incident {} ({}): waiting for a fleet slot: {}", id, inc->rec.check_id,
                       why);
        inc->slot_wait_why = why;
        inc->rec.reason = "waiting for a fleet slot of " + inc->rec.mode + ": " + why;
        Persist(inc);
      });
}

void Engine::SlotAnswered(int64_t id, Status s) {
  auto it = incidents_.find(id);
  if (it == incidents_.end() || shutting_down_) return;
  Incident* inc = it->second.get();
  if (!inc->slot_since) return;  // given up meanwhile (healthy, held)
  // Still connected (a keep-alive late, a read that failed): ask again soon, as one wait: the
  // step and the check seen healthy meanwhile cover all of it, and the grant probes first.
  if (!s.ok() && fleet_->member()->state() == FleetMember::State::kConnected) {
    if (inc->slot_wait_why.empty()) inc->slot_wait_why = "asked again after: " + s.message();
    inc->retry_timer = std::make_unique<Timer>(loop_);
    inc->retry_timer->Start(kSlotRetryMs, [this, id] {
      auto it = incidents_.find(id);
      if (it != incidents_.end()) StartAttempt(it->second.get());
    });
    return;
  }
  // The wait is one step of the incident, so its MTTR shows it.
  bool waited = !inc->slot_wait_why.empty();
  std::string message = s.ok() ? (waited ? "granted after waiting: " + inc->slot_wait_why
                                         : std::string("granted at once"))
                               : "not granted: " + s.message();
  RecordStep(inc, "fleet_slot", inc->slot_since, s.ok() ? "ok" : "skipped", message);
  if (!s.ok()) {
    inc->slot_since = 0;
    inc->slot_wait_why.clear();
    // Cut off: observe-only until the host is back, which resumes it.
    std::string why;
    if (!FleetStops(inc->rec.playbook, &why, inc->run.get()))
      why = "fleet slot refused: " + s.message();
    return Observe(inc, why);
  }
  inc->slot_held = true;
  Audit("guardiand", "fleet_slot", inc->rec.check_id,
        inc->rec.mode + " for incident " + std::to_string(id) + ": " + message);
  if (!waited) return StartAttempt(inc);
  // Other hosts acted meanwhile; this failure may have passed too.
  RunStep(inc, "probe", [this, id](Status s) {
    auto it = incidents_.find(id);
    if (it == incidents_.end()) return;
    if (s.ok()) return Resolve(it->second.get(), "healthy again after waiting for a fleet slot");
    StartAttempt(it->second.get());
  });
}

void Engine::ReleaseSlot(Incident* inc, const std::string& why) {
  if (!fleet_ || !inc->slot_since) return;
  fleet_->Release(inc->rec.mode, inc->SlotHolder());
  if (inc->slot_held) {
    Audit("guardiand", "fleet_slot_released", inc->rec.check_id,
          inc->rec.mode + " for incident " + std::to_string(inc->rec.id) + ": " + why);
  }
  inc->slot_since = 0;
  inc->slot_held = false;
  inc->slot_wait_why.clear();
}

void Engine::RunStep(Incident* inc, const std::string& phase, std::function<void(Status)> next) {
  auto step = std::make_shared<StepRecord>();
  step->id = store_->NewStepId();
  step->incident_id = inc->rec.id;
  step->attempt = inc->attempt;
  step->phase = phase;
  step->started_at = clock_->WallMs();
  step->status = "running";
  // Journal first; act only once the `running` row is durable.
  store_->Submit([step](Store& s) { return s.InsertStep(step.get()); },
                 [this, step, next](Status st) { ActStep(step, st, next); });
}

void Engine::ActStep(std::shared_ptr<StepRecord> step, Status journaled,
                     std::function<void(Status)> next) {
  int64_t id = step->incident_id;
  auto it = incidents_.find(id);
  if (it == incidents_.end()) return;
  Incident* inc = it->second.get();
  if (!journaled.ok()) {
    // No `running` row, no action: after a crash nothing would show the step had started.
    std::string why = "cannot journal step " + step->phase + ": " + journaled.ToString();
    spdlog::error("incident {}: {}", id, why);
    if (!shutting_down_) next(Status::IOError(why));
    return;
  }
  CrashPoint("step", step->phase, "running");
  auto finish = [this, id, step, next](Status s, std::string msg) {
    step->ended_at = clock_->WallMs();
    step->status = s.ok() ? "ok" : (shutting_down_ ? "interrupted" : "failed");
    auto it = incidents_.find(id);
    if (it != incidents_.end()) {
      for (const auto& line : it->second->log_lines) msg += (msg.empty() ? "" : "; ") + line;
      it->second->log_lines.clear();
    }
    step->message = msg;
    if (metrics_ && it != incidents_.end()) {
      metrics_->PhaseFinished(it->second->rec.mode, step->phase, step->status,
                              step->ended_at - step->started_at);
    }
    CrashPoint("step", step->phase, "ended");
    store_->Submit([step](Store& s) { return s.FinishStep(*step); },
                   [phase = step->phase](Status) { CrashPoint("step", phase, "journaled"); });
    if (shutting_down_) return;  // resumed at the next start
    next(s);
  };
  if (shutting_down_) return finish(Status::Aborted("guardiand stopping"), "guardiand stopping");
  if (step->phase == "probe") return ProbeForStep(inc->rec.check_id, 3, finish);
  std::string error;
  if (!EnsureRun(inc, &error)) return finish(Status::Aborted(error), error);
  inc->run->RunPhase(step->phase, inc->attempt, finish);
}

void Engine::ProbeForStep(const std::string& check_id, int tries,
                          std::function<void(Status, std::string)> finish) {
  CheckRuntime* check = FindCheck(check_id);
  if (!check) {
    return finish(Status::Aborted("check is no longer configured"),
                  "check is no longer configured");
  }
  check->ProbeOnce([this, check_id, tries, finish](Observation obs) {
    if (obs.ok()) return finish(Status::OK(), obs.evidence.empty() ? "healthy" : obs.evidence);
    // Unknown is not failing: e.g. a reload replaced the check mid-probe. Ask the current one.
    if (obs.health == Observation::Health::kUnknown && tries > 1 && !shutting_down_) {
      return ProbeForStep(check_id, tries - 1, finish);
    }
    finish(Status::Aborted(obs.evidence), obs.evidence);
  });
}

void Engine::Rollback(Incident* inc, const std::string& why) {
  if (HeldBack(inc, "; not rolled back: " + why, /*fleet=*/false)) return;
  spdlog::warn("incident {} ({}): {}; rolling back", inc->rec.id, inc->rec.check_id, why);
  int64_t id = inc->rec.id;
  RunStep(inc, "rollback", [this, id, why](Status s) {
    auto it = incidents_.find(id);
    if (it == incidents_.end()) return;
    std::string reason = why;
    if (!s.ok()) reason += "; rollback failed: " + s.message();
    RetryOrEscalate(it->second.get(), reason);
  });
}

void Engine::RetryOrEscalate(Incident* inc, const std::string& why) {
  int retries = 0;
  CheckRuntime* check = FindCheck(inc->rec.check_id);
  auto pb = playbooks_->Find(inc->rec.playbook);
  if (pb) retries = pb->retries;
  if (check && check->config().retries) retries = *check->config().retries;
  int max_attempts = 1 + retries + inc->interrupted + inc->slot_losses;
  if (inc->attempt >= max_attempts) {
    return Escalate(inc, "gave up after " + std::to_string(inc->attempt) + " attempt(s): " + why);
  }
  int64_t delay = RetryDelayMs(config_->retry, inc->attempt + 1);
  // Other hosts may take their turn during the backoff.
  ReleaseSlot(inc, "attempt " + std::to_string(inc->attempt) + " failed");
  inc->rec.state = kStateWaiting;
  inc->rec.reason = why;
  Persist(inc);
  PassTurn(inc->rec.check_id);
  spdlog::info("incident {} ({}): retrying in {} ms ({})", inc->rec.id, inc->rec.check_id, delay,
               why);
  int64_t id = inc->rec.id;
  inc->retry_timer = std::make_unique<Timer>(loop_);
  inc->retry_timer->Start(delay, [this, id] {
    auto it = incidents_.find(id);
    if (it == incidents_.end()) return;
    // It may have healed meanwhile (or been fixed by hand); do not act on a healthy check.
    RunStep(it->second.get(), "probe", [this, id](Status s) {
      auto it = incidents_.find(id);
      if (it == incidents_.end()) return;
      if (s.ok()) return Resolve(it->second.get(), "healthy again before retry");
      StartAttempt(it->second.get());
    });
  });
}

void Engine::Resolve(Incident* inc, const std::string& reason) {
  inc->rec.state = kStateResolved;
  inc->rec.recovered_at = clock_->WallMs();
  inc->rec.reason = reason;
  Persist(inc);
  int64_t mttr = inc->rec.recovered_at - inc->rec.onset_at;
  if (metrics_) {
    metrics_->IncidentResolved(inc->rec.mode, inc->rec.detected_at - inc->rec.onset_at, mttr,
                               inc->rec.target_ms);
  }
  spdlog::info("incident {} ({}): resolved in {} ms (target {} ms{}): {}", inc->rec.id,
               inc->rec.check_id, mttr, inc->rec.target_ms,
               mttr <= inc->rec.target_ms ? "" : ", OVER TARGET", reason);
  if (CheckRuntime* check = FindCheck(inc->rec.check_id)) {
    check->health().Reset();
    check->incident_id = 0;
    check->DiscardProbeInFlight();
  }
  RootEnded(*inc);
  PassTurn(inc->rec.check_id);
  Finish(inc);
}

void Engine::Escalate(Incident* inc, const std::string& reason) {
  inc->rec.state = kStateEscalated;
  inc->rec.reason = reason;
  Persist(inc);
  if (metrics_) metrics_->IncidentEscalated(inc->rec.mode);
  std::string hold =
      std::string(kAutoHoldPrefix) + "incident " + std::to_string(inc->rec.id) + ": " + reason;
  spdlog::error("incident {} ({}): ESCALATED, check held: {}", inc->rec.id, inc->rec.check_id,
                reason);
  if (CheckRuntime* check = FindCheck(inc->rec.check_id)) {
    check->health().Reset();
    check->incident_id = 0;
    check->DiscardProbeInFlight();
    check->Hold(hold, clock_->WallMs());
  }
  std::string check_id = inc->rec.check_id;
  int64_t now = clock_->WallMs();
  store_->Submit([check_id, hold, now](Store& s) { return s.SetHold(check_id, hold, now); });
  Audit("escalation", "hold", check_id, hold);
  RootEnded(*inc);
  PassTurn(inc->rec.check_id);
  Finish(inc);
}

void Engine::Persist(Incident* inc) {
  IncidentRecord rec = inc->rec;
  rec.steps.clear();
  store_->Submit([rec](Store& s) { return s.UpdateIncident(rec); },
                 [id = rec.id](Status s) {
                   if (!s.ok()) spdlog::error("incident {}: cannot persist: {}", id, s.ToString());
                 });
}

void Engine::Finish(Incident* inc) {
  ReleaseSlot(inc, "incident " + inc->rec.state);
  // We may be deep inside this incident's playbook callback; free it on the next loop turn.
  auto it = incidents_.find(inc->rec.id);
  if (it == incidents_.end()) return;
  FreeNextTurn(std::shared_ptr<Incident>(it->second.release()));
  incidents_.erase(it);
}

void Engine::Recover(std::vector<IncidentRecord> unfinished,
                     std::map<std::string, HoldRecord> holds) {
  for (const auto& [check_id, hold] : holds) {
    if (CheckRuntime* check = FindCheck(check_id)) check->Hold(hold.reason, hold.since);
  }
  for (auto& rec : unfinished) {
    auto inc = std::make_unique<Incident>();
    inc->rec = std::move(rec);
    inc->attempt = inc->rec.attempts;
    // Remediation counts as started when this attempt ran remediate and no rollback of it
    // completed since; probes (recorded under the previous attempt's number) do not count.
    // The attempt was cut short by the restart unless it had come to an end: a step failed,
    // or its verify or rollback finished (it then waited to retry, or to be closed).
    bool concluded = false;
    for (const auto& s : inc->rec.steps) {
      if (s.attempt != inc->attempt) continue;
      if (s.phase == "remediate") inc->remediate_started = true;
      if (s.phase == "rollback" && s.status == "ok") inc->remediate_started = false;
      if (s.status == "failed" ||
          ((s.phase == "verify" || s.phase == "rollback") && s.status == "ok"))
        concluded = true;
    }
    bool cut_short = inc->attempt > 0 && !concluded;
    int64_t id = inc->rec.id;
    CheckRuntime* check = FindCheck(inc->rec.check_id);
    incidents_[id] = std::move(inc);
    if (check) check->incident_id = id;
    int64_t now = clock_->WallMs();
    auto interrupted = std::make_shared<std::vector<StepRecord>>();
    // Close the steps the previous run left `running` first, whatever happens next.
    store_->Submit(
        [id, now, interrupted](Store& s) {
          return s.InterruptRunningSteps(id, now, "guardiand stopped during this step",
                                         interrupted.get());
        },
        [this, id, interrupted, cut_short](Status s) {
          auto it = incidents_.find(id);
          if (it == incidents_.end() || shutting_down_) return;
          Incident* inc = it->second.get();
          if (!FindCheck(inc->rec.check_id)) {
            return Escalate(inc, "check '" + inc->rec.check_id + "' is no longer configured");
          }
          std::string what = "guardiand restarted";
          if (!s.ok()) what += " (could not read its journal: " + s.message() + ")";
          for (const auto& st : *interrupted) {
            what += "; interrupted " + st.phase + " of attempt " + std::to_string(st.attempt);
          }
          // One more attempt for the one the crash took, whether it died in a step or between
          // two (a phase boundary): the playbook did not fail it.
          if (!interrupted->empty() || cut_short) inc->interrupted = 1;
          spdlog::warn("incident {} ({}): resuming: {}", id, inc->rec.check_id, what);
          inc->log_lines.push_back(what);
          // Re-probe first: the interrupted attempt may have healed it already.
          RunStep(inc, "probe", [this, id](Status s) {
            auto it = incidents_.find(id);
            if (it == incidents_.end()) return;
            Incident* inc = it->second.get();
            if (s.ok()) return Resolve(inc, "healthy after guardiand restart");
            CheckRuntime* check = FindCheck(inc->rec.check_id);
            // One that never acted (a dependent, say) is judged again, root cause first.
            if (inc->attempt == 0 && check && !check->config().depends_on.empty())
              return Triage(inc);
            if (inc->remediate_started)
              return Rollback(inc, "remediation interrupted by a guardiand restart");
            RetryOrEscalate(inc, "interrupted by a guardiand restart");
          });
        });
  }
}

void Engine::Shutdown(std::function<void()> done) {
  shutting_down_ = true;
  breaker_timer_.reset();
  shutdown_done_ = std::move(done);
  for (auto& [id, inc] : incidents_) {
    inc->retry_timer.reset();
    if (inc->run && inc->run->running()) inc->run->Abort("guardiand stopping");
  }
  incidents_.clear();
  for (auto& [key, run] : dry_runs_) {
    if (run->running()) run->Abort("guardiand stopping");
  }
  dry_runs_.clear();
  for (auto& [id, check] : checks_) CloseCheck(std::move(check));
  checks_.clear();
  MaybeShutdownDone();
}

void Engine::MaybeShutdownDone() {
  if (!shutting_down_ || closing_checks_ > 0 || !shutdown_done_) return;
  auto done = std::move(shutdown_done_);
  shutdown_done_ = nullptr;
  done();
}

size_t Engine::running_playbooks() const {
  size_t n = 0;
  for (const auto& [id, inc] : incidents_) n += inc->run && inc->run->running();
  return n;
}

nlohmann::json Engine::CheckStatusJson(const std::string& id, CheckRuntime& c) const {
  const char* state = "unknown";
  switch (c.last_observation().health) {
    case Observation::Health::kOk:
      state = "ok";
      break;
    case Observation::Health::kFailing:
      state = "failing";
      break;
    case Observation::Health::kUnknown:
      state = "unknown";
      break;
  }
  return {{"id", id},
          {"mode", c.config().mode},
          {"state", state},
          {"interval_ms", c.config().interval_ms},
          {"target_ms", c.config().target_ms},
          {"evidence", c.last_observation().evidence},
          {"degraded", c.last_observation().degraded},
          {"gauges", c.last_observation().gauges},
          {"held", c.held()},
          {"hold_reason", c.hold_reason()},
          {"incident", c.incident_id > 0 ? nlohmann::json(c.incident_id) : nlohmann::json(nullptr)},
          {"hold_since", c.held() ? nlohmann::json(c.hold_since()) : nlohmann::json(nullptr)},
          {"budget_remaining", c.budget().Remaining()},
          {"budget_spent", c.budget().spent()}};
}

nlohmann::json Engine::StatusJson() const {
  nlohmann::json j = StatusJsonWithoutChecks();
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& [id, c] : checks_) checks.push_back(CheckStatusJson(id, *c));
  j["checks"] = std::move(checks);
  return j;
}

Engine::StatusKey Engine::StatusKeyOf(CheckRuntime& c) {
  const Observation& o = c.last_observation();
  return {&c,
          c.config().mode,
          c.config().interval_ms,
          c.config().target_ms,
          o.health,
          o.evidence,
          o.degraded,
          o.gauges,
          c.held(),
          c.hold_reason(),
          c.incident_id,
          c.held() ? c.hold_since() : 0,
          c.budget().Remaining(),
          c.budget().spent()};
}

// Field by field, without copying: this runs for every check every second.
bool Engine::SameStatus(const StatusKey& k, CheckRuntime& c) {
  const Observation& o = c.last_observation();
  return k.check == &c && k.health == o.health && k.degraded == o.degraded && k.held == c.held() &&
         k.incident == c.incident_id && k.hold_since == (c.held() ? c.hold_since() : 0) &&
         k.budget_remaining == c.budget().Remaining() && k.budget_spent == c.budget().spent() &&
         k.interval_ms == c.config().interval_ms && k.target_ms == c.config().target_ms &&
         k.evidence == o.evidence && k.gauges == o.gauges && k.hold_reason == c.hold_reason() &&
         k.mode == c.config().mode;
}

std::string Engine::ChecksStatusText() {
  // Entries of checks that are gone are dropped; both maps are ordered by id.
  for (auto it = status_cache_.begin(); it != status_cache_.end();) {
    it = checks_.count(it->first) ? std::next(it) : status_cache_.erase(it);
  }
  std::string out = "[";
  for (const auto& [id, c] : checks_) {
    StatusEntry& e = status_cache_[id];
    if (e.text.empty() || !SameStatus(e.key, *c)) {
      e.key = StatusKeyOf(*c);
      // Evidence quotes broken files, which may hold bytes that are not UTF-8: replace.
      e.text =
          CheckStatusJson(id, *c).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    if (out.size() > 1) out += ',';
    out += e.text;
  }
  return out + "]";
}

nlohmann::json Engine::StatusJsonWithoutChecks() const {
  nlohmann::json incidents = nlohmann::json::array();
  for (const auto& [id, inc] : incidents_) {
    incidents.push_back({{"id", id},
                         {"check", inc->rec.check_id},
                         {"mode", inc->rec.mode},
                         {"state", inc->rec.state},
                         {"attempts", inc->rec.attempts},
                         {"observing", inc->observing},
                         {"caused_by", inc->rec.caused_by ? nlohmann::json(inc->rec.caused_by)
                                                          : nlohmann::json(nullptr)},
                         {"reason", inc->rec.reason}});
  }
  // An open breaker is observe-only in effect; `breaker` says why and until when.
  return {{"mode", (config_ && config_->observe) || breaker_open_ ? "observe" : "act"},
          {"breaker", BreakerJson()},
          {"incidents", incidents},
          {"open_incidents", incidents_.size()},
          {"running_playbooks", running_playbooks()}};
}

}  // namespace guardian
