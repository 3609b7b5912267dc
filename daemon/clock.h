#pragma once
// Clock: the one source of time for logic that must be testable without sleeping (debounce,
// backoff, budgets). Wall time stamps incidents; monotonic time measures durations and deadlines.

#include <cstdint>

namespace guardian {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch (what incidents record).
  virtual int64_t WallMs() const = 0;
  // Milliseconds on a clock that never jumps (what deadlines and lag use).
  virtual int64_t MonoMs() const = 0;
};

// The real clocks (CLOCK_REALTIME and CLOCK_MONOTONIC).
class SystemClock : public Clock {
 public:
  int64_t WallMs() const override;
  int64_t MonoMs() const override;
  static SystemClock* Get();
};

// A clock that only moves when a test says so.
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t wall_ms = 1'700'000'000'000, int64_t mono_ms = 1'000)
      : wall_(wall_ms), mono_(mono_ms) {}
  int64_t WallMs() const override { return wall_; }
  int64_t MonoMs() const override { return mono_; }
  void Advance(int64_t ms) {
    wall_ += ms;
    mono_ += ms;
  }

 private:
  int64_t wall_;
  int64_t mono_;
};

}  // namespace guardian
