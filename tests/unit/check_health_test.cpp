// Debounce: N consecutive failures confirm, onset is the first of them, ok clears, unknown
// neither confirms nor clears. Driven observation by observation, no clock.
#include "daemon/check_health.h"

#include <doctest/doctest.h>

using guardian::CheckHealth;
using guardian::Observation;
using T = CheckHealth::Transition;

TEST_CASE("debounce 1 confirms on the first failure with onset at that observation") {
  CheckHealth h(1);
  CHECK(h.Observe(Observation::Ok(), 100) == T::kNone);
  CHECK(h.Observe(Observation::Failing("x"), 200) == T::kConfirmed);
  CHECK(h.onset_ms() == 200);
  CHECK(h.confirmed());
}

TEST_CASE("debounce 3 needs three consecutive failures; onset is the first") {
  CheckHealth h(3);
  CHECK(h.Observe(Observation::Failing("a"), 1000) == T::kNone);
  CHECK(h.Observe(Observation::Failing("b"), 2000) == T::kNone);
  CHECK(h.streak() == 2);
  CHECK(h.Observe(Observation::Failing("c"), 3000) == T::kConfirmed);
  CHECK(h.onset_ms() == 1000);
  // Further failures do not confirm again.
  CHECK(h.Observe(Observation::Failing("d"), 4000) == T::kNone);
}

TEST_CASE("a failure whose detector knows an earlier beginning has its onset there") {
  CheckHealth h(2);
  Observation killed = Observation::Failing("OOM-killed");
  killed.began_at_ms = 900;
  CHECK(h.Observe(Observation::Failing("first"), 1000) == T::kNone);
  CHECK(h.Observe(killed, 2000) == T::kConfirmed);
  CHECK(h.onset_ms() == 900);
  // A beginning later than the streak's first failure changes nothing.
  CheckHealth later(1);
  Observation late = Observation::Failing("x");
  late.began_at_ms = 5000;
  CHECK(later.Observe(late, 3000) == T::kConfirmed);
  CHECK(later.onset_ms() == 3000);
}

TEST_CASE("an ok observation breaks the streak and restarts the onset") {
  CheckHealth h(2);
  CHECK(h.Observe(Observation::Failing("a"), 1000) == T::kNone);
  CHECK(h.Observe(Observation::Ok(), 2000) == T::kNone);
  CHECK(h.streak() == 0);
  CHECK(h.Observe(Observation::Failing("b"), 3000) == T::kNone);
  CHECK(h.Observe(Observation::Failing("c"), 4000) == T::kConfirmed);
  CHECK(h.onset_ms() == 3000);
}

TEST_CASE("unknown observations neither confirm nor clear") {
  CheckHealth h(2);
  CHECK(h.Observe(Observation::Failing("a"), 1000) == T::kNone);
  CHECK(h.Observe(Observation::Unknown("probe timed out"), 2000) == T::kNone);
  CHECK(h.streak() == 1);
  CHECK(h.Observe(Observation::Failing("b"), 3000) == T::kConfirmed);
  CHECK(h.onset_ms() == 1000);
}

TEST_CASE("recovery after confirmation is reported once; Reset forgets the failure") {
  CheckHealth h(1);
  CHECK(h.Observe(Observation::Failing("a"), 1000) == T::kConfirmed);
  CHECK(h.Observe(Observation::Ok(), 2000) == T::kRecovered);
  CHECK(h.Observe(Observation::Ok(), 3000) == T::kNone);
  CHECK(h.Observe(Observation::Failing("b"), 4000) == T::kConfirmed);
  h.Reset();
  CHECK_FALSE(h.confirmed());
  CHECK(h.Observe(Observation::Failing("c"), 5000) == T::kConfirmed);
  CHECK(h.onset_ms() == 5000);
}

TEST_CASE("a debounce below 1 behaves as 1") {
  CheckHealth h(0);
  CHECK(h.Observe(Observation::Failing("a"), 1) == T::kConfirmed);
}
