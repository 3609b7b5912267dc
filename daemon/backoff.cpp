#include "daemon/backoff.h"

#include <algorithm>

namespace guardian {

int64_t RetryDelayMs(const RetryPolicy& policy, int attempt) {
  if (attempt <= 1) return 0;
  int64_t delay = policy.backoff_base_ms;
  for (int i = 2; i < attempt && delay < policy.backoff_max_ms; ++i) delay *= 2;
  return std::min(delay, policy.backoff_max_ms);
}

void ActionBudget::Expire() {
  int64_t now = clock_->MonoMs();
  while (!spent_.empty() && now - spent_.front() >= budget_.window_ms) spent_.pop_front();
}

bool ActionBudget::TrySpend() {
  Expire();
  if (static_cast<int>(spent_.size()) >= budget_.max_actions) return false;
  spent_.push_back(clock_->MonoMs());
  return true;
}

int ActionBudget::Remaining() {
  Expire();
  return std::max(0, budget_.max_actions - static_cast<int>(spent_.size()));
}

int64_t ActionBudget::NextAvailableMs() {
  Expire();
  if (static_cast<int>(spent_.size()) < budget_.max_actions) return clock_->MonoMs();
  return spent_.front() + budget_.window_ms;
}

}  // namespace guardian
