#include "daemon/guardian_metrics.h"

#include "daemon/modes.h"

namespace guardian {

namespace {
// Phase durations run from milliseconds (a state write) to the phase timeout (30 s default).
const std::vector<double> kPhaseBuckets = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5,
                                           1,     2.5,   5,    10,   20,  30,   60};
}  // namespace

GuardianMetrics::GuardianMetrics() {
  r_.AddGauge("guardian_build_info", "Always 1; the version is a label.", {"version"});
  r_.AddGauge("guardian_start_time_seconds", "When guardiand started, seconds since the epoch.",
              {});
  r_.AddGauge("guardian_observe_mode", "1 when guardiand only observes (config mode: observe).",
              {});
  r_.AddGauge("guardian_check_state", "1 for the check's current state (ok, failing, unknown).",
              {"check", "mode", "state"});
  r_.AddGauge("guardian_check_gauge",
              "A figure the check's detector exports about what it watches (its name label), "
              "e.g. breaker_open for api_timeout.",
              {"check", "mode", "name"});
  r_.AddGauge("guardian_check_held", "1 while the check is held (no playbook acts on it).",
              {"check", "mode"});
  r_.AddGauge("guardian_check_budget_spent",
              "Playbook attempts spent from the check's action budget in the current window.",
              {"check", "mode"});
  r_.AddGauge("guardian_check_budget_remaining",
              "Playbook attempts left in the check's action budget.", {"check", "mode"});
  r_.AddGauge("guardian_incidents_open", "Incidents not yet resolved or escalated.", {});
  r_.AddGauge("guardian_running_playbooks", "Playbook runs in progress.", {});
  r_.AddCounter("guardian_incidents_opened_total", "Incidents opened.", {"mode"});
  r_.AddCounter("guardian_incidents_resolved_total", "Incidents resolved (verified healthy).",
                {"mode"});
  r_.AddCounter("guardian_incidents_escalated_total", "Incidents escalated (check held).",
                {"mode"});
  r_.AddCounter("guardian_incidents_over_target_total",
                "Resolved incidents whose MTTR exceeded the target.", {"mode"});
  r_.AddHistogram("guardian_mttr_seconds", "Time from onset to verified recovery, per mode.",
                  {"mode"}, BucketsAroundTarget(60));
  r_.AddHistogram("guardian_mttd_seconds", "Time from onset to detection, per mode.", {"mode"},
                  BucketsAroundTarget(60));
  r_.AddHistogram("guardian_playbook_phase_duration_seconds", "Playbook phase durations.",
                  {"mode", "phase"}, kPhaseBuckets);
  r_.AddCounter("guardian_playbook_phases_total", "Playbook phases run, by outcome.",
                {"mode", "phase", "status"});
  r_.AddGauge("guardian_loop_lag_seconds",
              "Event loop lag over the recent window (stat: p50, p99, max).", {"stat"});
  r_.AddHistogram("guardian_store_write_latency_seconds",
                  "Store jobs: time queued plus time running on the store thread.", {},
                  LatencyBuckets());
  r_.AddGauge("guardian_store_degraded",
              "1 while the disk refuses the store's writes and journal writes wait in memory.", {});
  r_.AddGauge("guardian_store_pending_writes", "Journal writes waiting in memory.", {});
  r_.AddCounter("guardian_store_write_errors_total",
                "Store writes the disk refused (full, I/O error), counting retries.", {});
  r_.AddCounter("guardian_store_dropped_writes_total",
                "Journal writes lost: past the in-memory bound, or failed for good.", {});
  r_.AddGauge("guardian_fleet_state",
              "Fleet mode: 1 for this host's state in its fleet (connecting, connected, cut_off).",
              {"fleet", "host", "state"});
  r_.AddGauge("guardian_fleet_leader", "Fleet mode: 1 while this host leads its fleet.",
              {"fleet", "host"});
  r_.AddCounter("guardian_fleet_reconnects_total",
                "Fleet mode: times this host took its seat again after being cut off.",
                {"fleet", "host"});
  r_.AddCounter("guardian_fleet_refused_writes_total",
                "Fleet mode: leader writes etcd refused because another host leads (fencing).",
                {"fleet", "host"});
  r_.AddCounter("guardian_config_reloads_total", "Config reloads, by result.", {"result"});
  r_.AddCounter("guardian_api_requests_total", "API requests handled.", {});

  r_.Set("guardian_build_info", {GUARDIAN_VERSION}, 1);
  r_.Inc("guardian_api_requests_total", {}, 0);
  for (const char* result : {"ok", "rejected"})
    r_.Inc("guardian_config_reloads_total", {result}, 0);
}

void GuardianMetrics::IncidentOpened(const std::string& mode) {
  r_.Inc("guardian_incidents_opened_total", {mode});
}

void GuardianMetrics::IncidentResolved(const std::string& mode, int64_t mttd_ms, int64_t mttr_ms,
                                       int64_t target_ms) {
  r_.Inc("guardian_incidents_resolved_total", {mode});
  r_.Inc("guardian_incidents_over_target_total", {mode}, mttr_ms > target_ms ? 1 : 0);
  // Buckets sit around the incident's target, so "within target" is one bucket edge.
  std::vector<double> buckets = BucketsAroundTarget(static_cast<double>(target_ms) / 1000.0);
  r_.Observe("guardian_mttr_seconds", {mode}, static_cast<double>(mttr_ms) / 1000.0, &buckets);
  r_.Observe("guardian_mttd_seconds", {mode}, static_cast<double>(mttd_ms) / 1000.0, &buckets);
}

