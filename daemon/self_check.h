#pragma once
// SelfCheck: whether guardiand is well enough to pet systemd's watchdog. A loop that stalls
// for longer than a bound, or a store that does not answer, is a wedged watchdog even while
// the loop still turns; skipping the ping lets systemd restart it (WatchdogSec=). Plain
// logic on times the daemon feeds in, so tests drive it without a loop or a store.

#include <cstdint>
#include <string>

namespace guardian {

struct SelfCheckLimits {
  int64_t max_lag_ms = 1000;    // a loop stall longer than this since the last judgement
  int64_t max_store_ms = 1000;  // a store round trip still unanswered after this
};

class SelfCheck {
 public:
  explicit SelfCheck(SelfCheckLimits limits) : limits_(limits) {}

  // The worst loop stall seen since the last Judge (ms).
  void SawLag(int64_t lag_ms);
  // A store round trip was sent at `now_ms`; false if one is still in flight (none sent).
  bool StoreProbeSent(int64_t now_ms);
  // It came back; `error` is empty when the store answered well.
  void StoreProbeDone(int64_t now_ms, const std::string& error);

  // "" when healthy, else why not ("loop stalled 1500 ms (limit 1000)"). Resets the lag seen.
  std::string Judge(int64_t now_ms);
  const SelfCheckLimits& limits() const { return limits_; }

 private:
  SelfCheckLimits limits_;
  int64_t worst_lag_ms_ = 0;
  int64_t probe_sent_ms_ = -1;  // -1: none in flight
  std::string store_error_;     // of the last probe that came back
};

}  // namespace guardian
