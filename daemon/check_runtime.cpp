#include "daemon/check_runtime.h"

#include <spdlog/spdlog.h>

#include <algorithm>

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
      stall_timer_(loop),
      stall_limit_ms_(std::max<int64_t>(300000, 3 * config_.interval_ms)),
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
  stall_timer_.Stop();
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
  uint64_t seq = ++probe_seq_;
  stall_timer_.Start(stall_limit_ms_, [this, seq] { OnStalled(seq); });
  detector_->Probe([this, alive, epoch, seq](Observation obs) {
    if (auto a = alive.lock(); !a || !*a) return;  // closed meanwhile
    if (seq != probe_seq_) return;                 // given up on as stalled; too late
    stall_timer_.Stop();
    in_flight_ = false;
    if (epoch != epoch_ && !closing_) {
      again_ = false;
      return Probe();  // stale: started before an incident ended
    }
    Deliver(obs);
  });
}

void CheckRuntime::OnStalled(uint64_t seq) {
  if (closing_ || !in_flight_ || seq != probe_seq_) return;
  ++probe_seq_;
  ++stalls_;
  in_flight_ = false;
  std::string why = "the probe gave no answer in " + std::to_string(stall_limit_ms_) + " ms";
  spdlog::error("check {}: {}; counted as unknown, and probing goes on", config_.id, why);
  Deliver(Observation::Unknown(why));
}

void CheckRuntime::Deliver(const Observation& obs) {
  last_ = obs;
  on_observation_(this, obs);
  if (closing_) return;
  if (again_) {  // a wake came during the probe
    again_ = false;
    Probe();
  } else {
    ScheduleNext();
  }
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