void GuardianMetrics::IncidentEscalated(const std::string& mode) {
  r_.Inc("guardian_incidents_escalated_total", {mode});
}

void GuardianMetrics::PhaseFinished(const std::string& mode, const std::string& phase,
                                    const std::string& status, int64_t duration_ms) {
  r_.Inc("guardian_playbook_phases_total", {mode, phase, status});
  r_.Observe("guardian_playbook_phase_duration_seconds", {mode, phase},
             static_cast<double>(duration_ms) / 1000.0);
}

void GuardianMetrics::StoreJob(int64_t latency_us) {
  r_.Observe("guardian_store_write_latency_seconds", {}, static_cast<double>(latency_us) / 1e6);
}

void GuardianMetrics::Reload(bool ok) {
  r_.Inc("guardian_config_reloads_total", {ok ? "ok" : "rejected"});
}

void GuardianMetrics::CatchUp(const std::string& counter, const std::vector<std::string>& labels,
                              double total, double* seen) {
  r_.Inc(counter, labels, total > *seen ? total - *seen : 0);
  if (total > *seen) *seen = total;
}

void GuardianMetrics::ApiRequest() { r_.Inc("guardian_api_requests_total", {}); }

std::string GuardianMetrics::Render(const nlohmann::json& status) {
  r_.Set("guardian_start_time_seconds", {},
         static_cast<double>(status.value("started_at", int64_t{0})) / 1000.0);
  r_.Set("guardian_observe_mode", {}, status.value("mode", "") == "observe" ? 1 : 0);
  r_.Set("guardian_incidents_open", {}, status.value("open_incidents", 0));
  r_.Set("guardian_running_playbooks", {}, status.value("running_playbooks", 0));
  for (const char* g : {"guardian_check_state", "guardian_check_held", "guardian_check_gauge",
                        "guardian_check_budget_spent", "guardian_check_budget_remaining"}) {
    r_.ResetGauge(g);
  }
  for (const auto& c : status.value("checks", nlohmann::json::array())) {
    std::string id = c.value("id", ""), mode = c.value("mode", ""), state = c.value("state", "");
    for (const char* s : {"ok", "failing", "unknown"}) {
      r_.Set("guardian_check_state", {id, mode, s}, state == s ? 1 : 0);
    }
    for (const char* f :
         {"guardian_incidents_opened_total", "guardian_incidents_resolved_total",
          "guardian_incidents_escalated_total", "guardian_incidents_over_target_total"}) {
      r_.Inc(f, {mode}, 0);  // present from the start, so rate() sees the first incident
    }
    r_.Set("guardian_check_held", {id, mode}, c.value("held", false) ? 1 : 0);
    if (c.contains("gauges") && c["gauges"].is_object()) {
      for (const auto& [name, value] : c["gauges"].items())
        if (value.is_number())
          r_.Set("guardian_check_gauge", {id, mode, name}, value.get<double>());
    }
    r_.Set("guardian_check_budget_spent", {id, mode}, c.value("budget_spent", 0));
    r_.Set("guardian_check_budget_remaining", {id, mode}, c.value("budget_remaining", 0));
  }
  const auto& lag = status.value("loop_lag_us", nlohmann::json::object());
  for (const char* stat : {"p50", "p99", "max"}) {
    r_.Set("guardian_loop_lag_seconds", {stat},
           static_cast<double>(lag.value(stat, int64_t{0})) / 1e6);
  }
  const auto& store = status.value("store", nlohmann::json::object());
  r_.Set("guardian_store_degraded", {}, store.value("state", "ok") == "degraded" ? 1 : 0);
  r_.Set("guardian_store_pending_writes", {}, store.value("pending_writes", 0));
  // The store thread counts; these counters only catch up with it.
  CatchUp("guardian_store_write_errors_total", {}, store.value("write_errors", 0.0),
          &store_write_errors_seen_);
  CatchUp("guardian_store_dropped_writes_total", {}, store.value("dropped_writes", 0.0),
          &store_dropped_seen_);
  if (status.contains("fleet") && status["fleet"].is_object()) {
    const auto& f = status["fleet"];
    std::string fleet = f.value("fleet", ""), host = f.value("host", ""),
                state = f.value("state", "");
    for (const char* s : {"connecting", "connected", "cut_off"})
      r_.Set("guardian_fleet_state", {fleet, host, s}, state == s ? 1 : 0);
    const auto& leader = f.value("leader", nlohmann::json::object());
    r_.Set("guardian_fleet_leader", {fleet, host}, leader.value("leading", false) ? 1 : 0);
    CatchUp("guardian_fleet_reconnects_total", {fleet, host}, f.value("reconnects", 0.0),
            &fleet_reconnects_seen_);
    CatchUp("guardian_fleet_refused_writes_total", {fleet, host},
            leader.value("refused_writes", 0.0), &fleet_refused_seen_);
  }
  return r_.Render();
}

}  // namespace guardian
