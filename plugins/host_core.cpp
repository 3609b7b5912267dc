// guardian.sleep(ms), guardian.probe(), guardian.probe_until(ms), guardian.now(): waiting and
// re-checking.
#include <memory>
#include <optional>
#include <string>

#include "daemon/clock.h"
#include "daemon/timer.h"
#include "plugins/host_api.h"
#include "plugins/playbook_run.h"

namespace guardian {
namespace {

// The dry-run gate of the core functions. Only sleep acts (it spends the incident's time): a
// dry run records it and answers at once. probe and now only observe, so they run for real.
std::optional<int> DryRunSleep(lua_State* L, lua_Integer ms) {
  PlaybookRun* run = PlaybookRun::From(L);
  run->CheckCanWait(L, "guardian.sleep");  // before recording: such a call never happens
  if (!run->RecordAction(L, "guardian.sleep", 1,
                           "answered at once instead of waiting " + std::to_string(ms) + " ms"))
    return std::nullopt;
  return run->AwaitNothing(L, "guardian.sleep", [](lua_State*) { return 0; });
}

// guardian.sleep(ms): yields the phase for `ms` milliseconds.
int Sleep(lua_State* L) {
  lua_Integer ms = luaL_checkinteger(L, 1);
  if (ms < 0) return luaL_error(L, "guardian.sleep: ms must be >= 0");
  if (auto n = DryRunSleep(L, ms)) return *n;
  PlaybookRun* run = PlaybookRun::From(L);
  return run->Await(L, "guardian.sleep", [run, ms](PlaybookRun::Resume resume) {
    // Deleted by whichever comes first: the timer firing or the wait being cancelled.
    auto* timer = new Timer(run->loop());
    auto finished = std::make_shared<bool>(false);
    timer->Start(ms, [timer, resume, finished] {
      *finished = true;
      auto r = resume;
      delete timer;  // Timer allows this from its own callback
      r([](lua_State*) { return 0; });
    });
    return std::function<void()>([timer, finished] {
      if (*finished) return;
      *finished = true;
      delete timer;
    });
  });
}

// guardian.probe() -> ok, evidence: re-runs the check's detector now.
int Probe(lua_State* L) {
  PlaybookRun* run = PlaybookRun::From(L);
  return run->Await(L, "guardian.probe", [run](PlaybookRun::Resume resume) {
    run->services().probe([resume](Observation obs) {
      resume([obs](lua_State* L) {
        lua_pushboolean(L, obs.ok());
        lua_pushlstring(L, obs.evidence.data(), obs.evidence.size());
        return 2;
      });
    });
    return std::function<void()>();
  });
}

// One guardian.probe_until: probe, and while failing and time is left, wait `every_ms` and probe
// again. Kept alive by the run's cancel function and the probe in flight; the timer holds it
// only weakly, and is closed once the answer is given.
struct ProbeLoop : std::enable_shared_from_this<ProbeLoop> {
  PlaybookRun* run = nullptr;
  PlaybookRun::Resume resume;
  int64_t deadline_mono = 0;
  int64_t every_ms = 10;
  std::unique_ptr<Timer> timer;
  bool finished = false;  // answered or cancelled

  void Probe() {
    run->services().probe([self = shared_from_this()](Observation obs) { self->Answer(obs); });
  }
  void Answer(const Observation& obs) {
    if (finished) return;
    if (obs.ok() || SystemClock::Get()->MonoMs() >= deadline_mono) {
      finished = true;
      timer.reset();  // also safe from inside its own callback (Timer copies it first)
      resume([ok = obs.ok(), evidence = obs.evidence](lua_State* L) {
        lua_pushboolean(L, ok);
        lua_pushlstring(L, evidence.data(), evidence.size());
        return 2;
      });
      return;
    }
    if (!timer) timer = std::make_unique<Timer>(run->loop());
    timer->Start(every_ms, [weak = weak_from_this()] {
      auto self = weak.lock();
      if (self && !self->finished) self->Probe();
    });
  }
};

// guardian.probe_until(timeout_ms[, every_ms]) -> ok, evidence: re-runs the check's detector
// every `every_ms` (default 10) until it passes or `timeout_ms` has passed; the last answer. The
// verify phase of a playbook whose remedy takes effect at some point within a deadline. In a
// dry run: one probe, no waiting.
int ProbeUntil(lua_State* L) {
  lua_Integer timeout = luaL_checkinteger(L, 1);
  lua_Integer every = luaL_optinteger(L, 2, 10);
  if (timeout < 0) return luaL_error(L, "guardian.probe_until: timeout_ms must be >= 0");
  if (every < 1) return luaL_error(L, "guardian.probe_until: every_ms must be >= 1");
  PlaybookRun* run = PlaybookRun::From(L);
  if (run->dry_run()) timeout = 0;
  return run->Await(L, "guardian.probe_until", [run, timeout, every](PlaybookRun::Resume resume) {
    auto loop = std::make_shared<ProbeLoop>();
    loop->run = run;
    loop->resume = std::move(resume);
    loop->deadline_mono = SystemClock::Get()->MonoMs() + timeout;
    loop->every_ms = every;
    loop->Probe();
    return std::function<void()>([loop] {
      loop->finished = true;  // a probe in flight answers no one
      loop->timer.reset();
    });
  });
}

// guardian.now() -> wall-clock milliseconds since the epoch.
int Now(lua_State* L) {
  lua_pushinteger(L, SystemClock::Get()->WallMs());
  return 1;
}

void Install(lua_State* L) {
  lua_pushcfunction(L, Sleep);
  lua_setfield(L, -2, "sleep");
  lua_pushcfunction(L, Probe);
  lua_setfield(L, -2, "probe");
  lua_pushcfunction(L, ProbeUntil);
  lua_setfield(L, -2, "probe_until");
  lua_pushcfunction(L, Now);
  lua_setfield(L, -2, "now");
}

}  // namespace

GUARDIAN_HOST_MODULE(core, "core", Install);

}  // namespace guardian
