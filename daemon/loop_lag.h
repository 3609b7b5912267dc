#pragma once
// LoopLag: how late the loop runs a timer that should fire every `period_ms`. A blocked loop
// shows up here first; the daemon reports recent p50/p99/max.

#include <uv.h>

#include <cstdint>
#include <vector>

#include "daemon/timer.h"

namespace guardian {

class LoopLag {
 public:
  LoopLag(uv_loop_t* loop, int64_t period_ms = 100, size_t window = 600);
  void Start();
  void Stop() { timer_.Stop(); }
  // Lag in microseconds over the recent window.
  int64_t PercentileUs(double p) const;
  int64_t MaxUs() const;
  size_t samples() const { return filled_; }
  // The worst lag since the last call (for the watchdog's self-check), then starts afresh.
  // Includes how overdue this timer is right now: after a stall, a caller whose timer the loop
  // runs first would otherwise not see it until the next call.
  int64_t TakePeakUs();

 private:
  void Tick();
  int64_t period_ms_;
  Timer timer_;
  uint64_t expected_ns_ = 0;
  std::vector<int64_t> ring_;
  size_t next_ = 0;
  size_t filled_ = 0;
  int64_t peak_us_ = 0;
};

}  // namespace guardian
