// CheckRuntime's schedule on a real loop: a probe that never answers does not stop the check.
// After the stall limit it counts as unknown and probing goes on; its late answer is dropped.
#include "daemon/check_runtime.h"

#include <doctest/doctest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "daemon/clock.h"
#include "daemon/timer.h"
#include "test_loop.h"

namespace guardian {
namespace {

// Keeps the first probe's `done` without calling it (a detector that broke its contract);
// answers every later probe at once.
class LosesFirstAnswer : public Detector {
 public:
  void Probe(std::function<void(Observation)> done) override {
    ++probes;
    if (probes == 1) {
      kept = std::move(done);
      return;
    }
    done(Observation::Ok("fine"));
  }
  int probes = 0;
  std::function<void(Observation)> kept;
};

// Closes the check, destroys it, and runs the loop until its timers' handles are closed too.
void Finish(TestLoop& t, std::unique_ptr<CheckRuntime> check) {
  t.Close(*check);
  check.reset();
  uv_run(&t.loop, UV_RUN_DEFAULT);
}

CheckConfig Check(int64_t interval_ms) {
  CheckConfig c{};
  c.id = "stuck";
  c.mode = "process";
  c.interval_ms = interval_ms;
  c.debounce = 1;
  c.jitter = 0;
  c.budget = Budget{};
  return c;
}

TEST_CASE("a probe that never answers counts as unknown after the stall limit; probing goes on") {
  TestLoop t;
  FakeClock clock;
  auto detector = std::make_shared<LosesFirstAnswer>();
  std::vector<std::string> seen;
  auto check = std::make_unique<CheckRuntime>(
      &t.loop, Check(10), "/nonexistent", detector, &clock,
      [&](CheckRuntime*, const Observation& o) { seen.push_back(o.evidence); });
  check->set_stall_limit_ms(50);
  check->Start();
  bool gave_up = false;  // without the stall limit the check would wait for ever
  auto deadline = std::make_unique<Timer>(&t.loop);
  deadline->Start(5000, [&] { gave_up = true; });
  t.RunUntil([&] { return seen.size() >= 3 || gave_up; });
  deadline.reset();
  REQUIRE_FALSE(gave_up);
  CHECK(seen[0] == "the probe gave no answer in 50 ms");
  CHECK(seen[1] == "fine");
  CHECK(check->stalls() == 1);
  CHECK(check->last_observation().evidence == "fine");
  // The lost probe answers at last: too late, it is dropped and the schedule is not doubled.
  size_t before = seen.size();
  detector->kept(Observation::Failing("late"));
  CHECK(seen.size() == before);
  Finish(t, std::move(check));
}

TEST_CASE("probes that answer in time are never called stalled") {
  TestLoop t;
  FakeClock clock;
  auto detector = std::make_shared<LosesFirstAnswer>();
  detector->probes = 1;  // answers from the first probe on
  int seen = 0;
  auto check = std::make_unique<CheckRuntime>(&t.loop, Check(10), "/nonexistent", detector, &clock,
                                              [&](CheckRuntime*, const Observation&) { ++seen; });
  check->set_stall_limit_ms(30);
  check->Start();
  t.RunUntil([&] { return seen >= 10; });
  CHECK(check->stalls() == 0);
  Finish(t, std::move(check));
}

}  // namespace
}  // namespace guardian
