#pragma once
// When a check's next probe runs: its interval, plus a random share of the interval (jitter, so
// that many checks do not probe in lockstep), then moved a little earlier onto a shared grid
// (timer slack, so that checks due within a few milliseconds of each other share one wake-up of
// the loop instead of one each). Plain functions: the schedule is tested without a loop.

#include <cstdint>

namespace guardian {

// How far a probe with this interval may run early to share a wake-up: a fiftieth of the
// interval, at most 20 ms; 0 (no grid) under 100 ms, where a millisecond matters.
int64_t ProbeSlackMs(int64_t interval_ms);

// The delay from now_ms to the next probe. `jitter` is the check's fraction in [0, 1) and `u` a
// uniform draw in [0, 1). The probe never runs later than interval + jitter asked, and never
// earlier than that by more than the slack: it runs at the last multiple of the slack (counted on
// the loop's clock, shared by every check) before that time.
int64_t NextProbeDelayMs(int64_t now_ms, int64_t interval_ms, double jitter, double u);

}  // namespace guardian
