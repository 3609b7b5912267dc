// Retry backoff and the sliding-window action budget, on a fake clock (no sleeping).
#include "daemon/backoff.h"

#include <doctest/doctest.h>

using namespace guardian;

TEST_CASE("retry delay doubles from the base and stops at the cap") {
  RetryPolicy p{1000, 30000};
  CHECK(RetryDelayMs(p, 1) == 0);  // the first attempt starts at once
  CHECK(RetryDelayMs(p, 2) == 1000);
  CHECK(RetryDelayMs(p, 3) == 2000);
  CHECK(RetryDelayMs(p, 4) == 4000);
  CHECK(RetryDelayMs(p, 6) == 16000);
  CHECK(RetryDelayMs(p, 7) == 30000);
  CHECK(RetryDelayMs(p, 50) == 30000);  // no overflow on long runs
}

TEST_CASE("budget allows max_actions per window and refuses the next") {
  FakeClock clock;
  ActionBudget b(Budget{3, 60'000}, &clock);
  CHECK(b.TrySpend());
  clock.Advance(1000);
  CHECK(b.TrySpend());
  CHECK(b.TrySpend());
  CHECK(b.Remaining() == 0);
  CHECK_FALSE(b.TrySpend());
  // The first action leaves the window 60 s after it was spent.
  CHECK(b.NextAvailableMs() == clock.MonoMs() - 1000 + 60'000);
}

TEST_CASE("budget refills as actions slide out of the window") {
  FakeClock clock;
  ActionBudget b(Budget{2, 10'000}, &clock);
  CHECK(b.TrySpend());
  clock.Advance(5'000);
  CHECK(b.TrySpend());
  CHECK_FALSE(b.TrySpend());
  clock.Advance(4'999);
  CHECK_FALSE(b.TrySpend());
  clock.Advance(1);  // the first action is now exactly one window old
  CHECK(b.Remaining() == 1);
  CHECK(b.TrySpend());
  CHECK_FALSE(b.TrySpend());
  clock.Advance(10'000);
  CHECK(b.Remaining() == 2);
}

TEST_CASE("a refused spend does not use up budget") {
  FakeClock clock;
  ActionBudget b(Budget{1, 1'000}, &clock);
  CHECK(b.TrySpend());
  for (int i = 0; i < 10; ++i) CHECK_FALSE(b.TrySpend());
  clock.Advance(1'000);
  CHECK(b.TrySpend());
}
