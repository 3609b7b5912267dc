#pragma once
// CheckHealth: the debounce state machine of one check, as plain logic (no loop, no clock
// reads) so tests drive it observation by observation.
//
// N consecutive failing observations confirm a failure; the onset is the time of the first of
// them, or the earlier time a failing observation says the failure began. An ok observation clears
// the streak. Unknown observations (the probe itself could not decide, e.g. a timeout of the
// prober) neither confirm nor clear.

#include <cstdint>

#include "daemon/observation.h"

namespace guardian {

class CheckHealth {
 public:
  enum class Transition { kNone, kConfirmed, kRecovered };

  explicit CheckHealth(int debounce) : debounce_(debounce < 1 ? 1 : debounce) {}

  Transition Observe(const Observation& obs, int64_t now_wall_ms);
  // Forget a confirmed failure (its incident is handled); the next failure starts a new streak.
  void Reset();

  bool confirmed() const { return confirmed_; }
  int streak() const { return streak_; }
  int64_t onset_ms() const { return onset_ms_; }
  Observation::Health last() const { return last_; }

 private:
  int debounce_;
  int streak_ = 0;
  int64_t onset_ms_ = 0;
  bool confirmed_ = false;
  Observation::Health last_ = Observation::Health::kUnknown;
};

}  // namespace guardian
