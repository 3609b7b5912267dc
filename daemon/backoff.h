#pragma once
// Retry pacing and the per-check action budget, as plain logic over a Clock.

#include <cstdint>
#include <deque>

#include "daemon/clock.h"
#include "daemon/config.h"

namespace guardian {

// Delay before attempt `attempt` (2 = the first retry): base * 2^(attempt-2), capped at max.
// Attempt 1 starts at once.
int64_t RetryDelayMs(const RetryPolicy& policy, int attempt);

// At most `max_actions` actions in any sliding window of `window_ms`. An action is one playbook
// attempt; spending is refused, not queued, so the caller escalates instead of looping.
class ActionBudget {
 public:
  ActionBudget(Budget budget, const Clock* clock) : budget_(budget), clock_(clock) {}
  bool TrySpend();
  int Remaining();
  // Monotonic ms when the next action becomes available again (now when Remaining() > 0).
  int64_t NextAvailableMs();
  void set_budget(Budget b) { budget_ = b; }
  // Forgets what was spent: an operator's release means "try again now".
  void Reset() { spent_.clear(); }
  int spent() {
    Expire();
    return static_cast<int>(spent_.size());
  }

 private:
  void Expire();
  Budget budget_;
  const Clock* clock_;
  std::deque<int64_t> spent_;  // monotonic ms of each action in the window
};

}  // namespace guardian
