#include "daemon/restart_policy.h"

#include <algorithm>

namespace guardian {

int64_t RestartPolicy::DelayFor(int failure) const {
  int64_t delay = base_ms_;
  for (int i = 1; i < failure && delay < max_ms_; ++i) delay *= 2;
  return std::min(delay, max_ms_);
}

int64_t RestartPolicy::OnFailure() {
  ready_since_ = -1;
  ++failures_;
  return DelayFor(failures_);
}

void RestartPolicy::OnReady(int64_t now_mono_ms) {
  if (ready_since_ < 0) ready_since_ = now_mono_ms;
}

bool RestartPolicy::ConfirmHealthy(int64_t now_mono_ms) {
  if (ready_since_ < 0 || now_mono_ms < HealthyAt()) return false;
  bool had = failures_ > 0;
  failures_ = 0;
  return had;
}

}  // namespace guardian
