#pragma once
// CheckRuntime: one configured check while the daemon runs: its detector, its probe schedule
// (daemon/probe_schedule.h; or at once when the detector's event source wakes it), its
// debounce state, action budget and hold. Probes of one check never overlap; a wake during a
// probe queues exactly one more.
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
