#include "daemon/restart_policy.h"

#include <doctest/doctest.h>

namespace guardian {

TEST_CASE("restart delays double per consecutive failure and stop at the cap") {
  RestartPolicy p(100, 1000, 5000);
  CHECK(p.NextDelayMs() == 100);
  CHECK(p.OnFailure() == 100);
  CHECK(p.OnFailure() == 200);
  CHECK(p.OnFailure() == 400);
  CHECK(p.OnFailure() == 800);
  CHECK(p.OnFailure() == 1000);
  CHECK(p.OnFailure() == 1000);  // never gives up: keeps retrying at the cap
  CHECK(p.failures() == 6);
}

TEST_CASE("the backoff resets only after a verified healthy period") {
  RestartPolicy p(100, 10'000, 5000);
  p.OnFailure();
  p.OnFailure();
  p.OnFailure();
  REQUIRE(p.failures() == 3);

  // Ready, but a start alone forgives nothing.
  p.OnReady(1000);
  CHECK(p.HealthyAt() == 6000);
  CHECK_FALSE(p.ConfirmHealthy(5999));
  CHECK(p.failures() == 3);

  // A second OnReady while ready does not move the start of the period.
  p.OnReady(3000);
  CHECK(p.HealthyAt() == 6000);

  CHECK(p.ConfirmHealthy(6000));
  CHECK(p.failures() == 0);
  CHECK(p.NextDelayMs() == 100);
  CHECK_FALSE(p.ConfirmHealthy(7000));  // nothing left to reset
}

TEST_CASE("dying before the healthy period ends keeps the penalty") {
  RestartPolicy p(100, 10'000, 5000);
  p.OnFailure();
  p.OnReady(0);
  CHECK(p.OnFailure() == 200);  // exited at 4 s: not healthy long enough
  CHECK(p.HealthyAt() == -1);
  CHECK_FALSE(p.ConfirmHealthy(100'000));  // not ready now: nothing to confirm
  CHECK(p.failures() == 2);
}

TEST_CASE("losing readiness restarts the healthy period") {
  RestartPolicy p(100, 10'000, 5000);
  p.OnFailure();
  p.OnReady(0);
  p.OnNotReady();  // e.g. the status file says it is failing, the process still runs
  p.OnReady(4000);
  CHECK_FALSE(p.ConfirmHealthy(5000));
  CHECK(p.ConfirmHealthy(9000));
}

}  // namespace guardian
