#include "daemon/check_runtime.h"

#include <spdlog/spdlog.h>

#include "daemon/probe_schedule.h"

namespace guardian {

CheckRuntime::CheckRuntime(uv_loop_t* loop, CheckConfig config, std::string state_dir,
                           std::shared_ptr<Detector> detector, const Clock* clock,
                           ObservationFn on_observation)
    : loop_(loop),
      config_(std::move(config)),
      state_dir_(std::move(state_dir)),
      detector_(std::move(detector)),
      clock_(clock),
      on_observation_(std::move(on_observation)),
      health_(config_.debounce),
      budget_(config_.budget, clock),
      timer_(loop),
      rng_(std::random_device{}()) {}

void CheckRuntime::Start() {
  Status s = detector_->Start([this] { ProbeNow(); });
  if (!s.ok()) spdlog::warn("check {}: {}", config_.id, s.message());
  // First probe at once: the daemon should know the stack's state right after it starts.
  timer_.Start(0, [this] { Probe(); });
}

void CheckRuntime::Close(std::function<void()> closed) {
  closing_ = true;
  *alive_ = false;
  timer_.Stop();
  detector_->Close(std::move(closed));
}

void CheckRuntime::ProbeNow() {
  if (closing_) return;
  if (in_flight_) {
    again_ = true;
    return;
  }
  timer_.Stop();
  Probe();
}

void CheckRuntime::Probe() {
  in_flight_ = true;
  std::weak_ptr<bool> alive = alive_;
  uint64_t epoch = epoch_;
  detector_->Probe([this, alive, epoch](Observation obs) {
    if (auto a = alive.lock(); !a || !*a) return;  // closed meanwhile
    in_flight_ = false;
    if (epoch != epoch_ && !closing_) {
      again_ = false;
      return Probe();  // stale: started before an incident ended
    }
    last_ = obs;
    on_observation_(this, obs);
    if (closing_) return;
    if (again_) {
      again_ = false;
      Probe();
    } else {
      ScheduleNext();
    }
  });
}

void CheckRuntime::ScheduleNext() {
  std::uniform_real_distribution<double> u(0.0, 1.0);
  int64_t delay = NextProbeDelayMs(static_cast<int64_t>(uv_now(loop_)), config_.interval_ms,
                                   config_.jitter, u(rng_));
  timer_.Start(delay, [this] { Probe(); });
}

void CheckRuntime::ProbeOnce(std::function<void(Observation)> done) {
  std::weak_ptr<bool> alive = alive_;
  detector_->Probe([alive, done](Observation obs) {
    if (auto a = alive.lock(); !a || !*a) {
      done(Observation::Unknown("check closed"));
      return;
    }
    done(obs);
  });
}

}  // namespace guardian
