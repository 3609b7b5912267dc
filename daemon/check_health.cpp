#include "daemon/check_health.h"

namespace guardian {

CheckHealth::Transition CheckHealth::Observe(const Observation& obs, int64_t now_wall_ms) {
  last_ = obs.health;
  switch (obs.health) {
    case Observation::Health::kUnknown:
      return Transition::kNone;
    case Observation::Health::kOk: {
      bool was_confirmed = confirmed_;
      streak_ = 0;
      onset_ms_ = 0;
      confirmed_ = false;
      return was_confirmed ? Transition::kRecovered : Transition::kNone;
    }
    case Observation::Health::kFailing:
      if (streak_ == 0) onset_ms_ = now_wall_ms;
      if (obs.began_at_ms > 0 && obs.began_at_ms < onset_ms_) onset_ms_ = obs.began_at_ms;
      ++streak_;
      if (!confirmed_ && streak_ >= debounce_) {
        confirmed_ = true;
        return Transition::kConfirmed;
      }
      return Transition::kNone;
  }
  return Transition::kNone;
}

void CheckHealth::Reset() {
  streak_ = 0;
  onset_ms_ = 0;
  confirmed_ = false;
}

}  // namespace guardian
