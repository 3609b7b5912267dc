// The probe schedule: interval plus jitter, moved early onto the slack grid so that checks due
// close together share one wake-up, and never later than asked.
#include "daemon/probe_schedule.h"

#include <doctest/doctest.h>

#include <set>

using guardian::NextProbeDelayMs;
using guardian::ProbeSlackMs;

TEST_CASE("the slack is a fiftieth of the interval, at most 20 ms, none under 100 ms") {
  CHECK(ProbeSlackMs(50) == 0);
  CHECK(ProbeSlackMs(90) == 0);
  CHECK(ProbeSlackMs(250) == 5);
  CHECK(ProbeSlackMs(1000) == 20);
  CHECK(ProbeSlackMs(60000) == 20);
}

TEST_CASE("a short interval runs exactly when asked") {
  CHECK(NextProbeDelayMs(12345, 90, 0.0, 0.0) == 90);
  CHECK(NextProbeDelayMs(7, 50, 0.5, 0.5) == 62);
}

TEST_CASE("a probe lands on the grid, early by less than the slack, never late") {
  for (int64_t now = 1000; now < 1100; ++now) {
    for (double u : {0.0, 0.25, 0.5, 0.999}) {
      int64_t asked = 1000 + static_cast<int64_t>(1000 * 0.1 * u);
      int64_t d = NextProbeDelayMs(now, 1000, 0.1, u);
      CAPTURE(now);
      CAPTURE(u);
      CHECK((now + d) % 20 == 0);
      CHECK(d <= asked);
      CHECK(d > asked - 20);
    }
  }
}

TEST_CASE("checks due within one slack of each other share a wake-up") {
  // A thousand 1 s checks whose previous probes ended at different milliseconds of a 20 ms
  // window, without jitter: they all wake at the same moment.
  std::set<int64_t> wakes;
  for (int64_t now = 5000; now < 5020; ++now) wakes.insert(now + NextProbeDelayMs(now, 1000, 0, 0));
  CHECK(wakes.size() == 1);
  // With 10% jitter they spread over at most 100 ms / 20 ms + 1 wake-ups, not 100.
  wakes.clear();
  for (int i = 0; i < 1000; ++i)
    wakes.insert(5000 + NextProbeDelayMs(5000, 1000, 0.1, (i % 100) / 100.0));
  CHECK(wakes.size() <= 6);
}
