#pragma once
// CheckRuntime: one configured check while the daemon runs: its detector, its probe schedule
// (daemon/probe_schedule.h; or at once when the detector's event source wakes it), its
// debounce state, action budget and hold. Probes of one check never overlap; a wake during a
// probe queues exactly one more. A probe that never answers (a detector broke its contract)
// does not stop the schedule: after the stall limit it counts as unknown, is logged as an
// error, and the schedule goes on; its late answer, if any, is dropped.
//
// Thread: loop thread only. Close() before destroying; `closed` runs once all handles are closed.

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>

#include "daemon/backoff.h"
#include "daemon/check_health.h"
#include "daemon/clock.h"
#include "daemon/config.h"
#include "daemon/timer.h"
#include "detectors/detector.h"

namespace guardian {

class CheckRuntime {
 public:
  using ObservationFn = std::function<void(CheckRuntime*, const Observation&)>;

  CheckRuntime(uv_loop_t* loop, CheckConfig config, std::string state_dir,
               std::shared_ptr<Detector> detector, const Clock* clock,
               ObservationFn on_observation);

  void Start();
  void Close(std::function<void()> closed);
  // Probes now (or right after the probe in flight).
  void ProbeNow();
  // A one-off probe for the incident engine (verify); does not feed the schedule's debounce.
  void ProbeOnce(std::function<void(Observation)> done);
  // An incident of this check just ended: a scheduled probe under way saw the stack before its
  // remediation, so its observation is dropped and a fresh probe runs at once instead.
  void DiscardProbeInFlight() { ++epoch_; }

  const CheckConfig& config() const { return config_; }
  const std::string& state_dir() const { return state_dir_; }
  CheckHealth& health() { return health_; }
  ActionBudget& budget() { return budget_; }
  const Observation& last_observation() const { return last_; }
  // The stall limit: the larger of 5 minutes and three intervals, unless a test sets it.
  void set_stall_limit_ms(int64_t ms) { stall_limit_ms_ = ms; }
  int64_t stalls() const { return stalls_; }

  bool held() const { return held_; }
  const std::string& hold_reason() const { return hold_reason_; }
  void Hold(std::string reason, int64_t since_wall_ms) {
    held_ = true;
    hold_reason_ = std::move(reason);
    hold_since_ = since_wall_ms;
  }
  int64_t hold_since() const { return hold_since_; }
  void Release() {
    held_ = false;
    hold_reason_.clear();
  }

  int64_t incident_id = 0;  // the open incident, 0 when none

 private:
  void Probe();
  void OnStalled(uint64_t seq);
  // Records a scheduled probe's observation, then probes again or schedules the next.
  void Deliver(const Observation& obs);
  void ScheduleNext();

  uv_loop_t* loop_;
  CheckConfig config_;
  std::string state_dir_;
  std::shared_ptr<Detector> detector_;
  const Clock* clock_;
  ObservationFn on_observation_;
  CheckHealth health_;
  ActionBudget budget_;
  Timer timer_;
  Timer stall_timer_;
  int64_t stall_limit_ms_;
  uint64_t probe_seq_ = 0;  // the scheduled probe in flight; an older one's answer is dropped
  int64_t stalls_ = 0;
  std::mt19937_64 rng_;
  bool in_flight_ = false;
  bool again_ = false;
  uint64_t epoch_ = 0;  // bumped by DiscardProbeInFlight
  bool closing_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  Observation last_;
  bool held_ = false;
  std::string hold_reason_;
  int64_t hold_since_ = 0;
};

}  // namespace guardian
