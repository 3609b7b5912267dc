#pragma once
// RestartPolicy: how a supervised service is paced after it exits unasked. Consecutive failures
// double the delay (base, 2*base, ... capped at max). The count goes back to zero only after
// the service has stayed ready for `healthy_after_ms` and the supervisor has re-verified it
// then: a service that starts and dies again soon keeps backing off, and one that recovered
// does not carry an old penalty forever. It never gives up: past the cap it keeps retrying at
// the cap, and the failure count says how bad it is.
//
// Plain logic over caller-supplied monotonic times, so tests need no loop and no sleeping.

#include <cstdint>

namespace guardian {

class RestartPolicy {
 public:
  RestartPolicy(int64_t base_ms, int64_t max_ms, int64_t healthy_after_ms)
      : base_ms_(base_ms), max_ms_(max_ms), healthy_after_ms_(healthy_after_ms) {}

  // The service exited without being asked to: counts a failure and returns the delay before
  // the next start.
  int64_t OnFailure();
  // It became ready (the healthy period starts) or stopped being ready (it ends, unconfirmed).
  void OnReady(int64_t now_mono_ms);
  void OnNotReady() { ready_since_ = -1; }
  bool ready() const { return ready_since_ >= 0; }
  // When the healthy period is complete (monotonic ms); -1 while not ready.
  int64_t HealthyAt() const { return ready_since_ < 0 ? -1 : ready_since_ + healthy_after_ms_; }
  // The supervisor re-verified the service at `now`: if it has been ready for the whole period
  // the failure count resets. Returns true when a non-zero count was reset.
  bool ConfirmHealthy(int64_t now_mono_ms);

  int failures() const { return failures_; }
  // The delay the next failure would get.
  int64_t NextDelayMs() const { return DelayFor(failures_ + 1); }

 private:
  int64_t DelayFor(int failure) const;

  int64_t base_ms_;
  int64_t max_ms_;
  int64_t healthy_after_ms_;
  int failures_ = 0;
  int64_t ready_since_ = -1;
};

}  // namespace guardian
